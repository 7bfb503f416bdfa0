package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/kurabackup/kura/internal/extract"
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

// VolumesOf lists the partitions, LVM logical volumes (or the whole disk)
// of one disk of a point.
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

// OpenFiles opens the filesystem on partition vol (0 = the first volume
// holding a filesystem kura can read) of disk target of point m.
// The point is leased (never deleted) until the browser is closed.
func OpenFiles(ctx context.Context, r *repo.Repository, m *repo.Manifest, target string, vol int) (*FileBrowser, error) {
	sel := ""
	if vol != 0 {
		sel = strconv.Itoa(vol)
	}
	return OpenFilesVolume(ctx, r, m, target, sel)
}

// OpenFilesVolume opens the filesystem on the volume named sel: a
// partition number, an LVM logical volume "vg/lv", or "" for the first
// volume holding a filesystem kura can read. The point is leased (never
// deleted) until the browser is closed.
func OpenFilesVolume(ctx context.Context, r *repo.Repository, m *repo.Manifest, target, sel string) (*FileBrowser, error) {
	lease, m, err := r.LeasePoint(ctx, "files", m.ID)
	if err != nil {
		return nil, err
	}
	b, err := openFiles(ctx, r, m, target, sel)
	if err != nil {
		_ = lease.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	b.lease = lease
	return b, nil
}

func openFiles(ctx context.Context, r *repo.Repository, m *repo.Manifest, target, sel string) (*FileBrowser, error) {
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
		if sel != "" && v.Name() != sel {
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
		lastErr = fmt.Errorf("%w: disk %s has no volume %s", ErrNoFilesystem, d.Target, sel)
	}
	return nil, fmt.Errorf("disk %s of point %s: %w (export the disk with kura export instead)", d.Target, m.ID, lastErr)
}

// Walk calls fn for p and, when it is a directory, everything below it,
// depth first in name order. Symlinks are reported, never followed; NTFS
// streams are reported after their file.
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
	if e.Type != fsread.TypeDir {
		return nil
	}
	kids, err := b.FS.List(ctx, e)
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

// Extract writes paths of the filesystem into sink (see package extract),
// announcing the volume ranges it reads next to the point's disk reader.
func (b *FileBrowser) Extract(ctx context.Context, paths []string, sink extract.Sink, opt extract.Options) (*extract.Report, error) {
	opt.WillNeed = func(off, n int64) {
		if d := b.Volume.DiskOffset(off); d >= 0 {
			b.reader.WillNeed(d, n)
		}
	}
	return extract.Extract(ctx, b.FS, paths, sink, opt)
}

// ExtractTo extracts paths into directory dir.
func (b *FileBrowser) ExtractTo(ctx context.Context, paths []string, dir string, opt extract.Options) (*extract.Report, error) {
	sink, err := extract.NewDirSink(dir, opt)
	if err != nil {
		return nil, err
	}
	return b.Extract(ctx, paths, sink, opt)
}

// ExtractArchive writes paths to w as a "tar" or "zip" archive.
func (b *FileBrowser) ExtractArchive(ctx context.Context, paths []string, format string, w io.Writer, opt extract.Options) (*extract.Report, error) {
	sink, err := extract.NewArchiveSink(format, w, opt)
	if err != nil {
		return nil, err
	}
	return b.Extract(ctx, paths, sink, opt)
}
