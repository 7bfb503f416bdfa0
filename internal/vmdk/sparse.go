package vmdk

import (
	"encoding/binary"
	"fmt"
)

// Sparse extent header (VMware "Virtual Disk Format 5.0", hosted sparse
// extents), 512 bytes, little endian.
const (
	sparseMagic = 0x564d444b // "KDMV"
	headerSize  = 512

	flagNewlineTest   = 1 << 0
	flagRedundantGT   = 1 << 1
	flagZeroGTE       = 1 << 2
	flagCompressed    = 1 << 16
	flagMarkers       = 1 << 17
	compressionNone   = 0
	compressionDeflat = 1

	// gdAtEnd in a header's gdOffset means the grain directory is found
	// through the footer (streamOptimized).
	gdAtEnd = ^uint64(0)

	// gtesPerGT is the only grain table size the format allows.
	gtesPerGT = 512
)

// SparseHeader is a decoded sparse extent header. Sizes and offsets are in
// sectors.
type SparseHeader struct {
	Version           uint32
	Flags             uint32
	Capacity          uint64
	GrainSize         uint64
	DescriptorOffset  uint64
	DescriptorSize    uint64
	NumGTEsPerGT      uint32
	RGDOffset         uint64
	GDOffset          uint64
	OverHead          uint64
	UncleanShutdown   bool
	CompressAlgorithm uint16
}

// Compressed reports whether grains are deflate-compressed (streamOptimized).
func (h *SparseHeader) Compressed() bool { return h.Flags&flagCompressed != 0 }

// ParseSparseHeader decodes and checks a sparse extent header.
func ParseSparseHeader(b []byte) (*SparseHeader, error) {
	if len(b) < headerSize {
		return nil, fmt.Errorf("%w: sparse header of %d bytes", ErrFormat, len(b))
	}
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != sparseMagic {
		return nil, fmt.Errorf("%w: no sparse extent magic (KDMV)", ErrFormat)
	}
	h := &SparseHeader{
		Version: le.Uint32(b[4:]), Flags: le.Uint32(b[8:]), Capacity: le.Uint64(b[12:]), GrainSize: le.Uint64(b[20:]),
		DescriptorOffset: le.Uint64(b[28:]), DescriptorSize: le.Uint64(b[36:]), NumGTEsPerGT: le.Uint32(b[44:]),
		RGDOffset: le.Uint64(b[48:]), GDOffset: le.Uint64(b[56:]), OverHead: le.Uint64(b[64:]),
		UncleanShutdown: b[72] != 0, CompressAlgorithm: le.Uint16(b[77:]),
	}
	switch {
	case h.Version < 1 || h.Version > 3:
		return nil, fmt.Errorf("%w: sparse extent version %d", ErrUnsupported, h.Version)
	case h.Flags&flagNewlineTest != 0 && (b[73] != '\n' || b[74] != ' ' || b[75] != '\r' || b[76] != '\n'):
		return nil, fmt.Errorf("%w: sparse header newline check failed (file transferred in text mode?)", ErrFormat)
	case h.GrainSize < 8 || h.GrainSize > 2048 || h.GrainSize&(h.GrainSize-1) != 0:
		return nil, fmt.Errorf("%w: grain size %d sectors", ErrFormat, h.GrainSize)
	case h.NumGTEsPerGT != gtesPerGT:
		return nil, fmt.Errorf("%w: %d grain table entries per table (want 512)", ErrFormat, h.NumGTEsPerGT)
	case h.Capacity == 0 || h.Capacity > maxCapacity/SectorSize:
		return nil, fmt.Errorf("%w: capacity %d sectors", ErrFormat, h.Capacity)
	case h.DescriptorSize > maxDescriptor/SectorSize:
		return nil, fmt.Errorf("%w: embedded descriptor of %d sectors", ErrFormat, h.DescriptorSize)
	case h.Compressed() && h.CompressAlgorithm != compressionDeflat:
		return nil, fmt.Errorf("%w: compression algorithm %d", ErrUnsupported, h.CompressAlgorithm)
	}
	return h, nil
}

// numGTs is the number of grain tables (grain directory entries).
func (h *SparseHeader) numGTs() uint64 {
	span := h.GrainSize * gtesPerGT
	return (h.Capacity + span - 1) / span
}

// encode writes the header (the inverse of ParseSparseHeader).
func (h *SparseHeader) encode() []byte {
	b := make([]byte, headerSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], sparseMagic)
	le.PutUint32(b[4:], h.Version)
	le.PutUint32(b[8:], h.Flags)
	le.PutUint64(b[12:], h.Capacity)
	le.PutUint64(b[20:], h.GrainSize)
	le.PutUint64(b[28:], h.DescriptorOffset)
	le.PutUint64(b[36:], h.DescriptorSize)
	le.PutUint32(b[44:], h.NumGTEsPerGT)
	le.PutUint64(b[48:], h.RGDOffset)
	le.PutUint64(b[56:], h.GDOffset)
	le.PutUint64(b[64:], h.OverHead)
	if h.UncleanShutdown {
		b[72] = 1
	}
	b[73], b[74], b[75], b[76] = '\n', ' ', '\r', '\n'
	le.PutUint16(b[77:], h.CompressAlgorithm)
	return b
}
