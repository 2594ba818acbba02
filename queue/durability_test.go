package queue

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/lead"
)

// Closing the store under a running engine (no Stop, no draining) loses
// nothing: reopened, every lead and delivery is there, and the deliveries
// that were leased are due again.
func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, nil)
	hold := make(chan struct{})
	amo := newFake(func(int, *lead.Lead) (string, error) { <-hold; return "late", nil })
	bitrix := newFake(nil)
	e := NewEngine(s, nil)
	e.Configure(EngineConfig{Senders: map[string]lead.Sender{"amo": amo, "bitrix": bitrix}})
	e.Start()
	const n = 50
	var ids []string
	for i := range n {
		ids = append(ids, mustAdd(t, s, testLead(i), "amo", "bitrix").ID)
	}
	waitFor(t, "bitrix drained, amo slots full", func() bool {
		st, _ := s.Stats()
		return st.ByDestination["bitrix"][lead.StatusDelivered] == n && amo.total() == DefaultConcurrency
	})
	if got := len(rawEntries(t, s)[bLease]); got != DefaultConcurrency {
		t.Fatalf("%d leases on record, want %d", got, DefaultConcurrency)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	close(hold) // the old attempts finish against a closed store: nothing recorded
	_ = e.Stop(context.Background())

	s2 := openStore(t, dir, nil)
	if got := len(rawEntries(t, s2)[bLease]); got != 0 {
		t.Fatalf("%d leases survived the reopen", got)
	}
	for _, id := range ids {
		l, err := s2.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		a, b := l.Delivery("amo"), l.Delivery("bitrix")
		if a.Status != lead.StatusPending || a.Attempts != 0 || a.NextAt == nil || b.Status != lead.StatusDelivered {
			t.Fatalf("lead %s after reopen: amo %+v bitrix %+v", id, a, b)
		}
	}
	amo2 := newFake(nil)
	startEngine(t, s2, EngineConfig{Senders: map[string]lead.Sender{"amo": amo2, "bitrix": bitrix}})
	waitFor(t, "amo drained after reopen", func() bool {
		st, _ := s2.Stats()
		return st.ByDestination["amo"][lead.StatusDelivered] == n
	})
	if bitrix.total() != n {
		t.Fatalf("bitrix got %d sends, want %d: delivered leads were re-sent", bitrix.total(), n)
	}
}

const crashDirEnv = "LEADPROXY_QUEUE_CRASH_DIR"

// TestCrashChild is the process TestKill9 kills: it adds leads as fast as
// it can, printing each id once Add has returned, while an engine holds
// some deliveries leased in a sender that never answers.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestKill9")
	}
	s, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var out sync.Mutex
	say := func(format string, a ...any) {
		out.Lock()
		fmt.Printf(format+"\n", a...)
		out.Unlock()
	}
	e := NewEngine(s, nil)
	e.Configure(EngineConfig{Senders: map[string]lead.Sender{"amo": senderFunc(func(_ context.Context, l *lead.Lead) (string, error) {
		say("leased %s", l.ID)
		select {}
	})}})
	e.Start()
	for w := range 8 {
		go func() {
			for i := 0; ; i++ {
				l, _, err := s.Add(context.Background(), testLead(w*1_000_000+i), []string{"amo", "bitrix"})
				if err != nil {
					say("error %v", err)
					return
				}
				say("stored %s", l.ID)
			}
		}()
	}
	select {}
}

// A real kill -9 in the middle of adds and sends: every lead whose Add
// returned is on disk with its deliveries, and leased deliveries are due.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stored, leased := map[string]bool{}, map[string]bool{}
	lines := bufio.NewScanner(stdout)
	timeout := time.AfterFunc(deadline, func() { _ = cmd.Process.Kill() })
	for lines.Scan() {
		kind, id, _ := strings.Cut(lines.Text(), " ")
		switch kind {
		case "stored":
			stored[id] = true
		case "leased":
			leased[id] = true
		default:
			t.Fatalf("child: %s", lines.Text())
		}
		if len(stored) >= 500 && len(leased) >= DefaultConcurrency {
			break
		}
	}
	timeout.Stop()
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no deferred code, no Close
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(stored) < 500 {
		t.Fatalf("child stopped after %d leads", len(stored))
	}

	s := openStore(t, dir, nil)
	for id := range stored {
		l, err := s.Get(id)
		if err != nil {
			t.Fatalf("lead %s acknowledged before the kill is gone: %v", id, err)
		}
		if len(l.Deliveries) != 2 {
			t.Fatalf("lead %s lost deliveries: %+v", id, l.Deliveries)
		}
	}
	for id := range leased {
		if d := deliveryOf(t, s, id, "amo"); d.Status != lead.StatusPending || d.NextAt == nil {
			t.Fatalf("leased delivery of %s after the kill: %+v, want due", id, d)
		}
	}
	st, _ := s.Stats()
	if st.Leads < len(stored) || st.QueueDepth != 2*st.Leads {
		t.Fatalf("stats after the kill: %+v (%d acknowledged)", st, len(stored))
	}
	t.Logf("killed after %d acknowledged adds (%d on disk), %d leased", len(stored), st.Leads, len(leased))
}
