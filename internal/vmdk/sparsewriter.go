package vmdk

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// WriterAt is where a SparseWriter writes (an *os.File).
type WriterAt interface {
	io.WriterAt
	io.ReaderAt
	Truncate(size int64) error
}

// SparseWriter writes a monolithicSparse VMDK (one file: header, embedded
// descriptor, redundant and primary grain directories and tables, 64 KiB
// grains). Ranges may be written in any order and concurrently; all-zero
// grains of a fresh file are not allocated. Close writes the metadata.
type SparseWriter struct {
	f        WriterAt
	h        SparseHeader
	desc     []byte
	gt       []uint32 // every grain table, concatenated
	mu       sync.Mutex
	rmw      sync.Mutex // serializes read-modify-write of partial grains
	next     uint64     // next free sector for a grain
	closed   bool
	capacity int64
}

const (
	sparseGrain     = 128 // sectors (64 KiB)
	descriptorSects = 20
	// maxSparse keeps every sector offset (grains and metadata) within
	// the 32 bits of a grain table entry.
	maxSparse = 2<<40 - 64<<20
)

// NewSparseWriter starts a monolithicSparse disk of size bytes (rounded up
// to a sector) in f, whose extent line names the file extentName (the
// file's final base name). adapter is the descriptor's adapter type.
func NewSparseWriter(f WriterAt, size int64, extentName, adapter string) (*SparseWriter, error) {
	if size <= 0 || size > maxSparse {
		return nil, fmt.Errorf("vmdk: disk size %d out of range (a monolithicSparse file addresses 2 TiB at most: use raw or qcow2)", size)
	}
	sectors := (size + SectorSize - 1) / SectorSize
	d := NewDescriptor("monolithicSparse", sectors*SectorSize, adapter,
		Extent{Access: "RW", Sectors: sectors, Type: ExtentSparse, File: extentName})
	desc := d.Encode()
	if len(desc) > descriptorSects*SectorSize {
		return nil, fmt.Errorf("vmdk: descriptor of %d bytes does not fit", len(desc))
	}
	w := &SparseWriter{f: f, desc: desc, capacity: sectors * SectorSize}
	w.h = SparseHeader{Version: 1, Flags: flagNewlineTest | flagRedundantGT, Capacity: uint64(sectors), GrainSize: sparseGrain,
		DescriptorOffset: 1, DescriptorSize: descriptorSects, NumGTEsPerGT: gtesPerGT}
	n := w.h.numGTs()
	gdSects := (n*4 + SectorSize - 1) / SectorSize
	gtSects := n * gtesPerGT * 4 / SectorSize
	w.h.RGDOffset = 1 + descriptorSects
	w.h.GDOffset = w.h.RGDOffset + gdSects + gtSects
	end := w.h.GDOffset + gdSects + gtSects
	w.h.OverHead = (end + sparseGrain - 1) / sparseGrain * sparseGrain
	w.next = w.h.OverHead
	w.gt = make([]uint32, n*gtesPerGT)
	if err := f.Truncate(int64(w.h.OverHead) * SectorSize); err != nil {
		return nil, fmt.Errorf("vmdk: %w", err)
	}
	return w, nil
}

// WriteAt writes p at virtual offset off.
func (w *SparseWriter) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > w.capacity {
		return 0, fmt.Errorf("vmdk: write %d+%d beyond the %d-byte disk", off, len(p), w.capacity)
	}
	const grain = sparseGrain * SectorSize
	done := 0
	for done < len(p) {
		cur := off + int64(done)
		g, in := cur/grain, cur%grain
		n := int(min(grain-in, int64(len(p)-done)))
		var err error
		if in == 0 && (n == grain || cur+int64(n) == w.capacity) {
			err = w.writeGrain(uint64(g), p[done:done+n])
		} else {
			err = w.mergeGrain(uint64(g), p[done:done+n], in)
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return len(p), nil
}

// writeGrain writes a whole grain (or the disk's last, short one).
func (w *SparseWriter) writeGrain(g uint64, data []byte) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return fmt.Errorf("vmdk: writer closed")
	}
	sec := w.gt[g]
	if sec == 0 {
		if isZero(data) {
			w.mu.Unlock()
			return nil
		}
		sec = uint32(w.next)
		w.gt[g] = sec
		w.next += sparseGrain
		if len(data) < sparseGrain*SectorSize {
			// The disk's short last grain: the file still holds a whole one.
			data = append(data[:len(data):len(data)], make([]byte, sparseGrain*SectorSize-len(data))...)
		}
	}
	w.mu.Unlock()
	if _, err := w.f.WriteAt(data, int64(sec)*SectorSize); err != nil {
		return fmt.Errorf("vmdk: write grain %d: %w", g, err)
	}
	return nil
}

// mergeGrain writes part of a grain: read, merge, write back.
func (w *SparseWriter) mergeGrain(g uint64, data []byte, in int64) error {
	w.rmw.Lock()
	defer w.rmw.Unlock()
	const grain = sparseGrain * SectorSize
	buf := make([]byte, min(grain, w.capacity-int64(g)*grain))
	w.mu.Lock()
	sec := w.gt[g]
	w.mu.Unlock()
	if sec != 0 {
		if err := readFull(w.f, buf, int64(sec)*SectorSize); err != nil {
			return fmt.Errorf("vmdk: read grain %d: %w", g, err)
		}
	}
	copy(buf[in:], data)
	return w.writeGrain(g, buf)
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Close writes the grain directories and tables, the descriptor and the
// header. The file is a complete monolithicSparse VMDK afterwards.
func (w *SparseWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	n := w.h.numGTs()
	gdSects := (n*4 + SectorSize - 1) / SectorSize
	le := binary.LittleEndian
	tables := make([]byte, len(w.gt)*4)
	for i, v := range w.gt {
		le.PutUint32(tables[4*i:], v)
	}
	for _, gdOff := range []uint64{w.h.RGDOffset, w.h.GDOffset} {
		gd := make([]byte, gdSects*SectorSize)
		for i := uint64(0); i < n; i++ {
			le.PutUint32(gd[4*i:], uint32(gdOff+gdSects+i*gtesPerGT*4/SectorSize))
		}
		if _, err := w.f.WriteAt(gd, int64(gdOff)*SectorSize); err != nil {
			return fmt.Errorf("vmdk: write grain directory: %w", err)
		}
		if _, err := w.f.WriteAt(tables, int64(gdOff+gdSects)*SectorSize); err != nil {
			return fmt.Errorf("vmdk: write grain tables: %w", err)
		}
	}
	desc := make([]byte, descriptorSects*SectorSize)
	copy(desc, w.desc)
	if _, err := w.f.WriteAt(desc, SectorSize); err != nil {
		return fmt.Errorf("vmdk: write descriptor: %w", err)
	}
	if _, err := w.f.WriteAt(w.h.encode(), 0); err != nil {
		return fmt.Errorf("vmdk: write header: %w", err)
	}
	return nil
}
