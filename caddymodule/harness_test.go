package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/internal/pgtest"
)

// The end-to-end tests run the real binary (cmd/caddy, built once in
// TestMain): real processes, real ports, real nutsdb folders, real
// reloads and kill -9.

var caddyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "leadproxy-bin-")
	if err != nil {
		panic(err)
	}
	caddyBin = filepath.Join(dir, "caddy")
	// Most tests send many leads from 127.0.0.1; the abuse tests set their
	// budgets in their Caddyfiles (TestBudgetsEnv).
	os.Setenv(TestBudgetsEnv, "off")
	build := exec.Command("go", "build", "-o", caddyBin, "../cmd/caddy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cmd/caddy:", err)
		os.Exit(1)
	}
	code := pgtest.Run(m) // the cluster tests' PostgreSQL, stopped after them
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a port nothing listens on, for a Caddy about to start.
// It is chosen below Linux's ephemeral range (32768 and up), where other
// processes' ":0" listeners and outgoing connections land, so none of them
// can take it in the moment between this check and Caddy's bind (with test
// packages running side by side, some do). Ports handed out once are not
// handed out again by this process.
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		if portsGiven[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // in use
		}
		l.Close()
		portsGiven[p] = true
		return p
	}
	t.Fatal("no free port in 20000-31999")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// caddyProc is one running Caddy.
type caddyProc struct {
	t       testing.TB
	cmd     *exec.Cmd
	dir     string // XDG dirs, config file
	Admin   string // http://127.0.0.1:port
	Ports   map[string]int
	Storage string
	logs    *syncBuffer
	vars    map[string]string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Logs returns Caddy's log up to now. Caddy writes its log to a pipe that
// a goroutine here copies into c.logs, so a line Caddy wrote before it
// answered a request may not be in c.logs yet when the answer is. Logs
// asks the admin API for a marked URI and waits for Caddy's access line of
// it: stdout and stderr share the one pipe, so everything Caddy logged
// before that request has been copied once the line is there.
func (c *caddyProc) Logs(t testing.TB) string {
	t.Helper()
	mark := fmt.Sprintf("/config/?logsync=%d", logSyncs.Add(1))
	resp, err := http.Get(c.Admin + mark)
	if err != nil {
		t.Fatalf("log barrier: %v", err)
	}
	resp.Body.Close()
	var out string
	waitFor(t, "Caddy's log to catch up", 30*time.Second, func() bool {
		out = c.logs.String()
		return strings.Contains(out, `"uri":"`+mark+`"`)
	})
	return out
}

var logSyncs atomic.Int64

// expand replaces {{NAME}} in a Caddyfile template: ADMIN, STORAGE and
// PORT_<x> for any x (a free port each), plus extra vars.
func (c *caddyProc) expand(tmpl string) string {
	out := tmpl
	for {
		i := strings.Index(out, "{{PORT_")
		if i < 0 {
			break
		}
		j := strings.Index(out[i:], "}}")
		name := out[i+2 : i+j]
		if _, ok := c.Ports[name]; !ok {
			c.Ports[name] = freePort(c.t)
		}
		out = strings.ReplaceAll(out, "{{"+name+"}}", fmt.Sprint(c.Ports[name]))
	}
	out = strings.ReplaceAll(out, "{{ADMIN}}", strings.TrimPrefix(c.Admin, "http://"))
	out = strings.ReplaceAll(out, "{{STORAGE}}", c.Storage)
	for k, v := range c.vars {
		out = strings.ReplaceAll(out, "{{"+k+"}}", v)
	}
	return out
}

// startCaddy runs the binary with a Caddyfile template; it is stopped
// when the test ends.
func startCaddy(t testing.TB, tmpl string, vars map[string]string) *caddyProc {
	t.Helper()
	dir := t.TempDir()
	c := &caddyProc{t: t, dir: dir, Ports: map[string]int{}, Storage: filepath.Join(dir, "leads"), logs: &syncBuffer{}, vars: vars}
	c.Admin = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	c.start(tmpl)
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("caddy log (admin API requests left out):\n%s", tail(withoutAdminRequests(c.logs.String()), 8000))
		}
	})
	return c
}

func (c *caddyProc) start(tmpl string) {
	c.t.Helper()
	cfg := filepath.Join(c.dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(c.expand(tmpl)), 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.cmd = exec.Command(caddyBin, "run", "--config", cfg, "--adapter", "caddyfile")
	c.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(c.dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(c.dir, "config"), "HOME="+c.dir)
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	before := strings.Count(c.logs.String(), servingMsg) // a restart appends to the same log
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.waitServing(before)
}

// servingMsg is what `caddy run` logs once its config is loaded and every
// app started, the sites listening included.
const servingMsg = `"msg":"serving initial configuration"`

// waitServing waits for the process's servingMsg number before+1. The admin
// endpoint answers earlier, while the sites may not listen yet: a request
// sent then is refused.
func (c *caddyProc) waitServing(before int) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(c.logs.String(), servingMsg) <= before {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid)); bytes.Contains(st, []byte(") Z ")) {
			c.t.Fatalf("caddy exited:\n%s", tail(c.logs.String(), 4000))
		}
		if time.Now().After(deadline) {
			c.cmd.Process.Kill()
			c.t.Fatalf("caddy did not start serving its config:\n%s", tail(c.logs.String(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart starts the process again on the same folders and ports.
func (c *caddyProc) Restart(tmpl string) { c.start(tmpl) }

// Stop ends the process gracefully.
func (c *caddyProc) Stop() {
	if c.cmd == nil || c.cmd.Process == nil || c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// Kill ends the process with SIGKILL: no cleanup runs.
func (c *caddyProc) Kill() {
	c.cmd.Process.Kill()
	c.cmd.Wait()
}

// Reload loads a new Caddyfile through the admin API, as `caddy reload` does.
func (c *caddyProc) Reload(tmpl string) error {
	req, _ := http.NewRequest("POST", c.Admin+"/load", strings.NewReader(c.expand(tmpl)))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	c.waitOneListener()
	if resp.StatusCode != 200 {
		return fmt.Errorf("reload: %d %s", resp.StatusCode, b)
	}
	return nil
}

// waitOneListener waits until each of the process's ports has one
// listening socket left. Caddy answers a load before the replaced
// config's servers have closed theirs, and on Linux each config listens
// on a socket of its own (SO_REUSEPORT): a connection the kernel queued on
// the closing one is dropped. That loss is Caddy's, on every reload, with
// or without leadproxy; a test's next request waits for the close so that
// what it sees is leadproxy's.
func (c *caddyProc) waitOneListener() {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, port := range c.Ports {
		for {
			n, ok := listeningSockets(port)
			if !ok || n <= 1 {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("port %d: %d listening sockets 10s after a reload", port, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// listeningSockets counts the TCP sockets listening on port, from
// /proc/net/tcp and tcp6; ok is false where there is no /proc.
func listeningSockets(port int) (n int, ok bool) {
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		ok = true
		for line := range strings.Lines(string(b)) {
			fields := strings.Fields(line)
			if len(fields) > 3 && fields[3] == "0A" && strings.HasSuffix(fields[1], want) {
				n++
			}
		}
	}
	return n, ok
}

// URL is the site URL on the named port.
func (c *caddyProc) URL(port string) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.Ports[port])
}

// AdminJSON GETs an admin path and decodes it.
func (c *caddyProc) AdminJSON(path string, v any) int {
	c.t.Helper()
	resp, err := http.Get(c.Admin + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// withoutAdminRequests drops the admin API's access lines, which a test
// polling the API writes by the hundred, from a Caddy log.
func withoutAdminRequests(log string) string {
	var b strings.Builder
	for line := range strings.Lines(log) {
		if !strings.Contains(line, `"logger":"admin.api","msg":"received request"`) {
			b.WriteString(line)
		}
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// noCompress is a client that sends exactly the headers a test sets.
var noCompress = &http.Client{
	Transport:     &http.Transport{DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}
