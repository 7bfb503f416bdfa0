// Package fidelity proves kura's filesystem readers and extraction
// against the kernel: it builds ext2/3/4, XFS and NTFS images from real
// trees of the host (plus the awkward cases: sparse and fragmented files,
// hard links, special files, non-UTF-8 names, xattrs and ACLs, NTFS
// streams and compression), places them on MBR, GPT, whole and LVM disks,
// and compares every entry kura shows or extracts with what a loop mount
// of the same image shows. Building and mounting need root; kura itself
// never does.
package fidelity

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kurabackup/kura/internal/fsread"
)

// Node is one entry as the kernel (a mounted or an extracted tree) or
// kura shows it.
type Node struct {
	Path                       string
	Type                       string // fsread entry types
	Size, Allocated            int64
	Perm                       uint32 // 07777 bits
	UID, GID, Nlink            uint32
	MTime, ATime, CTime, BTime time.Time
	Ino                        uint64
	Major, Minor               uint32
	Target                     string
	SHA256                     string
	Xattrs                     map[string]string
}

// Snapshot maps paths ("/", "/a/b") to nodes.
type Snapshot map[string]*Node

// Files counts the regular files of a snapshot.
func (s Snapshot) Files() int {
	n := 0
	for _, v := range s {
		if v.Type == fsread.TypeFile {
			n++
		}
	}
	return n
}

// SnapshotDir records the tree at root as the kernel shows it. Every
// entry is stat'ed before its directory is read and files are read with
// O_NOATIME, so taking the snapshot changes no time it records.
func SnapshotDir(ctx context.Context, root string) (Snapshot, error) {
	s := Snapshot{}
	var files []*Node
	var walk func(rel string) error
	walk = func(rel string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(root, rel)
		n, err := statNode(p, rel)
		if err != nil {
			return err
		}
		s[rel] = n
		switch n.Type {
		case fsread.TypeFile:
			files = append(files, n)
		case fsread.TypeDir:
			ents, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			for _, e := range ents {
				if err := walk(join(rel, e.Name())); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk("/"); err != nil {
		return nil, err
	}
	err := parallel(ctx, files, func(n *Node) error {
		sum, err := hashPath(filepath.Join(root, n.Path))
		n.SHA256 = sum
		return err
	})
	return s, err
}

func join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

func statNode(p, rel string) (*Node, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, fmt.Errorf("lstat %s: %w", p, err)
	}
	n := &Node{Path: rel, Size: st.Size, Allocated: st.Blocks * 512, Perm: st.Mode & 0o7777,
		UID: st.Uid, GID: st.Gid, Nlink: uint32(st.Nlink), Ino: st.Ino,
		MTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC(), ATime: time.Unix(st.Atim.Sec, st.Atim.Nsec).UTC(),
		CTime: time.Unix(st.Ctim.Sec, st.Ctim.Nsec).UTC()}
	var sx unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &sx) == nil && sx.Mask&unix.STATX_BTIME != 0 {
		n.BTime = time.Unix(sx.Btime.Sec, int64(sx.Btime.Nsec)).UTC()
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		n.Type = fsread.TypeFile
	case unix.S_IFDIR:
		n.Type = fsread.TypeDir
	case unix.S_IFLNK:
		n.Type = fsread.TypeSymlink
		t, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		n.Target = t
	case unix.S_IFIFO:
		n.Type = fsread.TypeFIFO
	case unix.S_IFSOCK:
		n.Type = fsread.TypeSocket
	case unix.S_IFCHR, unix.S_IFBLK:
		n.Type = fsread.TypeCharDev
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			n.Type = fsread.TypeBlockDev
		}
		n.Major, n.Minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	default:
		n.Type = fsread.TypeOther
	}
	x, err := listXattrs(p)
	if err != nil {
		return nil, err
	}
	n.Xattrs = x
	return n, nil
}

func listXattrs(p string) (map[string]string, error) {
	k, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || (err == nil && k == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	buf := make([]byte, k+1024)
	if k, err = unix.Llistxattr(p, buf); err != nil {
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	var out map[string]string
	val := make([]byte, 64<<10)
	for _, name := range splitNul(buf[:k]) {
		v, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(val[:v])
	}
	return out, nil
}

func splitNul(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, string(b[:i]))
		}
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return out
}

func hashPath(p string) (string, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOATIME|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	// Data regions as the kernel reports them (SEEK_DATA/SEEK_HOLE).
	var data [][2]int64
	for off := int64(0); off < st.Size(); {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			break // ENXIO: no data after off
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return "", err
		}
		data = append(data, [2]int64{start, end})
		off = end
	}
	return hashRanges(f, st.Size(), data)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// hashBlock is the granularity of the content digest.
const hashBlock = 64 << 10

// hashRanges digests content: sha256 over each non-zero 64 KiB block and
// its offset, then the size. Any differing byte changes the digest;
// blocks outside data (the holes of a sparse file, as the reader reports
// them) are zeros and need no reading.
func hashRanges(r io.ReaderAt, size int64, data [][2]int64) (string, error) {
	h := sha256.New()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var word [8]byte
	next := int64(0) // first block not yet hashed
	for _, d := range data {
		from := max(d[0]/hashBlock*hashBlock, next)
		to := min((d[1]+hashBlock-1)/hashBlock*hashBlock, size)
		for off := from; off < to; {
			n := int(min(int64(len(buf)), to-off))
			k, err := r.ReadAt(buf[:n], off)
			if k < n && err != nil {
				return "", err
			}
			for p := 0; p < n; p += hashBlock {
				b := buf[p:min(p+hashBlock, n)]
				if !isZero(b) {
					binary.LittleEndian.PutUint64(word[:], uint64(off+int64(p)))
					h.Write(word[:])
					h.Write(b)
				}
			}
			off += int64(n)
		}
		next = max(next, to)
	}
	binary.LittleEndian.PutUint64(word[:], uint64(size))
	h.Write(word[:])
	return hex.EncodeToString(h.Sum(nil)), nil
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// parallel runs fn over items on a few goroutines.
func parallel[T any](ctx context.Context, items []T, fn func(T) error) error {
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if first != nil || next >= len(items) || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				it := items[next]
				next++
				mu.Unlock()
				if err := fn(it); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// SnapshotFS records what kura's reader shows of fsys. NTFS streams are
// left out (the kernel shows them as user.* xattrs, which Xattrs
// returns).
func SnapshotFS(ctx context.Context, fsys fsread.FS) (Snapshot, error) {
	s := Snapshot{}
	type file struct {
		e fsread.Entry
		n *Node
	}
	var files []file
	root, err := fsys.Stat(ctx, "/")
	if err != nil {
		return nil, err
	}
	var walk func(e fsread.Entry, rel string) error
	walk = func(e fsread.Entry, rel string) error {
		n := entryNode(e, rel)
		x, err := fsys.Xattrs(ctx, e)
		if err != nil {
			return err
		}
		for _, a := range x {
			if n.Xattrs == nil {
				n.Xattrs = map[string]string{}
			}
			n.Xattrs[a.Name] = string(a.Value)
		}
		s[rel] = n
		switch e.Type {
		case fsread.TypeFile:
			files = append(files, file{e, n})
		case fsread.TypeDir:
			kids, err := fsys.List(ctx, e)
			if err != nil {
				return err
			}
			for _, k := range kids {
				if k.Type == fsread.TypeStream {
					continue
				}
				if err := walk(k, join(rel, k.Name)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, "/"); err != nil {
		return nil, err
	}
	// Inode order roughly follows disk order.
	sort.Slice(files, func(i, j int) bool { return files[i].e.Ino < files[j].e.Ino })
	err = parallel(ctx, files, func(f file) error {
		r, err := fsys.OpenEntry(ctx, f.e)
		if err != nil {
			return err
		}
		defer r.Close()
		var data [][2]int64
		for _, e := range r.Extents() {
			data = append(data, [2]int64{e.Off, e.Off + e.Len})
		}
		sum, err := hashRanges(r, r.Size(), data)
		if err != nil {
			return fmt.Errorf("%s: %w", f.e.Path, err)
		}
		f.n.SHA256 = sum
		return nil
	})
	return s, err
}

func entryNode(e fsread.Entry, rel string) *Node {
	perm := uint32(e.Mode.Perm())
	if e.Mode&os.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if e.Mode&os.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if e.Mode&os.ModeSticky != 0 {
		perm |= 0o1000
	}
	return &Node{Path: rel, Type: e.Type, Size: e.Size, Allocated: e.Allocated, Perm: perm,
		UID: e.UID, GID: e.GID, Nlink: e.Nlink, MTime: e.ModTime, ATime: e.ATime, CTime: e.CTime,
		BTime: e.BTime, Ino: e.Ino, Major: e.Major, Minor: e.Minor, Target: e.Target}
}

// Digest is the content digest snapshots record for a file of size
// bytes read from r.
func Digest(r io.ReaderAt, size int64) (string, error) {
	return hashRanges(r, size, [][2]int64{{0, size}})
}
