package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Digest names a chunk: HMAC-SHA256 of its plaintext under the repository
// MAC key (SHA-256 when unencrypted).
type Digest [32]byte

// ZeroDigest marks an all-zero chunk in an index; no object is stored.
var ZeroDigest Digest

// String returns the hex form.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is the all-zero marker.
func (d Digest) IsZero() bool { return d == ZeroDigest }

func chunkName(d Digest) string {
	h := d.String()
	return "chunks/" + h[:2] + "/" + h
}

func indexName(id string) string { return "indexes/" + id }

// Index is the fixed index of one disk of one recovery point: the digest of
// every chunk-sized window of the disk, in order.
type Index struct {
	ChunkSize int
	Size      int64
	Digests   []Digest
}

// chunkCount returns ceil(size/chunkSize).
func chunkCount(size int64, chunkSize int) int64 {
	return (size + int64(chunkSize) - 1) / int64(chunkSize)
}

// ChunkLen returns the length of chunk i (the last one may be short).
func (x *Index) ChunkLen(i int) int {
	off := int64(i) * int64(x.ChunkSize)
	if rem := x.Size - off; rem < int64(x.ChunkSize) {
		return int(rem)
	}
	return x.ChunkSize
}

const (
	indexMagic      = "KURAIDX1"
	indexVersion    = 1
	indexHeaderSize = 32
)

// encode returns the plaintext form of the index.
func (x *Index) encode() []byte {
	b := make([]byte, 0, indexHeaderSize+32*len(x.Digests)+sha256.Size)
	b = append(b, indexMagic...)
	b = binary.LittleEndian.AppendUint16(b, indexVersion)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(x.ChunkSize))
	b = binary.LittleEndian.AppendUint64(b, uint64(x.Size))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(x.Digests)))
	for i := range x.Digests {
		b = append(b, x.Digests[i][:]...)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// decodeIndex parses the plaintext form of an index; name is used in errors.
func decodeIndex(name string, b []byte) (*Index, error) {
	if len(b) < indexHeaderSize+sha256.Size {
		return nil, corrupt(name, "index of %d bytes is too short", len(b))
	}
	if string(b[:8]) != indexMagic {
		return nil, corrupt(name, "bad index magic")
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != indexVersion {
		return nil, corrupt(name, "unknown index version %d", v)
	}
	if r := binary.LittleEndian.Uint16(b[10:]); r != 0 {
		return nil, corrupt(name, "reserved index field is %d", r)
	}
	cs := binary.LittleEndian.Uint32(b[12:])
	size := binary.LittleEndian.Uint64(b[16:])
	count := binary.LittleEndian.Uint64(b[24:])
	if cs < MinChunkSize || cs > MaxChunkSize || size > 1<<62 {
		return nil, corrupt(name, "index chunk size %d or disk size %d out of bounds", cs, size)
	}
	if count != uint64(chunkCount(int64(size), int(cs))) {
		return nil, corrupt(name, "index has %d entries, a %d byte disk needs %d", count, size, chunkCount(int64(size), int(cs)))
	}
	body := len(b) - sha256.Size
	if uint64(body-indexHeaderSize) != count*32 {
		return nil, corrupt(name, "index length %d does not match %d entries", len(b), count)
	}
	sum := sha256.Sum256(b[:body])
	if !bytes.Equal(sum[:], b[body:]) {
		return nil, corrupt(name, "index checksum mismatch")
	}
	x := &Index{ChunkSize: int(cs), Size: int64(size), Digests: make([]Digest, count)}
	for i := range x.Digests {
		copy(x.Digests[i][:], b[indexHeaderSize+32*i:])
	}
	return x, nil
}

// validID reports whether s is a 64-hex-digit object id.
func validID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func parseDigest(s string) (Digest, error) {
	var d Digest
	if !validID(s) {
		return d, fmt.Errorf("%q is not a 64 hex digit id", s)
	}
	_, err := hex.Decode(d[:], []byte(s))
	return d, err
}
