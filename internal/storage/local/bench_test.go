package local

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

func benchPut(b *testing.B, opts Options) {
	be, err := OpenOptions(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := be.Put(ctx, fmt.Sprintf("chunks/%02x/%08x", i%256, i), data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPut4MiBSync(b *testing.B)   { benchPut(b, Options{}) }
func BenchmarkPut4MiBNoSync(b *testing.B) { benchPut(b, Options{NoSync: true}) }

func BenchmarkGet4MiB(b *testing.B) {
	be, err := OpenOptions(b.TempDir(), Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const n = 16
	for i := range n {
		if err := be.Put(ctx, fmt.Sprintf("chunks/%02x/%08x", i, i), make([]byte, 4<<20)); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(4 << 20)
	for i := 0; b.Loop(); i++ {
		if _, err := be.Get(ctx, fmt.Sprintf("chunks/%02x/%08x", i%n, i%n)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPut4MiBSyncParallel shows how concurrent writers (as the backup
// pipeline uses) amortise fsync latency.
func BenchmarkPut4MiBSyncParallel(b *testing.B) {
	be, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 4<<20)
	var n atomic.Int64
	b.SetBytes(int64(len(data)))
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := be.Put(context.Background(), fmt.Sprintf("chunks/%02x/%08x", i%256, i), data); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
