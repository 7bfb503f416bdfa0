package extract

import (
	"context"
	"time"

	"github.com/kurabackup/kura/internal/fsread"
)

// run writes the plan into sink (step 2).
func (p *planned) run(ctx context.Context, fsys fsread.FS, sink Sink, opt Options, rep *Report) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer p.close()
	if all, ok := sink.(interface {
		DirAll(context.Context, []*Item) error
	}); ok {
		if err := all.DirAll(ctx, p.dirs); err != nil {
			return err
		}
	} else {
		for _, d := range p.dirs {
			if err := sink.Dir(ctx, d); err != nil {
				return wrap(d, err)
			}
		}
	}
	for _, d := range p.dirs {
		if d.Name != "" {
			rep.Dirs++
		}
	}
	// A sink that creates files cheaper in directory order (a directory:
	// the destination filesystem allocates inodes and directory blocks
	// near each other) creates them empty first, then gets their data in
	// block order.
	if c, ok := sink.(interface {
		CreateAll(context.Context, []*Item) error
	}); ok {
		var items []*Item
		for _, f := range p.walk {
			if f.LinkTo == "" {
				items = append(items, f.Item)
			}
		}
		if err := c.CreateAll(ctx, items); err != nil {
			return err
		}
	}
	r := startReader(ctx, p.files, opt)
	defer func() { cancel(); <-r.done }()
	prog := Progress{TotalFiles: len(p.files), TotalBytes: p.data}
	last := time.Time{}
	for _, f := range p.files {
		d := &Data{Size: f.Size, Extents: f.f.Extents(), r: r}
		if err := sink.File(ctx, f.Item, d); err != nil {
			return wrap(f.Item, err)
		}
		if err := d.drain(); err != nil {
			return err
		}
		rep.Files++
		rep.Bytes += f.Size
		n := dataLen(f.f)
		rep.DataBytes += n
		prog.Files, prog.Bytes, prog.Path = rep.Files, rep.DataBytes, f.Path
		if opt.Progress != nil && (time.Since(last) > 100*time.Millisecond || rep.Files == len(p.files)) {
			last = time.Now()
			opt.Progress(prog)
		}
	}
	for _, o := range p.others {
		if err := ctx.Err(); err != nil {
			return err
		}
		if o.Type == fsread.TypeSymlink {
			if err := sink.Symlink(ctx, o); err != nil {
				return wrap(o, err)
			}
			rep.Symlinks++
			continue
		}
		why, err := sink.Special(ctx, o)
		if err != nil {
			return wrap(o, err)
		}
		if why != "" {
			rep.skip(o.Path, why)
			continue
		}
		rep.Specials++
	}
	for _, l := range p.links {
		why, err := sink.Link(ctx, l)
		if err != nil {
			return wrap(l, err)
		}
		if why != "" {
			rep.skip(l.Path, why)
			continue
		}
		rep.Hardlinks++
	}
	return nil
}
