package extract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kurabackup/kura/internal/fsread"
)

// DirSink writes into a directory. Every entry is created relative to a
// descriptor of its parent directory, opened component by component with
// O_NOFOLLOW, so nothing is ever written outside the directory, whatever
// symlinks the extracted tree or the directory already holds. Nothing is
// overwritten: an existing file is an error (existing directories are
// reused).
//
// Creating entries is what costs most when files are small, and the
// kernel creates entries of different directories in parallel: a few
// workers create directories (level by level), empty files (a directory
// at a time), symlinks, and finish written files (owner, xattrs, mode,
// times); file data is written in the order it comes.
type DirSink struct {
	root    int
	owners  bool // set owners (root, not NoOwner)
	main    *dirCache
	pool    *dirPool
	dirs    []*Item
	mu      sync.Mutex // guards notes and created
	notes   []Note
	created map[string]bool // files CreateAll made, empty
}

// NewDirSink creates dir when missing and writes into it. Owners are set
// when running as root, unless opt.NoOwner.
func NewDirSink(dir string, opt Options) (*DirSink, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	s := &DirSink{root: fd, owners: os.Geteuid() == 0 && !opt.NoOwner, main: newDirCache(fd),
		pool: newDirPool(fd), created: map[string]bool{}}
	if os.Geteuid() != 0 && !opt.NoOwner {
		s.notes = append(s.notes, Note{"/", "owners and groups not kept: not running as root"})
	}
	return s, nil
}

func exists(name string, err error) error {
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s: %w (extract into an empty directory)", fsread.Escape(name), ErrExists)
	}
	return err
}

func (s *DirSink) note(it *Item, why string) {
	s.mu.Lock()
	s.notes = append(s.notes, Note{fsread.Escape(it.Path), why})
	s.mu.Unlock()
}

// Dir makes one directory (DirAll makes them all in parallel).
func (s *DirSink) Dir(_ context.Context, it *Item) error {
	s.dirs = append(s.dirs, it)
	return s.mkdir(s.main, it)
}

func (s *DirSink) mkdir(c *dirCache, it *Item) error {
	if it.Name == "" {
		return nil
	}
	fd, base, err := c.parent(it.Name)
	if err != nil {
		return err
	}
	err = unix.Mkdirat(fd, base, 0o700)
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return nil // reuse an existing directory
		}
	}
	return wrap(it, exists(it.Name, err))
}

// DirAll makes the directories (parents before children), a level at a
// time in parallel.
func (s *DirSink) DirAll(ctx context.Context, dirs []*Item) error {
	s.dirs = append(s.dirs, dirs...)
	for _, level := range byDepth(dirs, false) {
		for _, it := range level {
			s.pool.submit(func(c *dirCache) error { return s.mkdir(c, it) })
		}
		if err := s.pool.wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// byDepth groups items by depth, shallowest (or deepest) first.
func byDepth(items []*Item, deepest bool) [][]*Item {
	levels := map[int][]*Item{}
	var depths []int
	for _, it := range items {
		d := 0
		if it.Name != "" {
			d = strings.Count(it.Name, "/") + 1
		}
		if _, ok := levels[d]; !ok {
			depths = append(depths, d)
		}
		levels[d] = append(levels[d], it)
	}
	sort.Ints(depths)
	if deepest {
		sort.Sort(sort.Reverse(sort.IntSlice(depths)))
	}
	out := make([][]*Item, len(depths))
	for i, d := range depths {
		out[i] = levels[d]
	}
	return out
}

// CreateAll makes the files empty, a directory's files per task; File
// then writes them.
func (s *DirSink) CreateAll(ctx context.Context, items []*Item) error {
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && path.Dir(items[j].Name) == path.Dir(items[i].Name) {
			j++
		}
		group := items[i:j]
		s.pool.submit(func(c *dirCache) error {
			pfd, err := c.fd(path.Dir(group[0].Name))
			if err != nil {
				return err
			}
			for _, it := range group {
				fd, err := unix.Openat(pfd, path.Base(it.Name), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
				if err == nil {
					err = unix.Close(fd)
				}
				if err != nil {
					return wrap(it, exists(it.Name, err))
				}
			}
			s.mu.Lock()
			for _, it := range group {
				s.created[it.Name] = true
			}
			s.mu.Unlock()
			return nil
		})
		i = j
	}
	return s.pool.wait(ctx)
}

func (s *DirSink) File(_ context.Context, it *Item, data *Data) error {
	pfd, base, err := s.main.parent(it.Name)
	if err != nil {
		return err
	}
	flags := unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	s.mu.Lock()
	if !s.created[it.Name] {
		flags |= unix.O_CREAT | unix.O_EXCL
	}
	delete(s.created, it.Name)
	s.mu.Unlock()
	fd, err := unix.Openat(pfd, base, flags, 0o600)
	if err != nil {
		return exists(it.Name, err)
	}
	if err := writeData(fd, data); err != nil {
		unix.Close(fd)
		return err
	}
	// Owner, xattrs, mode (after chown, which clears setuid), times and
	// closing go to a worker.
	s.pool.submit(func(*dirCache) error {
		err := s.owner(it, func(uid, gid int) error { return unix.Fchown(fd, uid, gid) })
		if err == nil {
			s.xattrs(it, func(n string, v []byte) error { return unix.Fsetxattr(fd, n, v, 0) })
			err = unix.Fchmod(fd, perm(it.Mode))
		}
		if err == nil {
			err = unix.UtimesNanoAt(unix.AT_FDCWD, procFD(fd), times(it), 0)
		}
		if cerr := unix.Close(fd); err == nil {
			err = cerr
		}
		return wrap(it, err)
	})
	return nil
}

func procFD(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// writeData writes the data runs at their offsets; holes stay holes.
func writeData(fd int, data *Data) error {
	for {
		off, b, err := data.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		for len(b) > 0 {
			n, err := unix.Pwrite(fd, b, off)
			if err != nil {
				return fmt.Errorf("write: %w", err)
			}
			b, off = b[n:], off+int64(n)
		}
	}
	// A file ending in a hole (or all hole) gets its size here.
	if n := len(data.Extents); n == 0 || data.Extents[n-1].Off+data.Extents[n-1].Len < data.Size {
		return unix.Ftruncate(fd, data.Size)
	}
	return nil
}

func (s *DirSink) Symlink(_ context.Context, it *Item) error {
	s.pool.submit(func(c *dirCache) error {
		pfd, base, err := c.parent(it.Name)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(it.Target, pfd, base); err != nil {
			return wrap(it, exists(it.Name, err))
		}
		return wrap(it, s.meta(pfd, base, it, false))
	})
	return nil
}

func (s *DirSink) Special(_ context.Context, it *Item) (string, error) {
	pfd, base, err := s.main.parent(it.Name)
	if err != nil {
		return "", err
	}
	var mode uint32
	dev := 0
	switch it.Type {
	case fsread.TypeFIFO:
		mode = unix.S_IFIFO
	case fsread.TypeSocket:
		mode = unix.S_IFSOCK
	case fsread.TypeCharDev:
		mode, dev = unix.S_IFCHR, int(unix.Mkdev(it.Major, it.Minor))
	case fsread.TypeBlockDev:
		mode, dev = unix.S_IFBLK, int(unix.Mkdev(it.Major, it.Minor))
	}
	if err := unix.Mknodat(pfd, base, mode|0o600, dev); err != nil {
		if errors.Is(err, unix.EPERM) {
			return "device node not created: needs root", nil
		}
		return "", exists(it.Name, err)
	}
	return "", s.meta(pfd, base, it, true)
}

func (s *DirSink) Link(ctx context.Context, it *Item) (string, error) {
	// The link's target (a symlink perhaps) may still be with a worker.
	if err := s.pool.wait(ctx); err != nil {
		return "", err
	}
	tfd, tbase, err := s.main.parent(it.LinkTo)
	if err != nil {
		return "", err
	}
	var tst unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &tst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "hard link to an entry not extracted", nil
		}
		return "", err
	}
	pfd, base, err := s.main.parent(it.Name)
	if err != nil {
		return "", err
	}
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return "", exists(it.Name, err)
	}
	return "", nil
}

// meta sets owner, xattrs, mode (unless a symlink) and times of a
// non-regular entry by name.
func (s *DirSink) meta(pfd int, base string, it *Item, chmod bool) error {
	if err := s.owner(it, func(uid, gid int) error {
		return unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	}); err != nil {
		return err
	}
	proc := procFD(pfd) + "/" + base
	s.xattrs(it, func(n string, v []byte) error { return unix.Lsetxattr(proc, n, v, 0) })
	if chmod {
		if err := unix.Fchmodat(pfd, base, perm(it.Mode), 0); err != nil {
			return err
		}
	}
	return unix.UtimesNanoAt(pfd, base, times(it), unix.AT_SYMLINK_NOFOLLOW)
}

func (s *DirSink) owner(it *Item, chown func(uid, gid int) error) error {
	if !s.owners || it.NoOwner {
		return nil
	}
	return chown(int(it.UID), int(it.GID))
}

// xattrs sets an item's xattrs; those the destination refuses are noted.
func (s *DirSink) xattrs(it *Item, set func(string, []byte) error) {
	for _, x := range it.Xattrs {
		if err := set(x.Name, x.Value); err != nil {
			s.note(it, fmt.Sprintf("xattr %s not kept: %v", x.Name, err))
		}
	}
}

func times(it *Item) []unix.Timespec {
	return []unix.Timespec{timespec(it.ATime), timespec(it.ModTime)}
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// Close waits for the workers, then sets directories' owners, xattrs,
// modes and times, deepest first, and releases the descriptors.
func (s *DirSink) Close(ctx context.Context, rep *Report) error {
	defer s.release()
	if err := s.pool.wait(ctx); err != nil {
		return err
	}
	for _, level := range byDepth(s.dirs, true) {
		for _, it := range level {
			s.pool.submit(func(c *dirCache) error {
				fd, err := c.fd(it.Name)
				if err != nil {
					return err
				}
				if err := s.owner(it, func(uid, gid int) error { return unix.Fchown(fd, uid, gid) }); err != nil {
					return wrap(it, err)
				}
				s.xattrs(it, func(n string, v []byte) error { return unix.Fsetxattr(fd, n, v, 0) })
				if err := unix.Fchmod(fd, perm(it.Mode)); err != nil {
					return wrap(it, err)
				}
				return wrap(it, unix.UtimesNanoAt(unix.AT_FDCWD, procFD(fd), times(it), 0))
			})
		}
		if err := s.pool.wait(ctx); err != nil {
			return err
		}
	}
	rep.NotKept = append(rep.NotKept, s.notes...)
	return nil
}

// Abort releases the descriptors of a failed extraction.
func (s *DirSink) Abort() {
	_ = s.pool.wait(context.Background())
	s.release()
}

func (s *DirSink) release() {
	s.pool.close()
	s.main.close()
	if s.root >= 0 {
		unix.Close(s.root)
		s.root = -1
	}
}
