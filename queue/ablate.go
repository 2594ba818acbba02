//go:build !leadproxy_ablate

package queue

// syncCommits is false only in a benchmark build (ablate_on.go, -tags
// leadproxy_ablate, LEADPROXY_ABLATE=nosync) that measures what the fsync
// costs. Every other build syncs every commit.
const syncCommits = true
