package repo

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestReadAtContextAndPrefetch(t *testing.T) {
	r, _ := newTestRepo(t, true)
	img := testImage(3, 9*testCS+100)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
	ctx := context.Background()
	d, err := r.OpenDisk(ctx, m.Disks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// Prefetch fills the cache without a read.
	d.Prefetch(2*testCS+1, 3*testCS)
	deadline := time.Now().Add(5 * time.Second)
	for i := 2; i < 6; i++ {
		if d.x.Digests[i].IsZero() {
			continue
		}
		for {
			if _, ok := d.cache.get(d.x.Digests[i]); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("chunk %d not prefetched", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	d.Prefetch(int64(len(img)), 10) // beyond the end: nothing
	p := make([]byte, 4*testCS)
	if n, err := d.ReadAtContext(ctx, p, 2*testCS); err != nil || n != len(p) || !bytes.Equal(p, img[2*testCS:6*testCS]) {
		t.Fatalf("read after prefetch: %d %v", n, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := d.ReadAtContext(cctx, p, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("read with a cancelled context: %v", err)
	}
	// The reader still works for others.
	if _, err := d.ReadAt(p, 0); err != nil || !bytes.Equal(p, img[:4*testCS]) {
		t.Fatalf("read after a cancelled one: %v", err)
	}
}
