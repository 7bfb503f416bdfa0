package vmdk

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// File is one file of a VMDK (a descriptor or an extent): random access
// and a size. Files that are io.Closers are closed by Disk.Close.
type File interface {
	io.ReaderAt
	Size() int64
}

// Opener opens a file of a disk by name: the descriptor's own name first,
// then extent and parent names relative to it.
type Opener func(name string) (File, error)

// maxChain bounds a chain of parents.
const maxChain = 32

// Range is a byte range of a disk.
type Range struct{ Offset, Length int64 }

// Disk is an opened VMDK: its descriptor, extents and parent chain. It is
// safe for concurrent ReadAt calls.
type Disk struct {
	Descriptor *Descriptor
	// Parent is the parent disk of a child, nil otherwise.
	Parent  *Disk
	size    int64
	extents []*extent
	files   []File
}

type extent struct {
	Extent
	start int64 // virtual offset in bytes
	file  File
	sp    *sparse // SPARSE extents
}

// LocalOpener opens files in dir.
func LocalOpener(dir string) Opener {
	return func(name string) (File, error) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		return &localFile{File: f, size: st.Size()}, nil
	}
}

type localFile struct {
	*os.File
	size int64
}

func (f *localFile) Size() int64 { return f.size }

// OpenFile opens a VMDK on the local filesystem.
func OpenFile(path string) (*Disk, error) {
	return Open(LocalOpener(filepath.Dir(path)), filepath.Base(path))
}

// Open opens the disk whose descriptor (or monolithic sparse file) is
// name, and its parents.
func Open(open Opener, name string) (*Disk, error) {
	return openChain(open, name, 0)
}

func openChain(open Opener, name string, depth int) (*Disk, error) {
	if depth > maxChain {
		return nil, fmt.Errorf("%w: more than %d parent disks", ErrFormat, maxChain)
	}
	d := &Disk{}
	fail := func(err error) (*Disk, error) {
		d.Close()
		return nil, err
	}
	f, err := open(name)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	d.files = append(d.files, f)
	desc, self, err := readDescriptor(f)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", name, err))
	}
	d.Descriptor = desc
	var pos int64
	for _, e := range desc.Extents {
		x := &extent{Extent: e, start: pos}
		pos += e.Sectors * SectorSize
		switch e.Type {
		case ExtentZero:
		case ExtentFlat, ExtentVMFS, ExtentSparse:
			if self != nil && e.File == name {
				x.file = f
			} else if x.file, err = open(e.File); err != nil {
				return fail(fmt.Errorf("%s: extent %s: %w", name, e.File, err))
			} else {
				d.files = append(d.files, x.file)
			}
			if e.Type == ExtentSparse {
				if x.sp, err = openSparse(x.file); err != nil {
					return fail(fmt.Errorf("%s: extent %s: %w", name, e.File, err))
				}
				if int64(x.sp.h.Capacity) < e.Sectors {
					return fail(fmt.Errorf("%w: %s: sparse extent holds %d sectors, descriptor says %d", ErrFormat, e.File, x.sp.h.Capacity, e.Sectors))
				}
			}
		default:
			return fail(fmt.Errorf("%s: %w: extent type %s (vSphere delta, seSparse and raw device mappings are read only by VMware's own transports)",
				name, ErrUnsupported, e.Type))
		}
		d.extents = append(d.extents, x)
	}
	d.size = pos
	if desc.ParentCID != NoParent {
		if desc.ParentFileNameHint == "" {
			return fail(fmt.Errorf("%w: %s has a parent CID but no parentFileNameHint", ErrFormat, name))
		}
		hint := filepath.Base(desc.ParentFileNameHint)
		p, err := openChain(open, hint, depth+1)
		if err != nil {
			return fail(fmt.Errorf("%s: parent: %w", name, err))
		}
		d.Parent = p
		if p.Descriptor.CID != desc.ParentCID {
			return fail(fmt.Errorf("%w: %s expects parent content id %08x, %s has %08x (the parent changed after the child was made)",
				ErrFormat, name, desc.ParentCID, hint, p.Descriptor.CID))
		}
		if p.size != d.size {
			return fail(fmt.Errorf("%w: %s is %d bytes, its parent %s %d", ErrFormat, name, d.size, hint, p.size))
		}
	}
	return d, nil
}

// readDescriptor reads a descriptor file, or the descriptor embedded in a
// monolithic sparse file (then self is its header).
func readDescriptor(f File) (*Descriptor, *SparseHeader, error) {
	head := make([]byte, headerSize)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	head = head[:n]
	if n >= 4 && binary.LittleEndian.Uint32(head) == sparseMagic {
		h, err := ParseSparseHeader(head)
		if err != nil {
			return nil, nil, err
		}
		if h.DescriptorOffset == 0 || h.DescriptorSize == 0 {
			return nil, nil, fmt.Errorf("%w: sparse extent without an embedded descriptor (open its descriptor file instead)", ErrFormat)
		}
		b := make([]byte, h.DescriptorSize*SectorSize)
		if _, err := f.ReadAt(b, int64(h.DescriptorOffset)*SectorSize); err != nil && !errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("read embedded descriptor: %w", err)
		}
		d, err := ParseDescriptor(b)
		return d, h, err
	}
	size := f.Size()
	if size > maxDescriptor {
		return nil, nil, fmt.Errorf("%w: %d-byte file is neither a descriptor nor a sparse extent", ErrFormat, size)
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	d, err := ParseDescriptor(b)
	return d, nil, err
}

// Size is the disk's virtual size in bytes.
func (d *Disk) Size() int64 { return d.size }

// Close closes the disk's files and its parents'.
func (d *Disk) Close() error {
	var errs []error
	for _, f := range d.files {
		if c, ok := f.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	d.files = nil
	if d.Parent != nil {
		errs = append(errs, d.Parent.Close())
	}
	return errors.Join(errs...)
}

// ReadAt reads the disk's virtual bytes.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vmdk read at %d: negative offset", off)
	}
	if off >= d.size {
		return 0, io.EOF
	}
	n := len(p)
	if rest := d.size - off; int64(n) > rest {
		n = int(rest)
	}
	done := 0
	for done < n {
		cur := off + int64(done)
		x := d.extentAt(cur)
		end := min(x.start+x.Sectors*SectorSize, off+int64(n))
		buf := p[done : done+int(end-cur)]
		if err := d.readExtent(x, buf, cur); err != nil {
			return done, err
		}
		done += len(buf)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (d *Disk) extentAt(off int64) *extent {
	for _, x := range d.extents {
		if off < x.start+x.Sectors*SectorSize {
			return x
		}
	}
	return d.extents[len(d.extents)-1]
}

// readExtent fills buf with the bytes at virtual offset off, inside x.
func (d *Disk) readExtent(x *extent, buf []byte, off int64) error {
	rel := off - x.start
	switch x.Type {
	case ExtentZero:
		clear(buf)
		return nil
	case ExtentFlat, ExtentVMFS:
		return readFull(x.file, buf, x.Offset*SectorSize+rel)
	}
	return x.sp.read(buf, rel, func(b []byte, vrel int64) error {
		if d.Parent == nil {
			clear(b)
			return nil
		}
		_, err := d.Parent.ReadAt(b, x.start+vrel)
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return err
	})
}

// readFull reads len(p) bytes at off; bytes past the end of the file read
// as zeros (a flat extent file may be shorter than its extent).
func readFull(f io.ReaderAt, p []byte, off int64) error {
	n, err := f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		clear(p[n:])
		return nil
	}
	return err
}

// Allocated returns the ranges of the disk that may hold data, sorted and
// merged: flat extents entirely, sparse extents their allocated grains
// (and their parents'). Everything else reads as zeros.
func (d *Disk) Allocated() ([]Range, error) {
	var out []Range
	add := func(off, n int64) {
		if l := len(out); l > 0 && out[l-1].Offset+out[l-1].Length >= off {
			out[l-1].Length = max(out[l-1].Length, off+n-out[l-1].Offset)
			return
		}
		out = append(out, Range{off, n})
	}
	var parent []Range
	if d.Parent != nil {
		var err error
		if parent, err = d.Parent.Allocated(); err != nil {
			return nil, err
		}
	}
	pi := 0
	for _, x := range d.extents {
		xlen := x.Sectors * SectorSize
		switch x.Type {
		case ExtentZero:
			continue
		case ExtentFlat, ExtentVMFS:
			add(x.start, xlen)
			continue
		}
		grain := int64(x.sp.h.GrainSize) * SectorSize
		for g := int64(0); g*grain < xlen; g++ {
			start, n := x.start+g*grain, min(grain, xlen-g*grain)
			gte, err := x.sp.gte(uint64(g))
			if err != nil {
				return nil, err
			}
			switch {
			case gte == 1 && x.sp.zeroGTE:
				continue
			case gte != 0:
				add(start, n)
				continue
			}
			for pi < len(parent) && parent[pi].Offset+parent[pi].Length <= start {
				pi++
			}
			for j := pi; j < len(parent) && parent[j].Offset < start+n; j++ {
				s := max(parent[j].Offset, start)
				e := min(parent[j].Offset+parent[j].Length, start+n)
				add(s, e-s)
			}
		}
	}
	return out, nil
}

// sparse reads one hosted sparse extent (KDMV), compressed or not.
type sparse struct {
	f        File
	h        *SparseHeader
	gd       []uint32
	zeroGTE  bool
	mu       sync.Mutex
	gts      map[uint64][]uint32
	lastLBA  int64 // decompressed grain cache (streamOptimized)
	lastData []byte
}

func openSparse(f File) (*sparse, error) {
	head := make([]byte, headerSize)
	if _, err := f.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("read sparse header: %w", err)
	}
	h, err := ParseSparseHeader(head)
	if err != nil {
		return nil, err
	}
	if h.GDOffset == gdAtEnd {
		// streamOptimized written as a stream: the footer (a copy of the
		// header with the real offsets) is 2 sectors before the end.
		if f.Size() < 3*SectorSize {
			return nil, fmt.Errorf("%w: stream-optimized file too short for a footer", ErrFormat)
		}
		foot := make([]byte, headerSize)
		if _, err := f.ReadAt(foot, f.Size()-2*SectorSize); err != nil {
			return nil, fmt.Errorf("read footer: %w", err)
		}
		if h, err = ParseSparseHeader(foot); err != nil {
			return nil, fmt.Errorf("footer: %w", err)
		}
		if h.GDOffset == gdAtEnd {
			return nil, fmt.Errorf("%w: footer has no grain directory offset", ErrFormat)
		}
	}
	s := &sparse{f: f, h: h, zeroGTE: h.Flags&flagZeroGTE != 0, gts: map[uint64][]uint32{}, lastLBA: -1}
	n := h.numGTs()
	if int64(h.GDOffset)*SectorSize+int64(n)*4 > f.Size() || h.GDOffset == 0 {
		return nil, fmt.Errorf("%w: grain directory at sector %d (%d entries) outside the %d-byte file", ErrFormat, h.GDOffset, n, f.Size())
	}
	raw := make([]byte, n*4)
	if _, err := f.ReadAt(raw, int64(h.GDOffset)*SectorSize); err != nil {
		return nil, fmt.Errorf("read grain directory: %w", err)
	}
	s.gd = make([]uint32, n)
	for i := range s.gd {
		s.gd[i] = binary.LittleEndian.Uint32(raw[4*i:])
	}
	return s, nil
}

// gte returns the grain table entry of grain g (0 = not allocated).
func (s *sparse) gte(g uint64) (uint32, error) {
	t := g / gtesPerGT
	if t >= uint64(len(s.gd)) {
		return 0, fmt.Errorf("%w: grain %d beyond the grain directory", ErrFormat, g)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gt, ok := s.gts[t]
	if !ok {
		if s.gd[t] == 0 {
			gt = nil // a whole table unallocated
		} else {
			raw := make([]byte, gtesPerGT*4)
			if _, err := s.f.ReadAt(raw, int64(s.gd[t])*SectorSize); err != nil {
				return 0, fmt.Errorf("read grain table %d: %w", t, err)
			}
			gt = make([]uint32, gtesPerGT)
			for i := range gt {
				gt[i] = binary.LittleEndian.Uint32(raw[4*i:])
			}
		}
		s.gts[t] = gt
	}
	if gt == nil {
		return 0, nil
	}
	return gt[g%gtesPerGT], nil
}

// read fills buf with the extent's bytes at rel; hole is called for
// unallocated grains (the parent's bytes, or zeros). Adjacent grains that
// are adjacent in the file are read at once.
func (s *sparse) read(buf []byte, rel int64, hole func([]byte, int64) error) error {
	grain := int64(s.h.GrainSize) * SectorSize
	done := 0
	for done < len(buf) {
		cur := rel + int64(done)
		g := cur / grain
		in := cur % grain
		n := int(min(grain-in, int64(len(buf)-done)))
		gte, err := s.gte(uint64(g))
		if err != nil {
			return err
		}
		part := buf[done : done+n]
		switch {
		case gte == 0:
			if err := hole(part, cur); err != nil {
				return err
			}
		case gte == 1 && s.zeroGTE:
			clear(part)
		case s.h.Compressed():
			data, err := s.grain(int64(gte), g)
			if err != nil {
				return err
			}
			copy(part, data[in:])
		default:
			// Extend over following grains stored right after this one.
			fileOff := int64(gte)*SectorSize + in
			for done+n < len(buf) {
				next, err := s.gte(uint64(g + 1))
				if err != nil || next <= 1 || int64(next)*SectorSize != fileOff+int64(n) {
					break
				}
				g++
				n += int(min(grain, int64(len(buf)-done-n)))
			}
			part = buf[done : done+n]
			if err := readFull(s.f, part, fileOff); err != nil {
				return err
			}
		}
		done += n
	}
	return nil
}

// grain returns the decompressed grain g stored at sector sec.
func (s *sparse) grain(sec, g int64) ([]byte, error) {
	s.mu.Lock()
	if s.lastLBA == g {
		data := s.lastData
		s.mu.Unlock()
		return data, nil
	}
	s.mu.Unlock()
	grain := int(s.h.GrainSize) * SectorSize
	head := make([]byte, SectorSize)
	if err := readFull(s.f, head, sec*SectorSize); err != nil {
		return nil, err
	}
	data, err := decodeGrain(head, s.f, sec*SectorSize, grain)
	if err != nil {
		return nil, fmt.Errorf("grain %d: %w", g, err)
	}
	if lba := int64(binary.LittleEndian.Uint64(head)); lba != g*int64(s.h.GrainSize) {
		return nil, fmt.Errorf("%w: grain %d: marker says sector %d", ErrFormat, g, lba)
	}
	s.mu.Lock()
	s.lastLBA, s.lastData = g, data
	s.mu.Unlock()
	return data, nil
}

// decodeGrain decodes a compressed grain marker at off whose first sector
// is head: {lba u64, size u32, zlib data}. It returns grainSize bytes.
func decodeGrain(head []byte, f io.ReaderAt, off int64, grainSize int) ([]byte, error) {
	size := int64(binary.LittleEndian.Uint32(head[8:]))
	if size == 0 || size > int64(grainSize)*2+4096 {
		return nil, fmt.Errorf("%w: compressed grain of %d bytes", ErrFormat, size)
	}
	comp := make([]byte, size)
	if int64(len(head))-12 >= size {
		copy(comp, head[12:12+size])
	} else if _, err := f.ReadAt(comp, off+12); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	zr, err := zlib.NewReader(bytes.NewReader(comp))
	if err != nil {
		return nil, fmt.Errorf("%w: compressed grain: %w", ErrFormat, err)
	}
	out := make([]byte, grainSize)
	n, err := io.ReadFull(zr, out)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("%w: compressed grain: %w", ErrFormat, err)
	}
	clear(out[n:]) // the last grain of a disk may be short
	return out, nil
}
