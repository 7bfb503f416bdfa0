package repo

import (
	"context"
	"encoding/binary"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage/local"
)

// countedDisk is a synthetic disk of 64 KiB windows, window w holding the
// number first+w and zeros: every window is a distinct chunk that zstd
// compresses to a few bytes.
type countedDisk struct{ first, windows int64 }

func (c countedDisk) size() int64 { return c.windows * MinChunkSize }

func (c countedDisk) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	for w := off / MinChunkSize; w*MinChunkSize < off+int64(len(p)); w++ {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(c.first+w)+1)
		at := w*MinChunkSize - off
		for i := range b {
			if at+int64(i) >= 0 && at+int64(i) < int64(len(p)) {
				p[at+int64(i)] = b[i]
			}
		}
	}
	return len(p), nil
}

// heapPeak samples the heap in use until stop is called, which returns
// the largest value seen above the heap live when heapPeak was called.
func heapPeak() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	runtime.GC()
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() - min(base, peak.Load()) }
}

// TestScaleMillionChunks (opt-in: KURA_SCALE_CHUNKS=1000000, optional
// KURA_SCALE_DIR for the repository) builds a repository of that many
// 64 KiB chunks in 10 points on the local backend, then runs gc while two
// writers commit points that share chunks with the points being deleted,
// and measures gc and verify: time, the mark phase's bytes per chunk and
// the peak heap. verify --read-data at the end proves that no chunk a
// point references was lost. Not a timed test: it logs the figures
// (docs/benchmarks.md).
func TestScaleMillionChunks(t *testing.T) {
	n, _ := strconv.ParseInt(os.Getenv("KURA_SCALE_CHUNKS"), 10, 64)
	if n <= 0 {
		t.Skip("opt-in: set KURA_SCALE_CHUNKS (e.g. 1000000)")
	}
	dir := os.Getenv("KURA_SCALE_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	be, err := local.OpenOptions(dir, local.Options{Batch: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(ctx, be, InitOptions{Password: "scale", ChunkSize: MinChunkSize, Encrypt: true, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const points = 10
	per := n / points
	start := time.Now()
	var ids []string
	for p := range int64(points) {
		m, _ := writePoint(t, r, DiskSource{Reader: countedDisk{p * per, per}, Size: countedDisk{0, per}.size()})
		ids = append(ids, m.ID)
	}
	t.Logf("built %d chunks in %d points: %s", points*per, points, time.Since(start).Round(time.Second))

	// gc of a repository where nothing is unused: the mark phase alone.
	stop := heapPeak()
	start = time.Now()
	g, err := r.GC(ctx, GCOptions{})
	peak := stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc (nothing to delete): %s, %d referenced chunks, mark set %d bytes = %.1f bytes/chunk, peak heap %d MB (%.0f bytes/chunk)",
		time.Since(start).Round(time.Millisecond), g.ReferencedChunks, g.MarkBytes,
		float64(g.MarkBytes)/float64(g.ReferencedChunks), peak>>20, float64(peak)/float64(g.ReferencedChunks))

	// Concurrent: two writers commit points reusing chunks of the two
	// points deleted, while gc sweeps them.
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range int64(3) {
				// Half from a point being deleted, half new.
				src := countedDisk{int64(w)*per + i*per/8, per / 4}
				writePoint(t, r, DiskSource{Reader: src, Size: src.size()})
			}
		}()
	}
	if _, err := r.DeletePoints(ctx, ids[:2], DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	stop = heapPeak()
	start = time.Now()
	sweeps := 0
	for i := 0; i < 3; i++ {
		g, err = r.GC(ctx, GCOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if g.DeletedChunks > 0 {
			sweeps++
		}
		t.Logf("gc with writers: deferred %v, deleted %d chunks, %d unused, %s", g.Deferred, g.DeletedChunks, g.UnusedChunks, time.Since(start).Round(time.Millisecond))
	}
	wg.Wait()
	g, err = r.GC(ctx, GCOptions{})
	peak = stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc after the writers: deleted %d chunks (%d sweeps during the writes), %s in all, peak heap %d MB",
		g.DeletedChunks, sweeps, time.Since(start).Round(time.Millisecond), peak>>20)

	stop = heapPeak()
	start = time.Now()
	v, err := r.Verify(ctx, VerifyOptions{})
	peak = stop()
	if err != nil || !v.OK() {
		t.Fatalf("verify: %v %+v", err, v.Problems)
	}
	t.Logf("verify: %d chunks, %s, peak heap %d MB (%.0f bytes/chunk)", v.Chunks, time.Since(start).Round(time.Millisecond),
		peak>>20, float64(peak)/float64(v.Chunks))
	stop = heapPeak()
	start = time.Now()
	v, err = r.Verify(ctx, VerifyOptions{ReadData: true})
	peak = stop()
	if err != nil || !v.OK() {
		t.Fatalf("verify --read-data: %v %+v", err, v.Problems)
	}
	t.Logf("verify --read-data: %d chunks read, %s, peak heap %d MB", v.ChunksRead, time.Since(start).Round(time.Millisecond), peak>>20)
}
