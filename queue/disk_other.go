//go:build !unix

package queue

import "os"

// diskSize is the file's length where allocated blocks are not reported.
func diskSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
