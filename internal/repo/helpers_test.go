package repo

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/kurabackup/kura/internal/crypto"
	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/mem"
)

const testCS = 64 << 10

var cheapKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func newTestRepo(t testing.TB, encrypt bool) (*Repository, storage.Backend) {
	t.Helper()
	be := mem.New()
	r, err := Init(context.Background(), be, InitOptions{Password: "secret", ChunkSize: testCS, Encrypt: encrypt, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, be
}

// countingReader counts bytes read through ReadAt.
type countingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// testImage returns size bytes mixing random, text and zero regions.
func testImage(seed uint64, size int) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, size)
	words := []string{"kura ", "backup ", "virtual ", "machine ", "disk ", "chunk ", "\n"}
	for off := 0; off < size; {
		n := min(size-off, 1+rng.IntN(3*testCS))
		switch rng.IntN(3) {
		case 0:
			for i := off; i < off+n; i++ {
				b[i] = byte(rng.Uint32())
			}
		case 1:
			for i := off; i < off+n; {
				i += copy(b[i:off+n], words[rng.IntN(len(words))])
			}
		}
		off += n
	}
	return b
}

// writePoint writes one disk and commits a point.
func writePoint(t testing.TB, r *Repository, src DiskSource) (*Manifest, DiskStats) {
	t.Helper()
	ctx := context.Background()
	w, err := r.NewWriter(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	id, st, err := w.WriteDisk(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &Manifest{VM: VMInfo{Name: "vm1"}, Kind: "full",
		Disks: []DiskEntry{{Target: "vda", Size: src.Size, ChunkSize: r.Config().ChunkSize, Index: id, Stats: st}}}
	if err := w.Commit(ctx, m); err != nil {
		t.Fatal(err)
	}
	return m, st
}

// readBack reads the first disk of point id through ReadAt and Stream and
// checks both against want.
func readBack(t testing.TB, r *Repository, id string, want []byte) {
	t.Helper()
	ctx := context.Background()
	m, err := r.LoadPoint(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.OpenDisk(ctx, m.Disks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Size() != int64(len(want)) {
		t.Fatalf("size %d, want %d", d.Size(), len(want))
	}
	got, err := io.ReadAll(io.NewSectionReader(d, 0, d.Size()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("ReadAt read-back of %s differs", id)
	}
	streamed := make([]byte, len(want))
	err = d.Stream(ctx, 3, func(off int64, data []byte, zero bool) error {
		if !zero {
			copy(streamed[off:], data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(streamed, want) {
		t.Fatalf("Stream read-back of %s differs", id)
	}
}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 9))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// testCodec is a codec keyed with mk (nil: unencrypted) naming with BLAKE3.
func testCodec(mk *crypto.MasterKey, withS2 bool) *codec {
	var keys *crypto.Keys
	if mk != nil {
		keys, _ = crypto.NewKeys(mk)
	}
	ids, _ := crypto.NewDigester(crypto.BLAKE3, mk)
	c, _ := newCodec(keys, ids, withS2)
	return c
}
