//go:build !leadproxy_ablate

package caddymodule

// ablation names the part of capture a benchmark build skips, to measure
// what that part costs (ablate_on.go, built with -tags leadproxy_ablate, set
// by bench/capture.sh's ABLATE). In every other build it is empty and the
// branches on it compile away.
const ablation = ""
