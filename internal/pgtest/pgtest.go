// Package pgtest runs a real PostgreSQL server for leadproxy's tests: initdb
// into a temporary folder, postgres on a free loopback port, one server per
// test binary and one fresh database per test.
//
// As root (PostgreSQL refuses to run as root) the server runs as the
// `postgres` user. Without PostgreSQL installed a test is skipped, or fails
// when LEADPROXY_REQUIRE_PG=1 (CI sets it).
//
// A package's TestMain should call Main so the server is stopped and its
// folder removed when the tests end:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// Without it the server still dies with the test process (it is the test
// binary's child with a parent-death signal), but its folder stays behind.
package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Wait bounds every server step (initdb, start, crash recovery). It only
// turns a hang into a failure; it measures nothing.
const Wait = 90 * time.Second

// Server is one running (or stopped) PostgreSQL server.
type Server struct {
	Host string // 127.0.0.1
	Port int
	Dir  string // the data directory

	base   string // the temporary folder holding Dir, the socket and the log
	bin    string // the folder of postgres, initdb, pg_ctl
	cred   *syscall.Credential
	mu     sync.Mutex
	proc   *exec.Cmd
	exited chan struct{} // closed when proc has exited
	dbs    atomic.Int64
}

var (
	shared    *Server
	sharedErr error
	sharedMu  sync.Mutex
)

// Start returns the server shared by this test binary, starting it on first
// use. It skips (or fails, with LEADPROXY_REQUIRE_PG=1) when PostgreSQL is
// missing or cannot start.
func Start(t testing.TB) *Server {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = launch()
	}
	if sharedErr != nil {
		if os.Getenv("LEADPROXY_REQUIRE_PG") == "1" {
			t.Fatalf("pgtest: %v", sharedErr)
		}
		t.Skipf("pgtest: no PostgreSQL: %v", sharedErr)
	}
	return shared
}

// Main runs the tests and then stops the shared server (if one was started)
// and removes its folder. Call it from TestMain.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit, for a TestMain with cleanup of its own
// after the tests (caddymodule's TestMain removes the Caddy binary it
// built).
func Run(m *testing.M) int {
	code := m.Run()
	sharedMu.Lock()
	if shared != nil {
		shared.shutdown()
	}
	sharedMu.Unlock()
	return code
}

// binDir finds the folder holding initdb and postgres: PATH first, else the
// newest /usr/lib/postgresql/*/bin.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			dir := filepath.Dir(r)
			if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
				return dir, nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("initdb not found on PATH nor in /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)")
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func launch() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "leadproxy-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", Dir: filepath.Join(base, "data"), base: base, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(base)
			return nil, fmt.Errorf("running as root and there is no postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(base, uid, gid); err != nil {
			os.RemoveAll(base)
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	out, err := s.command(ctx, "initdb", "-D", s.Dir, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions").CombinedOutput()
	if err != nil {
		os.RemoveAll(base)
		return nil, fmt.Errorf("initdb: %v: %s", err, lastLines(string(out), 5))
	}
	// A free port can be taken between our probe and postgres' bind (other
	// test binaries run at the same time): try a few.
	for try := 0; ; try++ {
		if s.Port, err = freePort(); err != nil {
			break
		}
		if err = s.run(); err == nil || try == 4 || !strings.Contains(err.Error(), "in use") {
			break
		}
	}
	if err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	return s, nil
}

func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.base
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	return cmd
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var readyLine = regexp.MustCompile(`database system is ready to accept connections`)

// run starts postgres as this process's child and returns once its log says
// it accepts connections and a connection succeeds (or it exited, or Wait
// passed).
func (s *Server) run() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("already running")
	}
	cmd := s.command(context.Background(), "postgres", "-D", s.Dir,
		"-p", strconv.Itoa(s.Port), "-k", s.base, "-c", "listen_addresses=127.0.0.1",
		// A test server: a killed postgres keeps what it wrote in the page
		// cache, which is all the tests' immediate stops need. Commits still
		// write their WAL before they are acknowledged (synchronous_commit
		// stays on), so an immediate stop loses no acknowledged commit.
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB", "-c", "max_connections=300",
		"-c", "log_destination=stderr", "-c", "logging_collector=off")
	// The server dies with the test binary even without Main.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	logf, err := os.OpenFile(filepath.Join(s.base, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	cmd.Stdout = logf
	cmd.Stderr = io.MultiWriter(logf, pw)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("postgres: %v", err)
	}
	exited := make(chan struct{})
	ready := make(chan struct{})
	var tail []string
	var tailMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			line := sc.Text()
			tailMu.Lock()
			tail = append(tail, line)
			if len(tail) > 8 {
				tail = tail[1:]
			}
			tailMu.Unlock()
			if !once && readyLine.MatchString(line) {
				once = true
				close(ready)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		cmd.Wait()
		pw.Close()
		logf.Close()
		close(exited)
	}()
	logTail := func() string {
		tailMu.Lock()
		defer tailMu.Unlock()
		return strings.Join(tail, "\n")
	}
	timer := time.NewTimer(Wait)
	defer timer.Stop()
	select {
	case <-ready:
	case <-exited:
		return fmt.Errorf("postgres exited on start: %s", logTail())
	case <-timer.C:
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("postgres not ready after %v: %s", Wait, logTail())
	}
	s.proc, s.exited = cmd, exited
	// The log line comes as the postmaster opens for connections; one real
	// connection confirms it.
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		return fmt.Errorf("postgres says ready but a connection fails: %v", err)
	}
	conn.Close(ctx)
	return nil
}

func (s *Server) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", s.Host, s.Port, db)
}

// NewDB creates a fresh database for this test, dropped at its cleanup, and
// returns its DSN.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", s.dbs.Add(1), sanitize(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.dsn("postgres"))
		if err != nil {
			t.Logf("pgtest: database %s not dropped: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.dsn(name)
}

var unsafe = regexp.MustCompile(`[^a-z0-9_]+`)

func sanitize(name string) string {
	n := unsafe.ReplaceAllString(strings.ToLower(name), "_")
	if len(n) > 40 {
		n = n[:40]
	}
	return n
}

// StopImmediate stops the server the hard way (pg_ctl stop -m immediate: no
// checkpoint, crash recovery on the next start) and returns once it exited.
func (s *Server) StopImmediate(t testing.TB) {
	t.Helper()
	if err := s.stop("immediate"); err != nil {
		t.Fatalf("pgtest: stop: %v", err)
	}
}

func (s *Server) stop(mode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	out, err := s.command(ctx, "pg_ctl", "stop", "-D", s.Dir, "-m", mode, "-W").CombinedOutput()
	if err != nil {
		// pg_ctl could not signal it: the child is ours, kill it.
		s.proc.Process.Kill()
	}
	select {
	case <-s.exited:
	case <-ctx.Done():
		s.proc.Process.Kill()
		<-s.exited
	}
	s.proc = nil
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, lastLines(string(out), 3))
	}
	return nil
}

// Start starts a stopped server again on the same port and data directory
// and returns once it accepts connections (after crash recovery).
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if err := s.run(); err != nil {
		t.Fatalf("pgtest: restart: %v", err)
	}
}

func (s *Server) shutdown() {
	s.stop("fast")
	os.RemoveAll(s.base)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
