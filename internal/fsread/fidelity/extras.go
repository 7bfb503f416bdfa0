package fidelity

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ExtrasDir holds the awkward cases the kit adds to every tree.
const ExtrasDir = "/kura-extras"

// Well-known paths of the extras (relative to the filesystem root).
const (
	SparsePath     = ExtrasDir + "/sparse.bin"
	FragmentedPath = ExtrasDir + "/fragmented.bin"
	BigDirPath     = ExtrasDir + "/bigdir"
	StreamFilePath = ExtrasDir + "/with-streams.txt"
	NonUTF8Path    = ExtrasDir + "/\xff\xfe-latin1-\xe9.txt"
	// LargeStream is an NTFS stream too large for an ext4 or XFS xattr.
	LargeStream    = "user.large"
	SparseSize     = 1 << 30
	FragmentBlocks = 2048
	BigDirEntries  = 3000
)

// features says which cases a filesystem can hold.
type features struct {
	unix bool // owners, modes, ACLs, trusted/security xattrs, non-UTF-8 and control-character names
	ntfs bool // named streams, compression
}

// addExtras creates the awkward cases below root (a staging directory or
// a mounted filesystem).
func addExtras(root string, f features) error {
	x := filepath.Join(root, ExtrasDir)
	rng := rand.New(rand.NewPCG(13, 14))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var errs []error
	try := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	mkdir := func(p string) { try(os.MkdirAll(filepath.Join(x, p), 0o755)) }
	write := func(p string, data []byte) { try(os.WriteFile(filepath.Join(x, p), data, 0o644)) }
	mkdir("")
	if f.ntfs {
		// Files created in a compressed directory are compressed.
		mkdir("compressed")
		attr := make([]byte, 4)
		binary.BigEndian.PutUint32(attr, 0x10|0x800)
		try(unix.Setxattr(filepath.Join(x, "compressed"), "system.ntfs_attrib_be", attr, 0))
		text := bytes.Repeat([]byte("compressible text for an NTFS compression unit\n"), 5000)
		write("compressed/text.txt", text)
		write("compressed/small.txt", []byte("small\n"))
		write("compressed/random.bin", randBytes(300<<10))
	}
	try(sparseFile(filepath.Join(root, SparsePath), SparseSize, randBytes(100<<10), randBytes(100<<10)))
	try(fragmentedFile(filepath.Join(root, FragmentedPath), randBytes(4096*FragmentBlocks)))
	write("empty", nil)
	mkdir("empty-dir")
	// Hard links across directories.
	mkdir("links/a")
	mkdir("links/b")
	write("links/a/one.txt", []byte("one inode, three names\n"))
	try(os.Link(filepath.Join(x, "links/a/one.txt"), filepath.Join(x, "links/a/two.txt")))
	try(os.Link(filepath.Join(x, "links/a/one.txt"), filepath.Join(x, "links/b/three.txt")))
	// Symlinks.
	try(os.Symlink("links/a/one.txt", filepath.Join(x, "rel-link")))
	try(os.Symlink("/"+strings.Repeat("long-target/", 30)+"end", filepath.Join(x, "abs-link")))
	try(os.Symlink("does-not-exist", filepath.Join(x, "dangling-link")))
	try(os.Symlink("links", filepath.Join(x, "dir-link")))
	// Special files.
	try(unix.Mkfifo(filepath.Join(x, "fifo"), 0o640))
	try(unix.Mknod(filepath.Join(x, "socket"), unix.S_IFSOCK|0o660, 0))
	try(unix.Mknod(filepath.Join(x, "null-dev"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	try(unix.Mknod(filepath.Join(x, "loop-dev"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
	// Names.
	mkdir("日本語 ディレクトリ")
	write("日本語 ディレクトリ/ファイル-ü-é.txt", []byte("non-ascii\n"))
	write(strings.Repeat("L", 251)+".txt", []byte("255-byte name\n"))
	deep := ""
	for i := 0; i < 40; i++ {
		deep = filepath.Join(deep, fmt.Sprintf("level-%02d", i))
	}
	mkdir(deep)
	write(filepath.Join(deep, "bottom.txt"), []byte("deep\n"))
	if f.unix {
		write(filepath.Base(NonUTF8Path), []byte("not utf-8\n"))
		write("tab\there", []byte("tab\n"))
		write("new\nline", []byte("newline\n"))
		write(`back\slash`, []byte("backslash\n"))
	}
	mkdir("bigdir")
	for i := 0; i < BigDirEntries; i++ {
		write(fmt.Sprintf("bigdir/entry-with-a-longish-name-%05d", i), []byte{byte(i)})
	}
	// Extended attributes.
	write("with-xattrs.txt", []byte("xattrs\n"))
	try(unix.Setxattr(filepath.Join(x, "with-xattrs.txt"), "user.kura.comment", []byte("hello"), 0))
	try(unix.Setxattr(filepath.Join(x, "links/a"), "user.kura.dir", randBytes(200), 0))
	if f.unix {
		try(unix.Setxattr(filepath.Join(x, "with-xattrs.txt"), "user.kura.big", randBytes(3000), 0))
		try(unix.Setxattr(filepath.Join(x, "with-xattrs.txt"), "trusted.kura", []byte("trusted"), 0))
		try(unix.Setxattr(filepath.Join(x, "with-xattrs.txt"), "security.kura", []byte("security"), 0))
		write("with-acl.txt", []byte("acl\n"))
		try(unix.Setxattr(filepath.Join(x, "with-acl.txt"), "system.posix_acl_access",
			aclValue([][3]uint32{{0x01, 6, 0}, {0x02, 4, 1234}, {0x04, 4, 0}, {0x08, 6, 4321}, {0x10, 6, 0}, {0x20, 0, 0}}), 0))
		mkdir("acl-default")
		try(unix.Setxattr(filepath.Join(x, "acl-default"), "system.posix_acl_default",
			aclValue([][3]uint32{{0x01, 7, 0}, {0x02, 5, 1234}, {0x04, 5, 0}, {0x10, 5, 0}, {0x20, 5, 0}}), 0))
		// Owners and special mode bits.
		write("owned.txt", []byte("owned\n"))
		try(os.Lchown(filepath.Join(x, "owned.txt"), 1234, 5678))
		try(os.Lchown(filepath.Join(x, "rel-link"), 100000, 200000))
		write("setuid", []byte("#!/bin/sh\n"))
		try(unix.Chmod(filepath.Join(x, "setuid"), 0o4755))
		mkdir("setgid-dir")
		try(unix.Chmod(filepath.Join(x, "setgid-dir"), 0o2775))
		mkdir("sticky-dir")
		try(unix.Chmod(filepath.Join(x, "sticky-dir"), 0o1777))
	}
	if f.ntfs {
		p := filepath.Join(root, StreamFilePath)
		try(os.WriteFile(p, []byte("main data\n"), 0o644))
		try(unix.Setxattr(p, "user.small", []byte("a small stream"), 0))
		try(unix.Setxattr(p, "user.binary", randBytes(3000), 0))
		// Larger than ext4 or XFS targets take as an xattr: extracted
		// trees report it as not kept; "file:user.large" reads it.
		try(unix.Setxattr(p, "user.large", randBytes(40<<10), 0))
		try(unix.Setxattr(filepath.Join(x, "links"), "user.dirstream", []byte("stream on a directory"), 0))
	}
	if len(errs) > 0 {
		return fmt.Errorf("extras: %v", errs)
	}
	return setTimes(x)
}

// aclValue encodes a POSIX ACL in the kernel's xattr format.
func aclValue(ents [][3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range ents {
		id := e[2]
		if e[0] != 0x02 && e[0] != 0x08 {
			id = 0xFFFFFFFF
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	return b
}

func sparseFile(p string, size int64, head, mid []byte) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(head, 0); err != nil {
		return err
	}
	if _, err := f.WriteAt(mid, size/2); err != nil {
		return err
	}
	return f.Truncate(size)
}

// fragmentedFile writes data 4 KiB at a time into every other block, so
// the file has one extent per block.
func fragmentedFile(p string, data []byte) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	for i := 0; i*4096 < len(data); i++ {
		if _, err := f.WriteAt(data[i*4096:(i+1)*4096], int64(2*i)*4096); err != nil {
			return err
		}
	}
	return nil
}

// setTimes gives every entry below x distinct times with nanoseconds,
// some before 1970 and some after 2038, directories last and deepest
// first.
func setTimes(x string) error {
	var paths []string
	if err := filepath.WalkDir(x, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	}); err != nil {
		return err
	}
	sort.SliceStable(paths, func(i, j int) bool { return strings.Count(paths[i], "/") > strings.Count(paths[j], "/") })
	base := time.Date(2019, 4, 5, 6, 7, 8, 123456789, time.UTC)
	for i, p := range paths {
		m := base.Add(time.Duration(i)*time.Hour + time.Duration(i*7919))
		a := m.Add(36*time.Hour + 1234567)
		switch {
		case strings.HasSuffix(p, "with-xattrs.txt"):
			m = time.Date(1969, 7, 20, 20, 17, 40, 123456789, time.UTC)
		case strings.HasSuffix(p, "owned.txt"):
			m = time.Date(2040, 1, 2, 3, 4, 5, 987654321, time.UTC)
		}
		ts := []unix.Timespec{unix.NsecToTimespec(a.UnixNano()), unix.NsecToTimespec(m.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("times of %s: %w", p, err)
		}
	}
	return nil
}
