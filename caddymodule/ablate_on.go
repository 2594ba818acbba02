//go:build leadproxy_ablate

package caddymodule

import (
	"fmt"
	"os"
)

// ablation, in a benchmark build only, from LEADPROXY_ABLATE:
//
//	nocapture  form posts are not read at all: the handler's own cost;
//	nostore    the lead is read, parsed, extracted, counted and logged, but
//	           not stored: capture without the store;
//	nosync     (read by package queue) the store commits without fsync.
//
// No release build has it: a lead that is not stored is a lost lead.
var ablation = func() string {
	v := os.Getenv("LEADPROXY_ABLATE")
	switch v {
	case "", "nocapture", "nostore", "nosync":
		return v
	}
	panic(fmt.Sprintf("LEADPROXY_ABLATE=%q: want nocapture, nostore or nosync", v))
}()
