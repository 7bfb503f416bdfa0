package server

import (
	"strings"

	"golang.org/x/sys/unix"
)

// fsUsage returns the bytes used and the size of the filesystem holding a
// local repository location (ok false for other locations).
func fsUsage(location string) (used, total uint64, ok bool) {
	dir, isLocal := strings.CutPrefix(location, "local:")
	if !isLocal && (strings.Contains(location, "://") || !strings.HasPrefix(location, "/")) {
		return 0, 0, false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	total = st.Blocks * uint64(st.Bsize)
	free := st.Bavail * uint64(st.Bsize)
	return total - free, total, true
}
