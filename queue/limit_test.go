package queue

import (
	"testing"
	"time"
)

// TestRateStricter: the slower rate is the stricter, unlimited the least
// strict, and of two equal rates the one with the smaller burst.
func TestRateStricter(t *testing.T) {
	none := Rate{}
	for _, c := range []struct {
		a, b Rate
		want bool
	}{
		{Rate{N: 7, Per: time.Second}, Rate{N: 10, Per: time.Second}, true},
		{Rate{N: 10, Per: time.Second}, Rate{N: 7, Per: time.Second}, false},
		{Rate{N: 60, Per: time.Minute}, Rate{N: 2, Per: time.Second}, true},
		{Rate{N: 1, Per: time.Second}, Rate{N: 60, Per: time.Minute}, true}, // same rate, smaller burst
		{Rate{N: 60, Per: time.Minute}, Rate{N: 1, Per: time.Second}, false},
		{Rate{N: 1, Per: time.Second}, Rate{N: 1, Per: time.Second}, false},
		{none, Rate{N: 1, Per: time.Hour}, false},
		{Rate{N: 1000, Per: time.Millisecond}, none, true},
		{none, none, false},
	} {
		if got := c.a.Stricter(c.b); got != c.want {
			t.Errorf("%+v.Stricter(%+v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
