package intercept

import (
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Rate is a token bucket: Burst requests at once, refilled at PerMinute.
// A zero Rate limits nothing.
type Rate struct {
	Burst     float64
	PerMinute float64
}

func (r Rate) off() bool { return r.Burst <= 0 || r.PerMinute <= 0 }

// DefaultLimiterSize is how many addresses, and separately how many
// networks, a Limiter tracks (about 100 bytes each).
const DefaultLimiterSize = 50_000

// Limiter is a per-client limit that cannot be filled: one token bucket per
// client address and one per network (IPv4 /24, IPv6 /64), each table an
// LRU of bounded size. A new address evicts the least recently seen one,
// and an evicted bucket comes back full, so a flood from many addresses
// costs the flood memory nothing and real visitors lose nothing but the
// memory of their own earlier requests; the network bucket stays hot for
// as long as its flood goes on, so 2^64 addresses of one /64 share one
// allowance. An address that does not parse (a unix socket) is one client.
type Limiter struct {
	mu        sync.Mutex
	addr, net Rate
	addrs     *simplelru.LRU[netip.Addr, *bucket]
	nets      *simplelru.LRU[netip.Prefix, *bucket]
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewLimiter tracks up to size addresses and size networks (size <= 0:
// DefaultLimiterSize). A zero Rate turns that level off.
func NewLimiter(addr, network Rate, size int) *Limiter {
	if size <= 0 {
		size = DefaultLimiterSize
	}
	l := &Limiter{addr: addr, net: network}
	l.addrs, _ = simplelru.NewLRU[netip.Addr, *bucket](size, nil)
	l.nets, _ = simplelru.NewLRU[netip.Prefix, *bucket](size, nil)
	return l
}

// NetworkOf is the network an address's prefix bucket counts: /24 for
// IPv4 (and IPv4-mapped IPv6), /64 for IPv6.
func NetworkOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, err := a.WithZone("").Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// ParseClientAddr reads a client address as Caddy's client_ip (or a
// RemoteAddr with its port) spells it; the zero Addr when it does not parse.
func ParseClientAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// Allow takes one token from the client's bucket and one from its
// network's, or none when either is empty.
func (l *Limiter) Allow(client netip.Addr, now time.Time) bool {
	if l == nil {
		return true
	}
	client = client.Unmap().WithZone("")
	l.mu.Lock()
	defer l.mu.Unlock()
	var nb, ab *bucket
	if !l.net.off() {
		nb = take(l.nets, NetworkOf(client), l.net, now)
		if nb.tokens < 1 {
			return false
		}
	}
	if !l.addr.off() {
		ab = take(l.addrs, client, l.addr, now)
		if ab.tokens < 1 {
			return false
		}
		ab.tokens--
	}
	if nb != nil {
		nb.tokens--
	}
	return true
}

// Len is how many addresses and networks are tracked (for tests and
// metrics); never more than the size given to NewLimiter.
func (l *Limiter) Len() (addrs, nets int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addrs.Len(), l.nets.Len()
}

// take finds (or makes, full) the key's bucket and refills it to now.
func take[K comparable](c *simplelru.LRU[K, *bucket], k K, r Rate, now time.Time) *bucket {
	b, ok := c.Get(k)
	if !ok {
		b = &bucket{tokens: r.Burst, last: now}
		c.Add(k, b)
		return b
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens += d.Minutes() * r.PerMinute
		if b.tokens > r.Burst {
			b.tokens = r.Burst
		}
		b.last = now
	}
	return b
}

// KeyLimiter is one token bucket per key (a site's host name), in an LRU
// of bounded size like Limiter's tables: a Host header an attacker makes
// up costs one evictable entry.
type KeyLimiter struct {
	mu   sync.Mutex
	rate Rate
	keys *simplelru.LRU[string, *bucket]
}

// NewKeyLimiter tracks up to size keys (size <= 0: 1024). A zero Rate
// limits nothing.
func NewKeyLimiter(r Rate, size int) *KeyLimiter {
	if size <= 0 {
		size = 1024
	}
	k := &KeyLimiter{rate: r}
	k.keys, _ = simplelru.NewLRU[string, *bucket](size, nil)
	return k
}

// Allow takes one token from key's bucket, or answers false.
func (k *KeyLimiter) Allow(key string, now time.Time) bool {
	if k == nil || k.rate.off() {
		return true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	b := take(k.keys, key, k.rate, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// GuessGuard slows down guessing a secret (the Roistat API's key): after
// Free wrong guesses from one client address, or 4×Free from its network
// (IPv4 /24, IPv6 /64), each further guess must wait twice as long as the
// one before — 1 s, 2 s, 4 s, … up to Max — and a guess that comes sooner
// is refused without being checked. Bounded like Limiter (an LRU).
type GuessGuard struct {
	Free int
	Max  time.Duration

	mu sync.Mutex
	c  *simplelru.LRU[netip.Prefix, *guesses]
}

type guesses struct {
	wrong int
	until time.Time
}

// NewGuessGuard allows free wrong guesses before the delay starts.
func NewGuessGuard(free int, max time.Duration) *GuessGuard {
	g := &GuessGuard{Free: free, Max: max}
	g.c, _ = simplelru.NewLRU[netip.Prefix, *guesses](DefaultLimiterSize, nil)
	return g
}

func (g *GuessGuard) keys(client netip.Addr) [2]netip.Prefix {
	client = client.Unmap().WithZone("")
	p, _ := client.Prefix(client.BitLen())
	return [2]netip.Prefix{p, NetworkOf(client)}
}

// Wait is how long client must wait before its next guess is checked;
// 0 when it may guess now.
func (g *GuessGuard) Wait(client netip.Addr, now time.Time) time.Duration {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var wait time.Duration
	for _, k := range g.keys(client) {
		if x, ok := g.c.Peek(k); ok && x.until.Sub(now) > wait {
			wait = x.until.Sub(now)
		}
	}
	return wait
}

// Failed records a wrong guess from client at now.
func (g *GuessGuard) Failed(client netip.Addr, now time.Time) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, k := range g.keys(client) {
		free := g.Free
		if i == 1 {
			free *= 4
		}
		x, ok := g.c.Get(k)
		if !ok {
			x = &guesses{}
			g.c.Add(k, x)
		}
		x.wrong++
		if n := x.wrong - free; n >= 0 {
			d := g.Max
			if n < 32 && time.Second<<n < g.Max {
				d = time.Second << n
			}
			x.until = now.Add(d)
		}
	}
}

// Succeeded forgets the client address's wrong guesses (its network's stay).
func (g *GuessGuard) Succeeded(client netip.Addr) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.c.Remove(g.keys(client)[0])
}
