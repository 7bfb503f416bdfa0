package diskwrite

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
)

// BenchmarkWrite1GiB writes a 1 GiB image, half data and half zeros, in
// 4 MiB chunks from 4 goroutines, and commits it. Run with
// -bench Write1GiB -benchtime 1x; MB/s counts the whole GiB.
func BenchmarkWrite1GiB(b *testing.B) {
	needTools(b)
	const size = 1 << 30
	r := rand.New(rand.NewPCG(7, 8))
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = randBytes(r, chunk)
	}
	for _, tc := range []struct {
		name, format string
		opts         Options
	}{
		{"qcow2", "qcow2", Options{}}, // qemu-nbd --cache=none
		{"qcow2-writeback", "qcow2", Options{Cache: "writeback"}},
		{"raw-pwrite", "raw", Options{}}, // O_DIRECT pwrite
		{"raw-via-nbd", "raw", Options{RawViaNBD: true}},
		{"raw-via-nbd-writeback", "raw", Options{RawViaNBD: true, Cache: "writeback"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				ctx := context.Background()
				path := filepath.Join(b.TempDir(), "bench."+tc.format)
				w, err := Create(ctx, Target{Path: path, Format: tc.format, Size: size}, tc.opts)
				if err != nil {
					b.Fatal(err)
				}
				ch := make(chan int)
				var wg sync.WaitGroup
				for range 4 {
					wg.Go(func() {
						for c := range ch {
							var err error
							if c%2 == 0 {
								err = w.WriteAt(ctx, bufs[c/2%len(bufs)], int64(c)*chunk)
							} else {
								err = w.Zero(ctx, int64(c)*chunk, chunk)
							}
							if err != nil {
								b.Error(err)
							}
						}
					})
				}
				for c := range size / chunk {
					ch <- c
				}
				close(ch)
				wg.Wait()
				if err := w.Commit(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
