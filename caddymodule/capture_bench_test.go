package caddymodule

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks of issue 5 against the real binary (built in TestMain):
//
//	go test ./caddymodule -run '^$' -bench 'BenchmarkCapture' -benchtime 1x -v
//
// BenchmarkCaptureThroughput: 64 keep-alive connections POST forms, each
// with a unique phone, to a capturing site (every POST stored with an fsync
// before it is proxied) and to a plain reverse_proxy site of the same Caddy
// and upstream, in alternating rounds; it reports both rates, their ratio,
// and leads per fsync (fsync calls of the Caddy process counted with
// `perf stat -e syscalls:sys_enter_fsync` when perf is installed).
//
// BenchmarkCaptureDrainRate: a backlog of leads for a webhook destination
// whose rate is set to N/1s drains into a fast receiver; it reports the
// drain rate (leads delivered in the first k full seconds after the first
// send, over k seconds) against N, and the most sends the receiver saw in
// any one-second window.

// benchSite captures POST /lead on PORT_SITE and plainly proxies PORT_PLAIN,
// both to the same upstream.
const benchSite = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
		{{DESTS}}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	leadproxy {
		form "Bench" {
			post    /lead
			require phone
		}
	}
	reverse_proxy {{UPSTREAM}}
}
http://127.0.0.1:{{PORT_PLAIN}} {
	reverse_proxy {{UPSTREAM}}
}
`

// benchUpstream answers every request with a short 200, after think (the
// site's own work; 0 for a proxy-only measurement).
func benchUpstream(tb testing.TB, think time.Duration) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if think > 0 {
			time.Sleep(think)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "thanks\n")
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// benchLoad POSTs unique forms from conns goroutines, one keep-alive
// connection each, until stopped.
type benchLoad struct {
	client *http.Client
	url    string
	ok     atomic.Int64
	failed atomic.Int64
	errMu  sync.Mutex
	err    string
	lat    []time.Duration // per worker slices merged at the end
	stop   chan struct{}
	wg     sync.WaitGroup
	latMu  sync.Mutex
}

var benchPhones atomic.Int64

func startBenchLoad(url string, conns int) *benchLoad {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	l := &benchLoad{client: &http.Client{Transport: tr, Timeout: 30 * time.Second}, url: url, stop: make(chan struct{})}
	for range conns {
		l.wg.Add(1)
		go l.worker()
	}
	return l
}

func (l *benchLoad) worker() {
	defer l.wg.Done()
	var lat []time.Duration
	defer func() {
		l.latMu.Lock()
		l.lat = append(l.lat, lat...)
		l.latMu.Unlock()
	}()
	var body bytes.Buffer
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		n := benchPhones.Add(1)
		body.Reset()
		fmt.Fprintf(&body, "name=Bench&phone=%%2B7999%07d&uid=b%d&message=Hello+from+the+benchmark", n, n)
		req, _ := http.NewRequest("POST", l.url, bytes.NewReader(body.Bytes()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		t0 := time.Now()
		resp, err := l.client.Do(req)
		if err != nil {
			l.fail(err.Error())
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			l.fail(fmt.Sprintf("status %d", resp.StatusCode))
			continue
		}
		lat = append(lat, time.Since(t0))
		l.ok.Add(1)
	}
}

func (l *benchLoad) fail(msg string) {
	l.failed.Add(1)
	l.errMu.Lock()
	if l.err == "" {
		l.err = msg
	}
	l.errMu.Unlock()
}

// finish stops the workers and returns the latencies, sorted.
func (l *benchLoad) finish() []time.Duration {
	close(l.stop)
	l.wg.Wait()
	l.client.CloseIdleConnections()
	sort.Slice(l.lat, func(i, j int) bool { return l.lat[i] < l.lat[j] })
	return l.lat
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// fsyncCounter counts the fsync calls of a process with perf, if present.
type fsyncCounter struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func countFsyncs(pid int, d time.Duration) *fsyncCounter {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return nil
	}
	f := &fsyncCounter{}
	f.cmd = exec.Command(perf, "stat", "-x,", "-e", "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync",
		"-p", strconv.Itoa(pid), "--", "sleep", fmt.Sprintf("%.3f", d.Seconds()))
	f.cmd.Stderr = &f.out
	if f.cmd.Start() != nil {
		return nil
	}
	return f
}

// procCPU is the user+system CPU time of a process so far (Linux; 0
// elsewhere). /proc counts clock ticks, 100 per second on Linux.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

var perfLine = regexp.MustCompile(`(?m)^(\d+),[^,]*,syscalls:sys_enter_f(?:data)?sync`)

// wait returns the fsyncs counted, or -1 if perf could not count them.
func (f *fsyncCounter) wait() int64 {
	if f == nil || f.cmd.Wait() != nil {
		return -1
	}
	ms := perfLine.FindAllStringSubmatch(f.out.String(), -1)
	if len(ms) == 0 {
		return -1
	}
	var n int64
	for _, m := range ms {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		n += v
	}
	return n
}

// BenchmarkCaptureThroughput compares captured POSTs with plain proxying:
// with an upstream that answers at once (the proxy-only worst case: on a
// small machine the client, Caddy and the upstream share the CPUs, so the
// ratio is the ratio of CPU per request) and with ones that take 10, 20 and
// 50ms per request, as a site's backend does: the slower the site, the less
// the CPU capture adds shows in throughput.
func BenchmarkCaptureThroughput(b *testing.B) {
	for _, think := range []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond} {
		b.Run(fmt.Sprintf("upstream=%v", think), func(b *testing.B) { benchThroughput(b, think) })
	}
}

func benchThroughput(b *testing.B, think time.Duration) {
	const conns = 64
	const round = 3 * time.Second
	const rounds = 3
	up := benchUpstream(b, think)
	c := startCaddy(b, benchSite, map[string]string{"UPSTREAM": up.URL, "DESTS": ""})
	pid := c.cmd.Process.Pid
	var stats struct {
		Leads int `json:"leads"`
	}
	for range b.N {
		measure := func(port string, d time.Duration, fsyncs bool) (rate float64, lat []time.Duration, leads, syncs int64, cpu time.Duration) {
			l := startBenchLoad(c.URL(port)+"/lead", conns)
			time.Sleep(300 * time.Millisecond) // connections open, batches steady
			var f *fsyncCounter
			if fsyncs {
				f = countFsyncs(pid, d)
			}
			ok0, t0, cpu0 := l.ok.Load(), time.Now(), procCPU(pid)
			time.Sleep(d)
			ok1, t1, cpu1 := l.ok.Load(), time.Now(), procCPU(pid)
			syncs = f.wait()
			lat = l.finish()
			if n := l.failed.Load(); n > 0 {
				b.Fatalf("%s: %d requests failed (first: %s)", port, n, l.err)
			}
			return float64(ok1-ok0) / t1.Sub(t0).Seconds(), lat, ok1 - ok0, syncs, (cpu1 - cpu0) / time.Duration(max(ok1-ok0, 1))
		}
		// Warm up both paths (connections, the store's files, the upstream).
		measure("PORT_PLAIN", time.Second, false)
		measure("PORT_SITE", time.Second, false)

		var plain, captured float64
		var plainCPU, capCPU time.Duration
		var plainLat, capLat []time.Duration
		var leads, syncs int64 = 0, 0
		for r := 0; r < rounds; r++ {
			p, pl, _, _, pc := measure("PORT_PLAIN", round, false)
			cp, cl, n, s, cc := measure("PORT_SITE", round, true)
			b.Logf("round %d: plain %.0f req/s, captured %.0f req/s (%.2f×); Caddy CPU per request %v vs %v; %d leads, %d fsyncs",
				r+1, p, cp, cp/p, pc.Round(time.Microsecond), cc.Round(time.Microsecond), n, s)
			plain += p / rounds
			captured += cp / rounds
			plainCPU += pc / rounds
			capCPU += cc / rounds
			plainLat, capLat = append(plainLat, pl...), append(capLat, cl...)
			if s < 0 || syncs < 0 {
				syncs = -1
			} else {
				leads, syncs = leads+n, syncs+s
			}
		}
		sort.Slice(plainLat, func(i, j int) bool { return plainLat[i] < plainLat[j] })
		sort.Slice(capLat, func(i, j int) bool { return capLat[i] < capLat[j] })
		b.ReportMetric(plain, "plain_req/s")
		b.ReportMetric(captured, "captured_req/s")
		b.ReportMetric(captured/plain, "ratio")
		if plainCPU > 0 {
			b.ReportMetric(float64(plainCPU.Microseconds()), "plain_cpu_us/req")
			b.ReportMetric(float64(capCPU.Microseconds()), "captured_cpu_us/req")
		}
		b.ReportMetric(float64(pct(plainLat, .5).Microseconds())/1000, "plain_p50_ms")
		b.ReportMetric(float64(pct(capLat, .5).Microseconds())/1000, "captured_p50_ms")
		b.ReportMetric(float64(pct(plainLat, .99).Microseconds())/1000, "plain_p99_ms")
		b.ReportMetric(float64(pct(capLat, .99).Microseconds())/1000, "captured_p99_ms")
		if syncs > 0 {
			b.ReportMetric(float64(leads)/float64(syncs), "leads/fsync")
		} else {
			b.Log("perf is not available: leads per fsync not measured")
		}
	}
	// Every answered captured POST is a stored lead (unique phones: no dedup).
	c.AdminJSON("/leadproxy/stats", &stats)
	b.Logf("%d leads stored", stats.Leads)
}

// BenchmarkCaptureDrainRate measures how fast a backlog drains into a
// destination with a configured rate. The backlog is built under rate
// 1/1h (one lead goes, the others wait for a token); a reload then sets
// the rate under test, which starts a fresh window, and the receiver
// timestamps every delivery.
func BenchmarkCaptureDrainRate(b *testing.B) {
	for _, n := range []int{50, 200} {
		b.Run(fmt.Sprintf("rate=%d/1s", n), func(b *testing.B) {
			for range b.N {
				benchDrain(b, n, 10)
			}
		})
	}
}

func benchDrain(b *testing.B, n, windows int) {
	recv := newDurReceiver(b)
	up := benchUpstream(b, 0)
	// X-Sent-Ms is stamped by the webhook's Send from Caddy's clock (the
	// global {time.now.unix_ms} placeholder), right after the engine took
	// the rate token: the receiver's arrival times add the HTTP path's
	// jitter, these do not.
	dest := func(rate string) string {
		return strings.NewReplacer("{{DESTS}}", "destination hook webhook {\n\t\t\turl "+recv.URL+"\n\t\t\tsecret "+durSecret+
			"\n\t\t\theader X-Sent-Ms {time.now.unix_ms}\n\t\t\trate "+rate+"\n\t\t}").Replace(benchSite)
	}
	c := startCaddy(b, dest("1/1h"), map[string]string{"UPSTREAM": up.URL})
	backlog := n*windows + 1 // the first goes out under 1/1h
	l := startBenchLoad(c.URL("PORT_SITE")+"/lead", 64)
	for l.ok.Load() < int64(backlog) && l.failed.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	l.finish()
	if l.failed.Load() > 0 {
		b.Fatalf("captures failed: %s", l.err)
	}
	captured := int(l.ok.Load())
	waitFor(b, "the one lead 1/1h lets through", 10*time.Second, func() bool { return recv.distinct() == 1 })
	recv.mu.Lock()
	recv.arrivals, recv.sentMs = nil, nil
	recv.mu.Unlock()
	if err := c.Reload(dest(fmt.Sprintf("%d/1s", n))); err != nil {
		b.Fatal(err)
	}
	waitFor(b, "the backlog to drain", time.Duration(captured/n+30)*time.Second, func() bool { return recv.distinct() == captured })
	recv.check(b, 0)
	recv.mu.Lock()
	arr := append([]time.Time(nil), recv.arrivals...)
	sent := make([]time.Time, len(recv.sentMs))
	for i, ms := range recv.sentMs {
		sent[i] = time.UnixMilli(ms)
	}
	recv.mu.Unlock()
	if len(sent) != len(arr) {
		b.Fatalf("%d deliveries, %d with X-Sent-Ms", len(arr), len(sent))
	}
	const per = time.Second
	rate, k := drainRate(sent, per)
	mostSent := mostWithin(sent, per-2*time.Millisecond) // ms stamps: 2ms for rounding
	mostArr := mostWithin(arr, per)
	b.Logf("rate %d/1s: %d leads drained in %v; %.1f/s over the first %d full seconds (%.3f of the limit); "+
		"most sends in any 1s window: %d by the sender's clock, %d by the receiver's",
		n, len(sent), sent[len(sent)-1].Sub(sent[0]).Round(time.Millisecond), rate, k, rate/float64(n), mostSent, mostArr)
	b.ReportMetric(rate, "leads/s")
	b.ReportMetric(rate/float64(n), "of_limit")
	b.ReportMetric(float64(mostSent), "max_sent_per_1s")
	b.ReportMetric(float64(mostArr), "max_recv_per_1s")
	if mostSent > n {
		b.Errorf("%d sends within one second, the limit is %d/1s", mostSent, n)
	}
}

// drainRate is the sends in the first k full periods after the first send,
// over k periods, for the largest k the sends span.
func drainRate(ts []time.Time, per time.Duration) (float64, int) {
	ts = sortedTimes(ts)
	k := int(ts[len(ts)-1].Sub(ts[0]) / per)
	if k == 0 {
		return 0, 0
	}
	end := ts[0].Add(time.Duration(k) * per)
	in := 0
	for _, t := range ts {
		if t.Before(end) {
			in++
		}
	}
	return float64(in) / (float64(k) * per.Seconds()), k
}

// mostWithin is the most times that fall in any window [t, t+w).
func mostWithin(ts []time.Time, w time.Duration) int {
	ts = sortedTimes(ts)
	most, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

func sortedTimes(ts []time.Time) []time.Time {
	ts = append([]time.Time(nil), ts...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	return ts
}
