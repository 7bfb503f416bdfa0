package diskwrite

import (
	"os"
	"syscall"
)

// statBlocks returns the 512-byte blocks a file has allocated.
func statBlocks(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks
	}
	return fi.Size() / 512
}
