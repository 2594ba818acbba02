package intercept

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

func v6(net uint32, host uint64) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0x20, 0x01
	binary.BigEndian.PutUint32(b[4:], net)
	binary.BigEndian.PutUint64(b[8:], host)
	return netip.AddrFrom16(b)
}

func TestLimiterPerAddress(t *testing.T) {
	l := NewLimiter(Rate{Burst: 3, PerMinute: 6}, Rate{Burst: 100, PerMinute: 100}, 0)
	now := time.Unix(1e9, 0)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	for i := range 3 {
		if !l.Allow(a, now) {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if l.Allow(a, now) {
		t.Fatal("fourth request at once allowed past a burst of 3")
	}
	if !l.Allow(b, now) {
		t.Fatal("another client shares the first one's bucket")
	}
	if !l.Allow(a, now.Add(10*time.Second)) { // 6/min: one token per 10 s
		t.Fatal("no token back after 10 s at 6/min")
	}
	if l.Allow(a, now.Add(10*time.Second)) {
		t.Fatal("two tokens back after 10 s at 6/min")
	}
	// IPv4-mapped IPv6 is the same client.
	if l.Allow(netip.MustParseAddr("::ffff:192.0.2.1"), now.Add(10*time.Second)) {
		t.Fatal("::ffff:192.0.2.1 got its own bucket")
	}
}

func TestLimiterPerNetwork(t *testing.T) {
	l := NewLimiter(Rate{Burst: 5, PerMinute: 5}, Rate{Burst: 50, PerMinute: 50}, 0)
	now := time.Unix(1e9, 0)
	ok := 0
	for i := range 1000 {
		if l.Allow(v6(1, uint64(i)), now) {
			ok++
		}
	}
	if ok != 50 {
		t.Fatalf("1000 addresses of one /64 got %d requests through, want the /64's burst of 50", ok)
	}
	if !l.Allow(v6(2, 1), now) {
		t.Fatal("a client of another /64 refused")
	}
	ok = 0
	for i := range 300 {
		if l.Allow(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), now) {
			ok++
		}
	}
	if ok != 50 {
		t.Fatalf("one /24 got %d through, want 50", ok)
	}
}

// The issue-16 flood: 100,000 addresses, each new to the limiter, then a
// real visitor. Memory stays at the table size and the visitor gets in.
func TestLimiterFloodOfAddresses(t *testing.T) {
	const size = 10_000
	l := NewLimiter(Rate{Burst: 20, PerMinute: 30}, Rate{Burst: 60, PerMinute: 60}, size)
	now := time.Unix(1e9, 0)
	real := netip.MustParseAddr("198.51.100.7")
	if !l.Allow(real, now) {
		t.Fatal("visitor refused before the flood")
	}
	for i := range 100_000 {
		// Distinct /64s and distinct IPv4 /24s: every network is new too.
		if i%2 == 0 {
			l.Allow(v6(uint32(i), 1), now)
		} else {
			l.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
		}
		if a, n := l.Len(); a > size || n > size {
			t.Fatalf("after %d addresses the limiter tracks %d addresses, %d networks; bound %d", i+1, a, n, size)
		}
	}
	for i := range 20 {
		if !l.Allow(real, now) {
			t.Fatalf("real visitor's report %d refused after the flood", i+1)
		}
	}
}

// FuzzLimiter drives limiters with arbitrary addresses and clock steps.
// In a table large enough to keep every bucket, no address gets more than
// its burst plus what its rate refilled, nor a network more than its own;
// in a tiny one the tables never grow past their bound. Nothing panics.
func FuzzLimiter(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 0, 1, 2, 3, 4, 200, 9, 9, 9, 9, 9})
	f.Add([]byte("\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		addrRate, netRate := Rate{Burst: 2, PerMinute: 60}, Rate{Burst: 4, PerMinute: 120}
		big := NewLimiter(addrRate, netRate, 1<<16)
		tiny := NewLimiter(addrRate, netRate, 4)
		now := time.Unix(1e9, 0)
		start := now
		allowed := map[netip.Addr]int{}
		perNet := map[netip.Prefix]int{}
		for len(data) > 0 {
			var a netip.Addr
			switch n := int(data[0] % 3); {
			case n == 0 && len(data) >= 17:
				a = netip.AddrFrom16([16]byte(data[1:17]))
				data = data[17:]
			case n == 1 && len(data) >= 5:
				a = netip.AddrFrom4([4]byte(data[1:5]))
				data = data[5:]
			default:
				now = now.Add(time.Duration(data[0]) * 100 * time.Millisecond)
				data = data[1:]
				continue
			}
			if big.Allow(a, now) {
				allowed[a.Unmap()]++
				perNet[NetworkOf(a)]++
			}
			tiny.Allow(a, now)
			if x, y := tiny.Len(); x > 4 || y > 4 {
				t.Fatalf("tiny tables %d, %d past 4", x, y)
			}
		}
		minutes := now.Sub(start).Minutes()
		for a, n := range allowed {
			if float64(n) > addrRate.Burst+minutes*addrRate.PerMinute+1e-9 {
				t.Fatalf("%v allowed %d times in %.3f min", a, n, minutes)
			}
		}
		for p, n := range perNet {
			if float64(n) > netRate.Burst+minutes*netRate.PerMinute+1e-9 {
				t.Fatalf("%v allowed %d times in %.3f min", p, n, minutes)
			}
		}
	})
}

func TestKeyLimiter(t *testing.T) {
	k := NewKeyLimiter(Rate{Burst: 2, PerMinute: 2}, 2)
	now := time.Unix(1e9, 0)
	if !k.Allow("a", now) || !k.Allow("a", now) || k.Allow("a", now) {
		t.Fatal("burst of 2 not kept")
	}
	if !k.Allow("b", now) {
		t.Fatal("key b shares a's bucket")
	}
	if !k.Allow("a", now.Add(30*time.Second)) || k.Allow("a", now.Add(30*time.Second)) {
		t.Fatal("2/min: want exactly one token back after 30 s")
	}
	if NewKeyLimiter(Rate{}, 0).Allow("x", now) != true {
		t.Fatal("a zero rate limits")
	}
}

func TestGuessGuard(t *testing.T) {
	g := NewGuessGuard(3, time.Minute)
	now := time.Unix(1e9, 0)
	a := netip.MustParseAddr("203.0.113.5")
	for range 3 {
		if g.Wait(a, now) != 0 {
			t.Fatal("a free guess refused")
		}
		g.Failed(a, now)
	}
	if w := g.Wait(a, now); w != time.Second {
		t.Fatalf("after the third wrong guess: wait %v, want 1s", w)
	}
	now = now.Add(time.Second)
	var waits []time.Duration
	for range 8 {
		g.Failed(a, now)
		w := g.Wait(a, now)
		waits = append(waits, w)
		now = now.Add(w)
	}
	want := []time.Duration{2, 4, 8, 16, 32, 60, 60, 60}
	for i := range want {
		if waits[i] != want[i]*time.Second {
			t.Fatalf("waits %v, want %v seconds", waits, want)
		}
	}
	if g.Wait(netip.MustParseAddr("198.51.100.1"), now) != 0 {
		t.Fatal("another network waits")
	}
	g.Succeeded(a)
	if g.Wait(a, now) != 0 {
		t.Fatal("still waiting after a right key")
	}
	// One /24 rotating addresses: the network's 4×3 free guesses, then waits.
	for i := range 11 {
		g.Failed(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), now)
	}
	if g.Wait(netip.AddrFrom4([4]byte{192, 0, 2, 200}), now) != 0 {
		t.Fatal("the network waits after its free guesses")
	}
	g.Failed(netip.AddrFrom4([4]byte{192, 0, 2, 11}), now)
	if g.Wait(netip.AddrFrom4([4]byte{192, 0, 2, 201}), now) != time.Second {
		t.Fatal("a fresh address of a guessing network does not wait")
	}
}
