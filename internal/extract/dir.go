package extract

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
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
type DirSink struct {
	root   int
	dir    string
	owners bool // set owners (root, not NoOwner)
	lru    *list.List
	fds    map[string]*list.Element
	dirs   []*Item
	notes  []Note
}

type fdEntry struct {
	name string
	fd   int
}

// maxDirFDs bounds the directory descriptors kept open.
const maxDirFDs = 256

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
	s := &DirSink{root: fd, dir: dir, owners: os.Geteuid() == 0 && !opt.NoOwner, lru: list.New(), fds: map[string]*list.Element{}}
	if os.Geteuid() != 0 && !opt.NoOwner {
		s.notes = append(s.notes, Note{"/", "owners and groups not kept: not running as root"})
	}
	return s, nil
}

// dirFD returns a descriptor of the destination directory rel ("" is the
// root).
func (s *DirSink) dirFD(rel string) (int, error) {
	if rel == "" || rel == "." {
		return s.root, nil
	}
	if el, ok := s.fds[rel]; ok {
		s.lru.MoveToFront(el)
		return el.Value.(*fdEntry).fd, nil
	}
	parent, err := s.dirFD(path.Dir(rel))
	if err != nil {
		return -1, err
	}
	fd, err := unix.Openat(parent, path.Base(rel), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open directory %s: %w", fsread.Escape(rel), err)
	}
	s.fds[rel] = s.lru.PushFront(&fdEntry{rel, fd})
	for s.lru.Len() > maxDirFDs {
		el := s.lru.Back()
		e := el.Value.(*fdEntry)
		s.lru.Remove(el)
		delete(s.fds, e.name)
		unix.Close(e.fd)
	}
	return fd, nil
}

// parent returns the parent descriptor and base name of an item.
func (s *DirSink) parent(name string) (int, string, error) {
	fd, err := s.dirFD(path.Dir(name))
	return fd, path.Base(name), err
}

func exists(name string, err error) error {
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s: %w (extract into an empty directory)", fsread.Escape(name), ErrExists)
	}
	return err
}

func (s *DirSink) Dir(_ context.Context, it *Item) error {
	s.dirs = append(s.dirs, it)
	if it.Name == "" {
		return nil
	}
	fd, base, err := s.parent(it.Name)
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
	return exists(it.Name, err)
}

func (s *DirSink) File(_ context.Context, it *Item, data *Data) error {
	pfd, base, err := s.parent(it.Name)
	if err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return exists(it.Name, err)
	}
	err = writeData(fd, data)
	if err == nil {
		err = s.owner(it, func(uid, gid int) error { return unix.Fchown(fd, uid, gid) })
	}
	if err == nil {
		s.xattrs(it, func(n string, v []byte) error { return unix.Fsetxattr(fd, n, v, 0) })
		err = unix.Fchmod(fd, perm(it.Mode))
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return s.times(pfd, base, it)
}

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
	return unix.Ftruncate(fd, data.Size)
}

func (s *DirSink) Symlink(_ context.Context, it *Item) error {
	pfd, base, err := s.parent(it.Name)
	if err != nil {
		return err
	}
	if err := unix.Symlinkat(it.Target, pfd, base); err != nil {
		return exists(it.Name, err)
	}
	return s.meta(pfd, base, it, false)
}

func (s *DirSink) Special(_ context.Context, it *Item) (string, error) {
	pfd, base, err := s.parent(it.Name)
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

func (s *DirSink) Link(_ context.Context, it *Item) (string, error) {
	tfd, tbase, err := s.parent(it.LinkTo)
	if err != nil {
		return "", err
	}
	pfd, base, err := s.parent(it.Name)
	if err != nil {
		return "", err
	}
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "hard link to an entry not extracted", nil
		}
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
	proc := "/proc/self/fd/" + strconv.Itoa(pfd) + "/" + base
	s.xattrs(it, func(n string, v []byte) error { return unix.Lsetxattr(proc, n, v, 0) })
	if chmod {
		if err := unix.Fchmodat(pfd, base, perm(it.Mode), 0); err != nil {
			return err
		}
	}
	return s.times(pfd, base, it)
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
			s.notes = append(s.notes, Note{fsread.Escape(it.Path), fmt.Sprintf("xattr %s not kept: %v", x.Name, err)})
		}
	}
}

func (s *DirSink) times(pfd int, base string, it *Item) error {
	ts := []unix.Timespec{timespec(it.ATime), timespec(it.ModTime)}
	return unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// Close sets directories' owners, xattrs, modes and times, deepest
// first, and releases the descriptors.
func (s *DirSink) Close(_ context.Context, rep *Report) error {
	defer s.release()
	for i := len(s.dirs) - 1; i >= 0; i-- {
		it := s.dirs[i]
		fd, err := s.dirFD(it.Name)
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
		ts := []unix.Timespec{timespec(it.ATime), timespec(it.ModTime)}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), ts, 0); err != nil {
			return wrap(it, err)
		}
	}
	rep.NotKept = append(rep.NotKept, s.notes...)
	return nil
}

// Abort releases the descriptors of a failed extraction.
func (s *DirSink) Abort() { s.release() }

func (s *DirSink) release() {
	for _, el := range s.fds {
		unix.Close(el.Value.(*fdEntry).fd)
	}
	s.fds = map[string]*list.Element{}
	s.lru.Init()
	if s.root >= 0 {
		unix.Close(s.root)
		s.root = -1
	}
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}
