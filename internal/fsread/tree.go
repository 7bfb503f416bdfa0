package fsread

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// Unix file type bits of an inode mode (shared by ext and XFS).
const (
	sIFMT   = 0xF000
	sIFIFO  = 0x1000
	sIFCHR  = 0x2000
	sIFDIR  = 0x4000
	sIFBLK  = 0x6000
	sIFREG  = 0x8000
	sIFLNK  = 0xA000
	sIFSOCK = 0xC000
	maxLink = 40 // symlinks followed while resolving one path
)

// node is one inode as seen by the generic tree walker.
type node struct {
	ino                        uint64
	mode                       uint32 // unix mode including type bits
	size                       int64
	alloc                      int64 // allocated bytes
	uid, gid, nlink            uint32
	major, minor               uint32
	atime, mtime, ctime, btime time.Time
	impl                       any // backend-specific decoded inode
}

func (n *node) isDir() bool  { return n.mode&sIFMT == sIFDIR }
func (n *node) isReg() bool  { return n.mode&sIFMT == sIFREG }
func (n *node) isLink() bool { return n.mode&sIFMT == sIFLNK }

type dirent struct {
	name string
	ino  uint64
}

// inodeFS is implemented by inode-based filesystems (ext, XFS); treeFS
// turns it into an FS.
type inodeFS interface {
	typ() string
	rootIno() uint64
	getNode(ctx context.Context, ino uint64) (*node, error)
	list(ctx context.Context, dir *node) ([]dirent, error)
	readlink(ctx context.Context, n *node) (string, error)
	// data returns a reader over a regular file and its extents.
	data(ctx context.Context, n *node) (io.ReaderAt, []Extent, error)
	xattrs(ctx context.Context, n *node) ([]Xattr, error)
}

type treeFS struct{ b inodeFS }

func (t *treeFS) Type() string { return t.b.typ() }

func cleanPath(p string) (string, []string) {
	p = path.Clean("/" + p)
	if p == "/" {
		return p, nil
	}
	return p, strings.Split(p[1:], "/")
}

// childPath joins a directory path and a name without cleaning (names
// are the filesystem's bytes).
func childPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// resolve walks p from the root, following intermediate symlinks and the
// final one only when follow is set.
func (t *treeFS) resolve(ctx context.Context, p string, follow bool) (*node, error) {
	links := 0
	return t.walk(ctx, p, follow, &links)
}

func (t *treeFS) walk(ctx context.Context, p string, follow bool, links *int) (*node, error) {
	clean, parts := cleanPath(p)
	cur, err := t.b.getNode(ctx, t.b.rootIno())
	if err != nil {
		return nil, err
	}
	for i, name := range parts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !cur.isDir() {
			return nil, fmt.Errorf("%s: %w", clean, ErrNotDir)
		}
		ents, err := t.b.list(ctx, cur)
		if err != nil {
			return nil, err
		}
		var next *node
		for _, e := range ents {
			if e.name == name {
				if next, err = t.b.getNode(ctx, e.ino); err != nil {
					return nil, err
				}
				break
			}
		}
		if next == nil {
			return nil, fmt.Errorf("%s: %w", clean, ErrNotExist)
		}
		last := i == len(parts)-1
		if next.isLink() && (!last || follow) {
			*links++
			if *links > maxLink {
				return nil, fmt.Errorf("%s: too many levels of symbolic links: %w", clean, ErrNotExist)
			}
			target, err := t.b.readlink(ctx, next)
			if err != nil {
				return nil, err
			}
			if !strings.HasPrefix(target, "/") {
				target = "/" + strings.Join(parts[:i], "/") + "/" + target
			}
			rest := strings.Join(parts[i+1:], "/")
			return t.walk(ctx, target+"/"+rest, follow, links)
		}
		cur = next
	}
	return cur, nil
}

func (t *treeFS) entry(ctx context.Context, p, name string, n *node) (Entry, error) {
	e := Entry{Name: name, Path: p, Size: n.size, Allocated: n.alloc, Mode: unixMode(n.mode),
		ModTime: n.mtime, ATime: n.atime, CTime: n.ctime, BTime: n.btime,
		UID: n.uid, GID: n.gid, Nlink: n.nlink, Ino: n.ino}
	switch n.mode & sIFMT {
	case sIFDIR:
		e.Type = TypeDir
	case sIFREG:
		e.Type = TypeFile
	case sIFLNK:
		e.Type = TypeSymlink
		target, err := t.b.readlink(ctx, n)
		if err != nil {
			return Entry{}, fmt.Errorf("%s: %w", p, err)
		}
		e.Target = target
	case sIFIFO:
		e.Type = TypeFIFO
	case sIFSOCK:
		e.Type = TypeSocket
	case sIFCHR:
		e.Type, e.Major, e.Minor = TypeCharDev, n.major, n.minor
	case sIFBLK:
		e.Type, e.Major, e.Minor = TypeBlockDev, n.major, n.minor
	default:
		e.Type = TypeOther
	}
	return e, nil
}

// unixMode converts a unix mode to an fs.FileMode.
func unixMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	switch m & sIFMT {
	case sIFDIR:
		mode |= fs.ModeDir
	case sIFLNK:
		mode |= fs.ModeSymlink
	case sIFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case sIFBLK:
		mode |= fs.ModeDevice
	case sIFIFO:
		mode |= fs.ModeNamedPipe
	case sIFSOCK:
		mode |= fs.ModeSocket
	}
	return mode
}

func (t *treeFS) Stat(ctx context.Context, p string) (e Entry, err error) {
	defer recoverCorrupt(&err)
	n, err := t.resolve(ctx, p, false)
	if err != nil {
		return Entry{}, err
	}
	clean, _ := cleanPath(p)
	return t.entry(ctx, clean, path.Base(clean), n)
}

func (t *treeFS) ReadDir(ctx context.Context, p string) (out []Entry, err error) {
	defer recoverCorrupt(&err)
	dir, err := t.resolve(ctx, p, true)
	if err != nil {
		return nil, err
	}
	clean, _ := cleanPath(p)
	return t.children(ctx, clean, dir)
}

func (t *treeFS) List(ctx context.Context, dir Entry) (out []Entry, err error) {
	defer recoverCorrupt(&err)
	n, err := t.b.getNode(ctx, dir.Ino)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir.Path, err)
	}
	return t.children(ctx, dir.Path, n)
}

func (t *treeFS) children(ctx context.Context, p string, dir *node) ([]Entry, error) {
	if !dir.isDir() {
		return nil, fmt.Errorf("%s: %w", p, ErrNotDir)
	}
	ents, err := t.b.list(ctx, dir)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(ents))
	for _, d := range ents {
		if d.name == "." || d.name == ".." {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cp := childPath(p, d.name)
		n, err := t.b.getNode(ctx, d.ino)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cp, err)
		}
		e, err := t.entry(ctx, cp, d.name, n)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (t *treeFS) Open(ctx context.Context, p string) (f File, err error) {
	defer recoverCorrupt(&err)
	n, err := t.resolve(ctx, p, true)
	if err != nil {
		return nil, err
	}
	clean, _ := cleanPath(p)
	return t.open(ctx, clean, n)
}

func (t *treeFS) OpenEntry(ctx context.Context, e Entry) (f File, err error) {
	defer recoverCorrupt(&err)
	n, err := t.b.getNode(ctx, e.Ino)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Path, err)
	}
	return t.open(ctx, e.Path, n)
}

func (t *treeFS) open(ctx context.Context, p string, n *node) (File, error) {
	if n.isDir() {
		return nil, fmt.Errorf("open %s: %w", p, ErrIsDir)
	}
	if !n.isReg() {
		return nil, fmt.Errorf("open %s: %w", p, ErrNotRegular)
	}
	ra, ext, err := t.b.data(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	return newFile(safeReaderAt{ra}, n.size, ext), nil
}

func (t *treeFS) Xattrs(ctx context.Context, e Entry) (x []Xattr, err error) {
	defer recoverCorrupt(&err)
	n, err := t.b.getNode(ctx, e.Ino)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Path, err)
	}
	if x, err = t.b.xattrs(ctx, n); err != nil {
		return nil, fmt.Errorf("%s: xattrs: %w", e.Path, err)
	}
	sort.Slice(x, func(i, j int) bool { return x[i].Name < x[j].Name })
	return x, nil
}

// file adapts a ReaderAt of known size to File.
type file struct {
	*io.SectionReader
	ext []Extent
}

func newFile(ra io.ReaderAt, size int64, ext []Extent) *file {
	return &file{SectionReader: io.NewSectionReader(ra, 0, size), ext: ext}
}

func (f *file) Extents() []Extent { return f.ext }
func (f *file) Close() error      { return nil }

// safeReaderAt turns panics in decoding code into ErrCorrupt.
type safeReaderAt struct{ r io.ReaderAt }

func (s safeReaderAt) ReadAt(p []byte, off int64) (n int, err error) {
	defer recoverCorrupt(&err)
	return s.r.ReadAt(p, off)
}

func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%v: %w", r, ErrCorrupt)
	}
}

// unixTime converts seconds and nanoseconds to a UTC time.
func unixTime(sec, nsec int64) time.Time {
	if nsec < 0 || nsec >= 1e9 {
		nsec = 0
	}
	return time.Unix(sec, nsec).UTC()
}
