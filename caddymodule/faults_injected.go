//go:build leadproxy_faults

package caddymodule

import "net/http"

// FaultHeader, on a form post to a binary built with -tags
// leadproxy_faults, makes capture fail on purpose after the body was read,
// parsed and turned into a lead: "panic" panics. No release build has it.
const FaultHeader = "Leadproxy-Fault"

func injectFault(r *http.Request) {
	if r.Header.Get(FaultHeader) == "panic" {
		panic("injected fault: capture panics")
	}
}
