package caddymodule

import (
	"context"
	"time"
)

// Forwarding yields to capture. On a node that captures a burst of form
// posts, the forwarder's work (a claim and a record in the local store per
// lead, whose writer the captures' fsyncs share, and the engine's
// transactions, which on a shared machine take the CPU capture needs)
// would otherwise run beside the burst. So while captures arrive fast (the
// last one started within forwardQuiet, less than captureGap after the one
// before it: about 80 a second or more), a forward waits for the next
// forwardRound tick, and the forwards that waited go together: the cluster
// engine puts them into one transaction. At a site's usual pace, and once
// a burst pauses, forwards go at once. During a burst a node forwards at
// most the local engine's in-flight forwards per destination (64) per
// round; nothing waits while the engine is down, as a forward then fails
// at once and waits for its retry anyway.
const (
	forwardQuiet = 100 * time.Millisecond
	captureGap   = forwardQuiet / 8
	forwardRound = time.Second
)

// noteCapture stamps a capture's start (hold calls it).
func (p *pooledStore) noteCapture() {
	p.prevCapture.Store(p.lastCapture.Swap(p.clock().UnixNano()))
}

func (p *pooledStore) clock() time.Time {
	if p.paceNow != nil {
		return p.paceNow()
	}
	return time.Now()
}

// paceForward returns when a forward may go: at once unless captures
// arrive fast, else at the next forwardRound tick (the same instant for
// every forward waiting), or when ctx ends.
func (p *pooledStore) paceForward(ctx context.Context) error {
	last, prev := p.lastCapture.Load(), p.prevCapture.Load()
	if prev == 0 || time.Duration(last-prev) >= captureGap {
		return nil
	}
	now := p.clock()
	if now.Sub(time.Unix(0, last)) >= forwardQuiet {
		return nil
	}
	wait := now.Truncate(forwardRound).Add(forwardRound).Sub(now)
	var tick <-chan time.Time
	if p.paceAfter != nil {
		tick = p.paceAfter(wait)
	} else {
		t := time.NewTimer(wait)
		defer t.Stop()
		tick = t.C
	}
	select {
	case <-tick:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
