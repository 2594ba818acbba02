package caddymodule

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/leadproxy/leadproxy/lead"
)

// On first boot Caddy starts its apps in no fixed order, so the http app
// can serve a form post before this app has opened the store. The post
// waits for Start instead of losing its lead (a CI run lost one so: the
// webhook end-to-end test waited 90 s for a lead that was never stored).
func TestCaptureWaitsForAppStart(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	a := &App{Storage: t.TempDir()}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	type result struct {
		l   *lead.Lead
		err error
	}
	done := make(chan result, 1)
	go func() {
		release := a.holdCapture(context.Background())
		defer release()
		l, _, err := a.Capture(context.Background(), &lead.Lead{Form: "Заявка", Phone: "+79990001234"}, nil)
		done <- result{l, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("Capture returned before Start: %+v %v", r.l, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	r := <-done
	if r.err != nil || r.l == nil || r.l.ID == "" {
		t.Fatalf("capture during start: %+v %v", r.l, r.err)
	}
	if got, err := a.store().Get(r.l.ID); err != nil || got.Phone != "+79990001234" {
		t.Fatalf("stored lead: %+v %v", got, err)
	}

	// A capture whose request ends while it waits gives up with a clear error.
	b := &App{Storage: t.TempDir()}
	if err := b.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	gone, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer stop()
	if _, _, err := b.Capture(gone, &lead.Lead{Form: "x"}, nil); !errors.Is(err, errStoreNotReady) {
		t.Fatalf("capture on an app that never starts: %v", err)
	}
}

// A reload that would turn cluster mode on for a store a running config
// holds is refused in Provision, before Caddy starts any app of the new
// config: the HTTP app, started first in a random order, would have opened
// listeners whose close drops the connections they were about to accept
// (a CI run lost a form post so, right after such a refused reload).
func TestClusterChangeRefusedInProvision(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	dir := t.TempDir()
	running := &App{Storage: dir}
	if err := running.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	defer running.Stop()
	next := &App{Storage: dir, Cluster: &ClusterOptions{DSN: "postgres://leadproxy@127.0.0.1:1/leads", Node: "a"}}
	err := next.Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "restart Caddy") {
		t.Fatalf("provisioning cluster mode on the running store: %v; want it refused", err)
	}
	// The same settings provision (and start, sharing the store).
	same := &App{Storage: dir}
	if err := same.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := same.Start(); err != nil {
		t.Fatal(err)
	}
	same.Stop()
	if running.store() == nil {
		t.Fatal("the running config lost its store")
	}
}
