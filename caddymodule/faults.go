//go:build !leadproxy_faults

package caddymodule

import "net/http"

// injectFault is where the end-to-end tests of failure isolation make
// capture fail (faults_injected.go, built with -tags leadproxy_faults). In
// every other build it does nothing and compiles away.
func injectFault(*http.Request) {}
