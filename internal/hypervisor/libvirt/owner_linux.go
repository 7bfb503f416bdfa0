package libvirt

import (
	"fmt"
	"os"
	"syscall"
)

func statOwner(fi os.FileInfo) (uid, gid int, err error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, fmt.Errorf("no owner information for %s", fi.Name())
	}
	return int(st.Uid), int(st.Gid), nil
}
