//go:build unix

package queue

import (
	"os"
	"syscall"
)

// diskSize is the space a file takes on disk: nutsdb segments are sparse
// files created at full size, so their length says little.
func diskSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
