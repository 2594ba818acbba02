//go:build leadproxy_ablate

package queue

import "os"

// syncCommits: LEADPROXY_ABLATE=nosync, in a benchmark build only, commits
// without fsync to measure what the fsync costs (bench/capture.sh ABLATE).
var syncCommits = os.Getenv("LEADPROXY_ABLATE") != "nosync"
