package repo

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
)

func TestInfoAndProgress(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, true)
	text := bytes.Repeat([]byte("compressible text line\n"), 4*testCS/23+1)[:4*testCS]
	img := append(text, make([]byte, 2*testCS)...) // 4 text chunks + 2 zero chunks
	w, err := r.NewWriter(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	var last, calls int64
	id, _, err := w.WriteDisk(ctx, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))}, func(done, total int64) {
		if total != int64(len(img)) || done < 0 || done > total {
			t.Errorf("progress %d/%d", done, total)
		}
		last = max(last, done)
		calls++
	})
	if err != nil {
		t.Fatal(err)
	}
	if last != int64(len(img)) || calls != 6 {
		t.Errorf("progress reached %d in %d calls", last, calls)
	}
	for range 2 {
		if err := w.Commit(ctx, &Manifest{Disks: []DiskEntry{{Target: "vda", Size: int64(len(img)), ChunkSize: testCS, Index: id}}}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	in, err := r.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Text repeats with period 23, so windows differ but compress well.
	if in.Points != 2 || in.LogicalBytes != 2*int64(len(img)) || in.ReferencedRaw != 8*testCS {
		t.Errorf("info: %+v", in)
	}
	if in.UniqueRaw != int64(in.Chunks)*testCS || in.DedupRatio < 2 || in.CompressionRatio < 10 {
		t.Errorf("ratios: %+v", in)
	}
}

func TestConcurrentReadAt(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, true)
	img := testImage(30, 10*testCS+99)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
	d, err := r.OpenDisk(ctx, m.Disks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := int64(g * 1000); off < int64(len(img)); off += 7777 {
				buf := make([]byte, 5000)
				n, err := d.ReadAt(buf, off)
				if err != nil && err != io.EOF {
					t.Error(err)
					return
				}
				if !bytes.Equal(buf[:n], img[off:off+int64(n)]) {
					t.Errorf("mismatch at %d", off)
					return
				}
			}
		}()
	}
	wg.Wait()
}
