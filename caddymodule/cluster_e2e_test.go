package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/internal/pgtest"
	"github.com/leadproxy/leadproxy/lead"
)

// Cluster mode end to end (issue 17): two and three real Caddy processes,
// each with its own nutsdb folder, sharing one PostgreSQL database
// (internal/pgtest), delivering to one Standard Webhooks receiver
// (durReceiver) that records each delivery's X-Sent-Ms, stamped by the
// sending node from the machine's one clock. Every wait is on an event:
// a count at the receiver, the fleet's queue drained, a node's
// unforwarded count.

// clusterSite is one node: the durability site (POST /lead with a phone)
// and a scripted form for the marker and the script's report, one
// webhook destination whose account (its URL's host) the nodes share.
const clusterSite = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
		retry_for {{RETRY_FOR}}
		cluster {{DSN}} {
			node {{NODE}}{{FALLBACK}}
		}
		destination hook webhook {
			url     {{HOOK}}
			secret  ` + durSecret + `
			header  X-Sent-Ms {time.now.unix_ms}
			rate    {{RATE}}
			timeout 5s
		}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	leadproxy {
		form "Durability" {
			post    /lead
			require phone{{DRY}}
		}
		form "Заявка с сайта" {
			submit "#contact-form"
			name   field name
			phone  field phone
		}
	}
	handle /leads* {
		leadproxy_dashboard
	}
	handle {
		reverse_proxy {{UPSTREAM}}
	}
}
`

// fleetOpts are one test's settings, the same on every node.
type fleetOpts struct {
	rate, retryFor string
	fallback       string // fallback_after; "" for none
	dry            bool   // dry_run on the Durability form
}

// testFleet is a set of nodes on one database and one receiver.
type testFleet struct {
	t     *testing.T
	pg    *pgtest.Server
	dsn   string
	recv  *durReceiver
	up    *durUpstream
	opts  fleetOpts
	nodes []*caddyProc
}

func startFleet(t *testing.T, n int, o fleetOpts) *testFleet {
	t.Helper()
	pg := pgtest.Start(t)
	// Short backoffs: the forwarder retries (and the engine's deliveries)
	// come back in well under a second once PostgreSQL or the CRM is back.
	t.Setenv(TestBackoffEnv, "50ms,500ms")
	if o.retryFor == "" {
		o.retryFor = "1h"
	}
	f := &testFleet{t: t, pg: pg, dsn: pg.NewDB(t), recv: newDurReceiver(t), up: newDurUpstream(t), opts: o}
	for i := range n {
		f.nodes = append(f.nodes, startCaddy(t, f.config(), f.vars(i)))
	}
	return f
}

func (f *testFleet) config() string {
	fb := ""
	if f.opts.fallback != "" {
		fb = "\n\t\t\tfallback_after " + f.opts.fallback
	}
	dry := ""
	if f.opts.dry {
		dry = "\n\t\t\tdry_run"
	}
	return strings.NewReplacer("{{RATE}}", f.opts.rate, "{{RETRY_FOR}}", f.opts.retryFor, "{{FALLBACK}}", fb, "{{DRY}}", dry).Replace(clusterSite)
}

func (f *testFleet) vars(i int) map[string]string {
	return map[string]string{"DSN": f.dsn, "NODE": fmt.Sprintf("node-%c", 'a'+i), "HOOK": f.recv.URL, "UPSTREAM": f.up.URL}
}

// fleetStats is /leadproxy/stats in cluster mode; read whatever the
// status (503 while the engine is unreachable).
type fleetStats struct {
	Leads      int            `json:"leads"`
	ByStatus   map[string]int `json:"by_status"`
	QueueDepth int            `json:"queue_depth"`
	Error      string         `json:"error"`
	Cluster    *clusterStats  `json:"cluster"`
}

func statsOf(t testing.TB, c *caddyProc) (fleetStats, int) {
	t.Helper()
	resp, err := http.Get(c.Admin + "/leadproxy/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s fleetStats
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("stats: %v: %s", err, b)
	}
	if s.Cluster == nil {
		t.Fatalf("stats without the cluster section (%d): %s", resp.StatusCode, b)
	}
	return s, resp.StatusCode
}

// drained waits until no node has unforwarded leads and the fleet's queue
// is empty: every delivery delivered or failed, nothing in flight.
func (f *testFleet) drained(within time.Duration) {
	f.t.Helper()
	waitFor(f.t, "every node forwarded and the fleet's queue drained", within, func() bool {
		for _, c := range f.nodes {
			s, code := statsOf(f.t, c)
			if code != 200 || s.Cluster.Unforwarded != 0 || s.QueueDepth != 0 {
				return false
			}
		}
		return true
	})
}

// postLeads posts n leads to node c and returns their uids (all answered).
func postLeads(t *testing.T, c *caddyProc, prefix string, n int) map[string]bool {
	t.Helper()
	load := newDurLoad(c.URL("PORT_SITE")+"/lead", prefix, 4)
	for range n {
		if uid, ok := load.post(); !ok {
			t.Fatalf("POST %s to %s not answered: %s", uid, c.Admin, load.firstErr)
		}
	}
	got, _, _ := load.snapshot()
	return got
}

func union(sets ...map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, s := range sets {
		for k := range s {
			out[k] = true
		}
	}
	return out
}

// sentTimes is each delivery's X-Sent-Ms, stamped by the sending node
// after the engine granted it a slot of the account's rate.
func (f *testFleet) sentTimes() []time.Time {
	f.recv.mu.Lock()
	defer f.recv.mu.Unlock()
	out := make([]time.Time, len(f.recv.sentMs))
	for i, ms := range f.recv.sentMs {
		out[i] = time.UnixMilli(ms)
	}
	return out
}

// TestClusterE2ERateIsFleetWide: three nodes capture a backlog together;
// the account's rate (5/1s) holds across the fleet in every window, which
// three per-node limiters (15/1s) would not. Each lead is delivered once.
func TestClusterE2ERateIsFleetWide(t *testing.T) {
	const n = 5
	f := startFleet(t, 3, fleetOpts{rate: fmt.Sprintf("%d/1s", n)})
	var all []map[string]bool
	for i, c := range f.nodes {
		all = append(all, postLeads(t, c, fmt.Sprintf("rate%d", i), 10))
	}
	answered := union(all...)
	waitFor(t, "every lead delivered", 60*time.Second, func() bool { return f.recv.has(answered) })
	f.drained(30 * time.Second)
	f.recv.check(t, 0)
	sent := f.sentTimes()
	if len(sent) != len(answered) {
		t.Fatalf("%d deliveries stamped, %d leads", len(sent), len(answered))
	}
	// The stamp is taken after the slot is claimed, so it can lag its
	// claim a little on a loaded machine; 50ms of slack for that (a
	// per-node limit would put up to 15 sends in the window).
	most := mostWithin(sent, time.Second-50*time.Millisecond)
	rate, k := drainRate(sent, time.Second)
	f.recv.mu.Lock()
	arrived := mostWithin(f.recv.arrivals, time.Second)
	f.recv.mu.Unlock()
	t.Logf("%d leads from 3 nodes; most sends in any 1s window: %d (limit %d); %.1f/s over %d s; by the receiver's clock: %d",
		len(sent), most, n, rate, k, arrived)
	if most > n {
		t.Errorf("%d sends within one second across the fleet, the account's limit is %d/1s", most, n)
	}
}

// TestClusterE2ETwoNodes: one submission reaching both nodes (the form's
// POST on A, the script's report on B) is one delivery; A lists what B
// captured, and a resend from A delivers it once.
func TestClusterE2ETwoNodes(t *testing.T) {
	f := startFleet(t, 2, fleetOpts{rate: "100/1s", retryFor: "2s"})
	a, b := f.nodes[0], f.nodes[1]

	// One submission, sid shared: the POST with the capture script's
	// marker on A, the script's report on B (the visitor's browser may
	// reach either through the load balancer).
	const sid = "sid-two-nodes-0001"
	form := url.Values{"name": {"Анна"}, "phone": {"+79991230001"}, "uid": {"both"}}
	req, _ := http.NewRequest("POST", a.URL("PORT_SITE")+"/contact", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(markerCookie(t, a.URL("PORT_SITE"), "Заявка с сайта", sid, nil))
	resp, err := noCompress.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	site := b.URL("PORT_SITE")
	report, _ := json.Marshal(map[string]any{"v": 1, "r": intercept.RuleID("Заявка с сайта"), "s": sid, "page": site + "/",
		"f": map[string]string{"name": "Анна", "phone": "+79991230001", "uid": "both"}})
	if code, body := hardPost(t, site+"/_leadproxy/collect", "text/plain", report, map[string]string{"Origin": site}); code != 204 {
		t.Fatalf("report on B: %d %s", code, body)
	}
	waitFor(t, "the submission delivered", 30*time.Second, func() bool { return f.recv.distinct() >= 1 })
	f.drained(30 * time.Second)
	f.recv.mu.Lock()
	deliveries := f.recv.ok
	f.recv.mu.Unlock()
	if deliveries != 1 {
		t.Fatalf("one submission on two nodes: %d deliveries, want 1", deliveries)
	}
	var list leadList
	a.AdminJSON("/leadproxy/leads", &list)
	if len(list.Leads) != 1 || list.Leads[0].SubmissionID != sid {
		t.Fatalf("the fleet's list holds %d leads for one submission: %+v", len(list.Leads), list.Leads)
	}
	// B's dashboard lists the lead as well (the fleet's list).
	dash, err := noCompress.Get(b.URL("PORT_SITE") + "/leads")
	if page := dashExpect(t, dash, err, 200); !strings.Contains(page, "Анна") || !strings.Contains(page, list.Leads[0].ID) {
		t.Fatalf("B's dashboard does not list the lead %s", list.Leads[0].ID)
	}

	// B captures a lead while the CRM is down; its delivery fails after
	// retry_for (2s). A's list shows it, failed; a resend from A sends it
	// once. The down CRM's slow answer waits until the sender gives up (its
	// 5s timeout), so it is never a late 200 that counts as delivered.
	f.recv.faults.SlowFor = time.Hour
	f.recv.down.Store(true)
	onB := postLeads(t, b, "onb", 1)
	var id string
	waitFor(t, "B's lead failed, in A's list", 60*time.Second, func() bool {
		for _, l := range allLeads(a) {
			if onB[l.Fields["uid"]] {
				id = l.ID
				return l.Status() == lead.StatusFailed
			}
		}
		return false
	})
	f.recv.down.Store(false)
	rr, err := http.Post(a.Admin+"/leadproxy/leads/"+id+"/retry", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	rr.Body.Close()
	if rr.StatusCode != http.StatusAccepted {
		t.Fatalf("resend from A: %d", rr.StatusCode)
	}
	waitFor(t, "the resent lead delivered", 30*time.Second, func() bool { return f.recv.has(onB) })
	f.drained(30 * time.Second)
	f.recv.check(t, 0)
	var got lead.Lead
	b.AdminJSON("/leadproxy/leads/"+id, &got)
	if d := got.Delivery("hook"); d == nil || d.Status != lead.StatusDelivered {
		t.Fatalf("B's view of the resent lead: %+v", got.Deliveries)
	}
	// Erased from A: gone from the fleet at once, and B erases its local
	// copy from the engine's tombstones (its metric counts it).
	dreq, _ := http.NewRequest("DELETE", a.Admin+"/leadproxy/leads/"+id, nil)
	dr, err := http.DefaultClient.Do(dreq)
	if err != nil {
		t.Fatal(err)
	}
	dr.Body.Close()
	if dr.StatusCode != http.StatusNoContent {
		t.Fatalf("delete from A: %d", dr.StatusCode)
	}
	if code := b.AdminJSON("/leadproxy/leads/"+id, nil); code != http.StatusNotFound {
		t.Fatalf("B still shows the erased lead: %d", code)
	}
	waitFor(t, "B to erase its local copy", 30*time.Second, func() bool {
		n, _ := promSample(scrape(t, b), "leadproxy_cluster_erased_local_total")
		return n >= 1
	})

	// A reload may change fallback_after; not the node's name (the lead
	// store and its cluster connection are shared with the running config).
	f.opts.fallback = "10m"
	if err := b.Reload(f.config()); err != nil {
		t.Fatalf("reload with fallback_after changed: %v", err)
	}
	b.vars["NODE"] = "node-renamed"
	err = b.Reload(f.config())
	b.vars["NODE"] = "node-b"
	if err == nil || !strings.Contains(err.Error(), "restart Caddy") {
		t.Fatalf("reload renaming the node: %v, want it refused", err)
	}
	after := postLeads(t, b, "afterreload", 1)
	waitFor(t, "a lead captured after the refused reload delivered", 30*time.Second, func() bool { return f.recv.has(after) })

	// Both nodes show in each node's stats, with their heartbeat.
	s, _ := statsOf(t, b)
	if len(s.Cluster.Nodes) != 2 || s.Cluster.Node != "node-b" || !s.Cluster.Engine.Up || s.Cluster.Unforwarded != 0 {
		t.Fatalf("B's stats: %+v", s.Cluster)
	}
	for _, n := range s.Cluster.Nodes {
		if !n.Alive || n.LastSeen.IsZero() {
			t.Errorf("node %s: %+v", n.Name, n)
		}
	}
}

// TestClusterE2EEngineDownUnderLoad: PostgreSQL stopped the hard way (pg_ctl
// stop -m immediate) while two nodes capture; they go on answering every
// POST; once it is started again every acknowledged lead is delivered.
func TestClusterE2EEngineDownUnderLoad(t *testing.T) {
	f := startFleet(t, 2, fleetOpts{rate: "1000/1s"})
	loads := []*durLoad{newDurLoad(f.nodes[0].URL("PORT_SITE")+"/lead", "pga", 8), newDurLoad(f.nodes[1].URL("PORT_SITE")+"/lead", "pgb", 8)}
	ctx, stop := context.WithCancel(context.Background())
	var waits []func()
	for _, l := range loads {
		l.pause = 50 * time.Millisecond
		waits = append(waits, l.run(ctx, 4))
	}
	waitFor(t, "deliveries under load", 60*time.Second, func() bool { return f.recv.distinct() >= 40 })
	f.pg.StopImmediate(t)
	stoppedAt := time.Now()
	// While the engine is down each node keeps capturing; wait until both
	// show a backlog they could not forward and have retried forwarding
	// against the dead server many times (their metrics count each
	// failed forward), and report the engine unreachable for 30 s.
	base := make([]float64, len(f.nodes))
	for i, c := range f.nodes {
		base[i], _ = promSample(scrape(t, c), `leadproxy_cluster_calls_total{call="forward",outcome="error"}`)
	}
	waitFor(t, "unforwarded leads and failed forwards on both nodes", 90*time.Second, func() bool {
		for i, c := range f.nodes {
			s, _ := statsOf(t, c)
			failed, _ := promSample(scrape(t, c), `leadproxy_cluster_calls_total{call="forward",outcome="error"}`)
			if s.Cluster.Engine.Up || s.Cluster.Engine.DownForSeconds < 30 || s.Cluster.Unforwarded < 30 || failed-base[i] < 200 {
				return false
			}
		}
		return true
	})
	before := f.recv.distinct()
	f.pg.Start(t)
	down := time.Since(stoppedAt)
	waitFor(t, "deliveries after the engine is back", 60*time.Second, func() bool { return f.recv.distinct() > before+20 })
	stop()
	for _, w := range waits {
		w()
	}
	var answered []map[string]bool
	failed := 0
	for _, l := range loads {
		got, n, firstErr := l.snapshot()
		if n > 0 {
			t.Errorf("%d POSTs not answered while the engine was down (first: %s)", n, firstErr)
		}
		failed += n
		answered = append(answered, got)
	}
	all := union(answered...)
	waitFor(t, "every acknowledged lead delivered", 90*time.Second, func() bool { return f.recv.has(all) })
	f.drained(60 * time.Second)
	// Exactly once: an attempt in flight at the stop keeps retrying its
	// record until the server is back (well within its lease), so it is
	// not sent again.
	repeats := f.recv.check(t, 0)
	t.Logf("%d leads acknowledged, PostgreSQL down %s with %d delivered before; %d repeated deliveries (same webhook-id)",
		len(all), down.Round(time.Millisecond), before, repeats)
}

// TestClusterE2EKill9UnderLoad: node A is killed (SIGKILL) while both
// nodes capture; every POST A acknowledged is delivered once A is back,
// and B kept delivering throughout.
func TestClusterE2EKill9UnderLoad(t *testing.T) {
	f := startFleet(t, 2, fleetOpts{rate: "1000/1s"})
	a := f.nodes[0]
	la := newDurLoad(a.URL("PORT_SITE")+"/lead", "killa", 8)
	lb := newDurLoad(f.nodes[1].URL("PORT_SITE")+"/lead", "killb", 4)
	ctx, stop := context.WithCancel(context.Background())
	la.pause = 10 * time.Millisecond // under load, not a flood: the test stays short
	waitA := la.run(ctx, 8)
	lb.pause = 20 * time.Millisecond
	waitB := lb.run(ctx, 4)
	waitFor(t, "captures and deliveries under load", 60*time.Second, func() bool {
		return la.count() >= 200 && f.recv.distinct() >= 100
	})
	a.Kill()
	killedWith := la.count()
	waitFor(t, "B delivering with A dead", 60*time.Second, func() bool { return lb.count() >= 40 })
	a.Restart(f.config())
	stop()
	waitA()
	waitB()
	gotA, _, _ := la.snapshot() // answered before the kill and after the restart
	gotB, failedB, firstErr := lb.snapshot()
	if failedB > 0 {
		t.Errorf("%d POSTs to B not answered (first: %s)", failedB, firstErr)
	}
	all := union(gotA, gotB)
	waitFor(t, "every acknowledged lead delivered", 90*time.Second, func() bool { return f.recv.has(all) })
	f.drained(60 * time.Second)
	repeats := f.recv.check(t, 2*4)
	t.Logf("A acknowledged %d POSTs before the kill (%d in all), B %d; %d repeated deliveries (same webhook-id)", killedWith, len(gotA), len(gotB), repeats)
}

// TestClusterE2EFallbackDeliversOnce: with fallback_after, nodes cut off
// from the engine deliver their own leads; when PostgreSQL is back those
// leads are forwarded as delivered and the CRM sees each exactly once.
func TestClusterE2EFallbackDeliversOnce(t *testing.T) {
	f := startFleet(t, 2, fleetOpts{rate: "1000/1s", fallback: "1s"})
	before := union(postLeads(t, f.nodes[0], "fba", 5), postLeads(t, f.nodes[1], "fbb", 5))
	waitFor(t, "deliveries through the engine", 30*time.Second, func() bool { return f.recv.has(before) })
	f.pg.StopImmediate(t)
	during := union(postLeads(t, f.nodes[0], "fbda", 10), postLeads(t, f.nodes[1], "fbdb", 10))
	waitFor(t, "each node delivering its own leads with the engine down", 60*time.Second, func() bool { return f.recv.has(during) })
	for _, c := range f.nodes {
		if s, _ := statsOf(t, c); s.Cluster.Engine.Up || s.Cluster.Unforwarded == 0 {
			t.Fatalf("%s: delivered on its own, but the engine shows up or nothing waits to be forwarded: %+v", c.Admin, s.Cluster)
		}
	}
	f.pg.Start(t)
	f.drained(60 * time.Second)
	f.recv.check(t, 0)
	all := union(before, during)
	if f.recv.distinct() != len(all) {
		t.Errorf("the CRM has %d leads, %d were posted", f.recv.distinct(), len(all))
	}
	listed := allLeads(f.nodes[0])
	if len(listed) != len(all) {
		t.Errorf("the fleet's list holds %d leads, %d were posted", len(listed), len(all))
	}
	for _, l := range listed {
		if d := l.Delivery("hook"); d == nil || d.Status != lead.StatusDelivered || d.CRMID == "" {
			t.Errorf("lead %s (%s) in the fleet's list: %+v", l.ID, l.Fields["uid"], d)
		}
	}
}

// TestClusterE2EValidateConnectsToNothing: `caddy validate` of a config
// with a cluster checks it without connecting (the DSN points at a port
// that counts connections), and names an unset password variable.
func TestClusterE2EValidateConnectsToNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	write := func(dsn string) {
		body := "{\n\tadmin off\n\tleadproxy {\n\t\tstorage " + filepath.Join(dir, "leads") + "\n\t\tcluster " + dsn + "\n\t}\n}\nhttp://127.0.0.1:0 {\n\trespond ok\n}\n"
		if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	validate := func(env ...string) (string, error) {
		cmd := exec.Command(caddyBin, "validate", "--config", cfg, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), append(env, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	write("postgres://leadproxy:{env.LP_VALIDATE_PW}@" + ln.Addr().String() + "/leads?sslmode=disable")
	if out, err := validate("LP_VALIDATE_PW=s3cret"); err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	out, err := validate()
	if err == nil || !strings.Contains(out, "environment variable LP_VALIDATE_PW is not set") {
		t.Fatalf("validate without the variable: %v\n%s", err, out)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("caddy validate connected to the engine %d times", n)
	}
}

// TestClusterE2EDryRun: in cluster mode a dry-run lead stays on the node
// that captured it (listed there with status=dry_run, its preview made,
// nothing forwarded or sent); after a reload turns dry_run off, a resend
// from that node forwards it and the fleet delivers it once, and every
// node then lists it.
func TestClusterE2EDryRun(t *testing.T) {
	f := startFleet(t, 2, fleetOpts{rate: "100/1s", dry: true})
	a, b := f.nodes[0], f.nodes[1]
	trial := postLeads(t, b, "trial", 3)
	var held leadList
	waitFor(t, "B's trial leads listed with their previews", 30*time.Second, func() bool {
		held = leadList{}
		b.AdminJSON("/leadproxy/leads?status=dry_run", &held)
		if len(held.Leads) != len(trial) {
			return false
		}
		for _, l := range held.Leads {
			d := l.Delivery("hook")
			if d == nil || d.Status != lead.StatusDryRun || len(d.Preview) == 0 {
				return false
			}
		}
		return true
	})
	// Held deliveries have no due time: nothing was forwarded or sent.
	if n := f.recv.n.Load(); n != 0 {
		t.Fatalf("%d requests reached the CRM during the dry run", n)
	}
	if s, _ := statsOf(t, b); s.Cluster == nil || s.Cluster.Unforwarded != 0 {
		t.Fatalf("B's stats during the dry run: %+v", s.Cluster)
	}
	for _, l := range allLeads(a) {
		if trial[l.Fields["uid"]] {
			t.Fatalf("A lists B's trial lead %s before it was sent", l.ID)
		}
	}
	f.opts.dry = false
	if err := b.Reload(f.config()); err != nil {
		t.Fatal(err)
	}
	for _, l := range held.Leads {
		rr, err := http.Post(b.Admin+"/leadproxy/leads/"+l.ID+"/retry", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		rr.Body.Close()
		if rr.StatusCode != http.StatusAccepted {
			t.Fatalf("resend of %s from B after the reload: %d", l.ID, rr.StatusCode)
		}
	}
	waitFor(t, "the trial leads delivered", 30*time.Second, func() bool { return f.recv.has(trial) })
	f.drained(30 * time.Second)
	f.recv.check(t, 0)
	onA := 0
	for _, l := range allLeads(a) {
		if trial[l.Fields["uid"]] {
			onA++
		}
	}
	if onA != len(trial) {
		t.Fatalf("A lists %d of B's %d sent trial leads", onA, len(trial))
	}
}
