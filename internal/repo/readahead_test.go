package repo

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

// countingBackend counts chunk fetches.
type countingBackend struct {
	storage.Backend
	chunks atomic.Int64
}

func (c *countingBackend) Get(ctx context.Context, name string) ([]byte, error) {
	if strings.HasPrefix(name, "chunks/") {
		c.chunks.Add(1)
	}
	return c.Backend.Get(ctx, name)
}

// openCounted writes a random disk of n chunks and reopens the repository
// through a chunk-counting backend.
func openCounted(t *testing.T, n int) (*DiskReader, *countingBackend, []byte) {
	t.Helper()
	ctx := context.Background()
	r, be := newTestRepo(t, true)
	img := randomBytes(41, n*testCS)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
	cb := &countingBackend{Backend: be}
	r2, err := Open(ctx, cb, "secret", OpenOptions{CacheBytes: 16 * testCS, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r2.Close() })
	d, err := r2.OpenDisk(ctx, m.Disks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, cb, img
}

// TestSmallSequentialReadsDoNotReadAhead: neighbouring small reads (a
// filesystem's metadata) fetch only the chunk they touch; a long stream
// does read ahead.
func TestSmallSequentialReadsDoNotReadAhead(t *testing.T) {
	d, cb, img := openCounted(t, 12)
	buf := make([]byte, 4096)
	for off := int64(0); off < 8*4096; off += 4096 {
		if _, err := d.ReadAt(buf, off); err != nil || !bytes.Equal(buf, img[off:off+4096]) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := cb.chunks.Load(); n != 1 {
		t.Fatalf("8 small sequential reads in one chunk fetched %d chunks, want 1", n)
	}
	big := make([]byte, testCS)
	for off := int64(testCS); off < 3*testCS; off += testCS {
		if _, err := d.ReadAt(big, off); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for cb.chunks.Load() <= 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := cb.chunks.Load(); n <= 3 {
		t.Fatalf("a stream of whole chunks read no chunk ahead (%d fetched)", n)
	}
}

// TestWillNeedFetchesAhead: announced ranges are fetched in the
// background, so reading them fetches nothing more.
func TestWillNeedFetchesAhead(t *testing.T) {
	d, cb, img := openCounted(t, 12)
	d.WillNeed(2*testCS+100, 3*testCS)
	deadline := time.Now().Add(5 * time.Second)
	for cb.chunks.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := cb.chunks.Load(); n != 4 {
		t.Fatalf("WillNeed of 4 chunks fetched %d", n)
	}
	buf := make([]byte, 1000)
	for _, off := range []int64{5*testCS + 50, 2*testCS + 100, 4 * testCS, 3*testCS + 7} {
		if _, err := d.ReadAt(buf, off); err != nil || !bytes.Equal(buf, img[off:off+1000]) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	if n := cb.chunks.Load(); n != 4 {
		t.Fatalf("reading announced chunks fetched %d in all, want 4", n)
	}
}
