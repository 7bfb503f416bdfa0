package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/repo"
)

// ErrNoFilesystem means no readable filesystem was found where asked.
var ErrNoFilesystem = errors.New("no readable filesystem")

// FileBrowser reads guest files straight from a recovery point's disk,
// without mounting, root or a helper VM.
type FileBrowser struct {
	Point  *repo.Manifest
	Disk   string
	Volume fsread.Volume
	FS     fsread.FS
	reader *repo.DiskReader
	lease  *repo.Lease
}

// Close releases the disk reader and the point's lease.
func (b *FileBrowser) Close() error {
	err := b.reader.Close()
	if b.lease != nil {
		err = errors.Join(err, b.lease.Release(context.Background()))
	}
	return err
}

// VolumesOf lists the partitions (or the whole disk) of one disk of a point.
func VolumesOf(ctx context.Context, r *repo.Repository, m *repo.Manifest, target string) ([]fsread.Volume, error) {
	lease, m, err := r.LeasePoint(ctx, "files", m.ID)
	if err != nil {
		return nil, err
	}
	defer func() { _ = lease.Release(context.WithoutCancel(ctx)) }()
	d, err := pointDisk(m, target)
	if err != nil {
		return nil, err
	}
	dr, err := r.OpenDisk(ctx, d.Index)
	if err != nil {
		return nil, err
	}
	defer dr.Close()
	return fsread.Volumes(ctx, dr, dr.Size())
}

func pointDisk(m *repo.Manifest, target string) (repo.DiskEntry, error) {
	if len(m.Disks) == 0 {
		return repo.DiskEntry{}, fmt.Errorf("point %s has no disks", m.ID)
	}
	if target == "" {
		return m.Disks[0], nil
	}
	var names []string
	for _, d := range m.Disks {
		if d.Target == target {
			return d, nil
		}
		names = append(names, d.Target)
	}
	return repo.DiskEntry{}, fmt.Errorf("point %s has no disk %s (it has %s)", m.ID, target, strings.Join(names, ", "))
}

// OpenFiles opens the filesystem on volume index vol (0 = the first volume
// holding a filesystem kura can read) of disk target of point m.
// The point is leased (never deleted) until the browser is closed.
func OpenFiles(ctx context.Context, r *repo.Repository, m *repo.Manifest, target string, vol int) (*FileBrowser, error) {
	lease, m, err := r.LeasePoint(ctx, "files", m.ID)
	if err != nil {
		return nil, err
	}
	b, err := openFiles(ctx, r, m, target, vol)
	if err != nil {
		_ = lease.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	b.lease = lease
	return b, nil
}

func openFiles(ctx context.Context, r *repo.Repository, m *repo.Manifest, target string, vol int) (*FileBrowser, error) {
	d, err := pointDisk(m, target)
	if err != nil {
		return nil, err
	}
	dr, err := r.OpenDisk(ctx, d.Index)
	if err != nil {
		return nil, err
	}
	vols, err := fsread.Volumes(ctx, dr, dr.Size())
	if err != nil {
		dr.Close()
		return nil, fmt.Errorf("disk %s: %w", d.Target, err)
	}
	var lastErr error
	for _, v := range vols {
		if vol != 0 && v.Index != vol {
			continue
		}
		f, err := fsread.OpenFS(ctx, dr, v)
		if err != nil {
			lastErr = err
			continue
		}
		return &FileBrowser{Point: m, Disk: d.Target, Volume: v, FS: f, reader: dr}, nil
	}
	dr.Close()
	if lastErr == nil {
		lastErr = fmt.Errorf("%w: disk %s has no volume %d", ErrNoFilesystem, d.Target, vol)
	}
	return nil, fmt.Errorf("disk %s of point %s: %w (export the disk with kura export instead)", d.Target, m.ID, lastErr)
}

// Walk calls fn for p and, when it is a directory, everything below it,
// depth first in name order. Symlinks are reported, never followed.
func (b *FileBrowser) Walk(ctx context.Context, p string, fn func(fsread.Entry) error) error {
	e, err := b.FS.Stat(ctx, p)
	if err != nil {
		return err
	}
	return b.walk(ctx, e, fn)
}

func (b *FileBrowser) walk(ctx context.Context, e fsread.Entry, fn func(fsread.Entry) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := fn(e); err != nil {
		return err
	}
	if e.Type != "dir" {
		return nil
	}
	kids, err := b.FS.ReadDir(ctx, e.Path)
	if err != nil {
		return err
	}
	for _, k := range kids {
		if err := b.walk(ctx, k, fn); err != nil {
			return err
		}
	}
	return nil
}

// ExtractStats counts what Extract wrote.
type ExtractStats struct {
	Files, Dirs, Symlinks, Skipped int
	Bytes                          int64
}

// Extract copies p (a file, a symlink or a whole directory) into outDir,
// keeping modes, modification times and symlinks. Nothing is ever written
// outside outDir: all writes go through an os.Root, which refuses paths
// and symlinks leading out of it.
func (b *FileBrowser) Extract(ctx context.Context, p string, outDir string, progress func(done int64)) (ExtractStats, error) {
	var st ExtractStats
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return st, err
	}
	root, err := os.OpenRoot(outDir)
	if err != nil {
		return st, err
	}
	defer root.Close()
	base := path.Dir(path.Clean("/" + p))
	var dirs []fsread.Entry
	err = b.Walk(ctx, p, func(e fsread.Entry) error {
		rel := strings.TrimPrefix(strings.TrimPrefix(e.Path, base), "/")
		if rel == "" {
			rel = "root"
		}
		if !fs.ValidPath(rel) {
			st.Skipped++
			return nil
		}
		switch e.Type {
		case "dir":
			if err := root.MkdirAll(rel, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, fsread.Entry{Path: rel, Mode: e.Mode, ModTime: e.ModTime})
			st.Dirs++
		case "symlink":
			if err := root.Symlink(e.Target, rel); err != nil {
				return err
			}
			st.Symlinks++
		case "file":
			n, err := b.copyFile(ctx, root, e, rel, func(n int64) {
				if progress != nil {
					progress(st.Bytes + n)
				}
			})
			st.Bytes += n
			if err != nil {
				return err
			}
			st.Files++
		default:
			st.Skipped++
		}
		return nil
	})
	// Directory modes and times last, deepest first, so writing into them
	// did not change their times and read-only modes did not block writes.
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		_ = root.Chmod(d.Path, d.Mode.Perm())
		_ = root.Chtimes(d.Path, d.ModTime, d.ModTime)
	}
	return st, err
}

func (b *FileBrowser) copyFile(ctx context.Context, root *os.Root, e fsread.Entry, rel string, progress func(int64)) (int64, error) {
	src, err := b.FS.Open(ctx, e.Path)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	dst, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	// A large buffer (and no ReaderFrom shortcut with its small one): each
	// read goes down to the repository's disk reader.
	buf := make([]byte, copyBuffer)
	n, err := io.CopyBuffer(struct{ io.Writer }{dst}, &ctxReader{ctx: ctx, r: src, progress: progress}, buf)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("extract %s: %w", e.Path, err)
	}
	if err := root.Chmod(rel, e.Mode.Perm()); err != nil {
		return n, err
	}
	return n, root.Chtimes(rel, e.ModTime, e.ModTime)
}

// copyBuffer is the size of the reads of an extracted file.
const copyBuffer = 4 << 20

// Find walks the whole filesystem and calls fn for every entry whose name
// (or, when the pattern holds a slash, whose full path) matches the glob
// pattern (path.Match syntax).
func (b *FileBrowser) Find(ctx context.Context, pattern string, fn func(fsread.Entry) error) error {
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("bad pattern %q: %w", pattern, err)
	}
	full := strings.Contains(pattern, "/")
	return b.Walk(ctx, "/", func(e fsread.Entry) error {
		subject := e.Name
		if full {
			subject = e.Path
		}
		if ok, _ := path.Match(pattern, subject); ok {
			return fn(e)
		}
		return nil
	})
}

// ctxReader stops a copy when ctx is cancelled and reports progress.
type ctxReader struct {
	ctx      context.Context
	r        io.Reader
	n        int64
	progress func(int64)
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.progress != nil {
		c.progress(c.n)
	}
	return n, err
}
