package extract

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/kurabackup/kura/internal/fsread"
)

// planned is what an extraction writes, in writing order.
type planned struct {
	dirs   []*Item     // parents before children
	files  []*fileItem // by first block on the volume
	walk   []*fileItem // the same, in walk order
	others []*Item     // symlinks and special files, in walk order
	links  []*Item     // hard links, after everything they link to
	data   int64       // data bytes of the files
}

type fileItem struct {
	*Item
	f   fsread.File
	key int64 // first plain block on the volume; -1 for none
}

// badName says why a name cannot be a file name ("" when it can). Only
// crafted images hold such names.
func badName(n string) string {
	switch {
	case n == "", n == ".", n == "..":
		return fmt.Sprintf("name %q is not a file name", n)
	case strings.IndexByte(n, '/') >= 0:
		return `name holds "/"`
	case strings.IndexByte(n, 0) >= 0:
		return "name holds a NUL byte"
	}
	return ""
}

func plan(ctx context.Context, fsys fsread.FS, paths []string, opt Options, rep *Report) (*planned, error) {
	p := &planned{}
	names := map[string]string{}
	for _, req := range paths {
		clean := path.Clean("/" + req)
		e, err := fsys.Stat(ctx, clean)
		if err != nil {
			return nil, err
		}
		name := ""
		if clean != "/" {
			name = e.Name
		}
		for other, n := range names {
			if n == name || n == "" || name == "" {
				return nil, fmt.Errorf("%s and %s: %w (extract them one at a time)", fsread.Escape(other), fsread.Escape(clean), ErrNameClash)
			}
		}
		names[clean] = name
		if err := p.add(ctx, fsys, e, name, opt, rep); err != nil {
			p.close()
			return nil, err
		}
	}
	sort.SliceStable(p.files, func(i, j int) bool {
		a, b := p.files[i], p.files[j]
		if a.key != b.key {
			return a.key < b.key
		}
		return a.Ino < b.Ino
	})
	if !opt.NoHardlinks {
		p.hardlinks()
	}
	return p, nil
}

func (p *planned) close() {
	for _, f := range p.files {
		f.f.Close()
	}
}

func (p *planned) add(ctx context.Context, fsys fsread.FS, e fsread.Entry, name string, opt Options, rep *Report) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	it := &Item{Entry: e, Name: name, UID: mapID(opt.UIDMap, e.UID), GID: mapID(opt.GIDMap, e.GID)}
	if !opt.NoXattrs && e.Type != fsread.TypeStream {
		x, err := fsys.Xattrs(ctx, e)
		if err != nil {
			rep.notKept(e.Path, "xattrs unreadable: "+err.Error())
		}
		it.Xattrs = x
	}
	switch e.Type {
	case fsread.TypeDir:
		p.dirs = append(p.dirs, it)
		kids, err := fsys.List(ctx, e)
		if err != nil {
			return err
		}
		for _, k := range kids {
			if k.Type == fsread.TypeStream {
				continue // kept as user.* xattrs of its file
			}
			if why := badName(k.Name); why != "" {
				rep.Skipped = append(rep.Skipped, Note{shownChild(e.Path, k.Name), why})
				continue
			}
			if err := p.add(ctx, fsys, k, joinName(name, k.Name), opt, rep); err != nil {
				return err
			}
		}
	case fsread.TypeFile, fsread.TypeStream:
		f, err := fsys.OpenEntry(ctx, e)
		if err != nil {
			return err
		}
		fi := &fileItem{Item: it, f: f, key: -1}
		for _, x := range f.Extents() {
			p.data += x.Len
			if x.Phys >= 0 && fi.key < 0 {
				fi.key = x.Phys
			}
		}
		p.files = append(p.files, fi)
		p.walk = append(p.walk, fi)
	case fsread.TypeSymlink, fsread.TypeFIFO, fsread.TypeSocket, fsread.TypeCharDev, fsread.TypeBlockDev:
		p.others = append(p.others, it)
	default:
		rep.skip(e.Path, "entry of unknown type")
	}
	return nil
}

func joinName(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func mapID(m map[uint32]uint32, id uint32) uint32 {
	if v, ok := m[id]; ok {
		return v
	}
	return id
}

// hardlinks turns every further name of a multiply-linked inode into a
// link to its first name in writing order (a file's first name in block
// order holds the data).
func (p *planned) hardlinks() {
	first := map[uint64]string{}
	var files []*fileItem
	for _, f := range p.files {
		if f.Type != fsread.TypeFile || f.Nlink < 2 {
			files = append(files, f)
			continue
		}
		if target, ok := first[f.Ino]; ok {
			f.f.Close()
			p.data -= dataLen(f.f)
			f.LinkTo = target
			p.links = append(p.links, f.Item)
			continue
		}
		first[f.Ino] = f.Name
		files = append(files, f)
	}
	p.files = files
	var others []*Item
	for _, o := range p.others {
		if o.Nlink < 2 {
			others = append(others, o)
			continue
		}
		if target, ok := first[o.Ino]; ok {
			o.LinkTo = target
			p.links = append(p.links, o)
			continue
		}
		first[o.Ino] = o.Name
		others = append(others, o)
	}
	p.others = others
}

func dataLen(f fsread.File) int64 {
	var n int64
	for _, x := range f.Extents() {
		n += x.Len
	}
	return n
}

// shownChild shows a child path with its own name escaped as a name, so a
// "/" inside it shows as \x2f.
func shownChild(dir, name string) string {
	if dir == "/" {
		return "/" + fsread.EscapeName(name)
	}
	return fsread.Escape(dir) + "/" + fsread.EscapeName(name)
}
