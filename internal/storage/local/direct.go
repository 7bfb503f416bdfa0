package local

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Direct I/O: large objects (chunks) are written past the page cache. A
// backup's chunks are not read again soon, so caching them only costs: the
// copy into the cache, the allocation of its pages and their writeback are
// the largest kernel cost of a backup (on a VM whose freed memory goes back
// to the host, about 3 ns per byte written, against 0.3 with O_DIRECT).
const (
	// directAlign is the alignment O_DIRECT needs of the buffer, the file
	// offset and the length on every Linux filesystem that supports it
	// (at most the logical block size of the device: 512 or 4096).
	directAlign = 4096
	// directMin is the smallest object written with O_DIRECT.
	directMin = 1 << 20
)

// Filesystems on local block devices, where an O_DIRECT write is a
// device write. Others keep buffered writes: tmpfs gains nothing, and on
// NFS or SMB every O_DIRECT write is a synchronous round trip to the
// server, where writeback batches them.
var directFilesystems = map[int64]string{
	0xEF53:     "ext2/3/4",
	0x58465342: "xfs",
	0x9123683E: "btrfs",
	0xF2F52010: "f2fs",
}

// directCapable reports whether dir lies on a filesystem of
// directFilesystems.
func directCapable(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	_, ok := directFilesystems[int64(st.Type)]
	return ok
}

// writeData writes data at the start of the new file f. From directMin
// bytes, a buffer aligned in memory has its aligned bulk written with
// O_DIRECT and only the tail through the page cache.
func (b *Backend) writeData(f *os.File, data []byte) error {
	bulk := len(data) &^ (directAlign - 1)
	if !b.direct || b.directOff.Load() || len(data) < directMin ||
		uintptr(unsafe.Pointer(unsafe.SliceData(data)))%directAlign != 0 {
		_, err := f.Write(data)
		return err
	}
	fd := int(f.Fd())
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		_, err = f.Write(data)
		return err
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags|unix.O_DIRECT); err != nil {
		b.directOff.Store(true)
		_, err = f.Write(data)
		return err
	}
	n, err := writeFull(fd, data[:bulk])
	if errors.Is(err, unix.EINVAL) && n == 0 {
		// Opened with O_DIRECT but refused at the first write (the
		// filesystem or device wants another alignment).
		b.directOff.Store(true)
		err = nil
	}
	if _, ferr := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags); ferr != nil && err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	_, err = f.Write(data[n:]) // the tail, and what a short write left
	return err
}

// writeFull writes p at the file's offset with write(2) until it is all
// written, a write is short (the caller writes the rest through the page
// cache, which takes any offset) or one fails.
func writeFull(fd int, p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(fd, p[done:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if n > 0 {
			done += n
		}
		if err != nil || n <= 0 || done%directAlign != 0 {
			return done, err
		}
	}
	return done, nil
}
