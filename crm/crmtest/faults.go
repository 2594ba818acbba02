// Package crmtest holds what the fake CRM servers share: a queue of faults a
// test arms, and a record of the requests a fake accepted. Each CRM's own
// fake (crm/<type>/<type>test) renders the faults the way its vendor does.
package crmtest

import (
	"net/http"
	"sync"
	"time"
)

// Fault is one documented failure a fake can be told to answer with.
type Fault string

const (
	None          Fault = ""
	Unauthorized  Fault = "401"        // bad or expired token
	PaymentHTML   Fault = "402-html"   // account blocked/unpaid, HTML body
	ForbiddenHTML Fault = "403-html"   // blocked, HTML body
	RateJSON      Fault = "429-json"   // rate limited, JSON body, Retry-After if the vendor sends it
	RateHTML      Fault = "429-html"   // rate limited, HTML body, no Retry-After
	QueryLimit    Fault = "503-limit"  // 503 QUERY_LIMIT_EXCEEDED (Bitrix24) or the vendor's 503
	ServerError   Fault = "500"        // internal error
	Slow          Fault = "slow"       // answers after Faults.SlowFor (a timeout for the client)
	Garbage       Fault = "garbage"    // 200 with a body that is not the documented format
	Validation    Fault = "validation" // the vendor's validation error (400/422)
	Unavailable   Fault = "503"        // plain 503 (maintenance)
	Reset         Fault = "reset"      // connection closed with no answer
)

// Faults is a FIFO of faults a test arms; each request takes the next one.
// The zero value answers normally. Safe for concurrent use.
type Faults struct {
	mu      sync.Mutex
	queue   []Fault
	sticky  Fault
	SlowFor time.Duration // how long Slow waits; default 3s
}

// Push arms faults for the next requests, in order.
func (f *Faults) Push(fs ...Fault) {
	f.mu.Lock()
	f.queue = append(f.queue, fs...)
	f.mu.Unlock()
}

// Set makes every request answer with fault until Set(None).
func (f *Faults) Set(fault Fault) {
	f.mu.Lock()
	f.sticky = fault
	f.mu.Unlock()
}

// Next takes the fault for this request.
func (f *Faults) Next() Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queue) > 0 {
		x := f.queue[0]
		f.queue = f.queue[1:]
		return x
	}
	return f.sticky
}

// Wait sleeps for the Slow fault, or until the client goes away.
func (f *Faults) Wait(r *http.Request) {
	d := f.SlowFor
	if d == 0 {
		d = 3 * time.Second
	}
	select {
	case <-time.After(d):
	case <-r.Context().Done():
	}
}

// ResetConn closes the connection without an answer.
func ResetConn(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// HTML writes an HTML error page, as proxies and blocked accounts answer.
func HTML(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte("<!DOCTYPE html><html><head><title>" + text + "</title></head><body><h1>" + text + "</h1></body></html>"))
}

// Log records what a fake accepted, for assertions.
type Log[T any] struct {
	mu    sync.Mutex
	items []T
}

// Add appends one record.
func (l *Log[T]) Add(x T) {
	l.mu.Lock()
	l.items = append(l.items, x)
	l.mu.Unlock()
}

// All returns a copy of the records.
func (l *Log[T]) All() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]T(nil), l.items...)
}

// Len returns the number of records.
func (l *Log[T]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.items)
}
