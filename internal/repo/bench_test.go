package repo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage/local"
)

// benchSize is the image size: KURA_BENCH_MB (default 1024 MiB).
func benchSize() int {
	if v, err := strconv.Atoi(os.Getenv("KURA_BENCH_MB")); err == nil && v > 0 {
		return v << 20
	}
	return 1 << 30
}

func benchChunk() int {
	if v, err := strconv.Atoi(os.Getenv("KURA_BENCH_CHUNK_KB")); err == nil && v > 0 {
		return v << 10
	}
	return DefaultChunkSize
}

var (
	benchImgOnce sync.Once
	benchImg     []byte
)

// mixedImage is half random bytes, half log-like text (micro benchmarks).
func mixedImage() []byte {
	benchImgOnce.Do(func() {
		var buf bytes.Buffer
		writeMixed(&buf, benchSize())
		benchImg = buf.Bytes()
	})
	return benchImg
}

// writeMixed writes n bytes: random, then log-like text (timestamps, ten
// message templates, counters), 4 MiB at a time.
func writeMixed(w io.Writer, n int) {
	rng := rand.New(rand.NewPCG(42, 42))
	piece := make([]byte, 0, 4<<20)
	flush := func(force bool) {
		if len(piece) >= 4<<20 || force {
			_, _ = w.Write(piece)
			piece = piece[:0]
		}
	}
	for i := 0; i < n/2; i += 8 {
		piece = binary.LittleEndian.AppendUint64(piece, rng.Uint64())
		flush(false)
	}
	msgs := []string{"backup of vm %d started", "disk vda: %d extents changed", "connection from 10.0.0.%d accepted",
		"checkpoint kura-%d created", "GET /api/v1/points?vm=%d 200", "worker %d idle", "cache hit ratio %d%%",
		"session %d closed by peer", "fsfreeze thawed after %d ms", "retrying chunk upload, attempt %d"}
	t := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	for i := n / 2; i < n; {
		t = t.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
		line := t.Format("2006-01-02T15:04:05.000Z") + " kura[" + strconv.Itoa(1000+rng.IntN(4)) + "]: " +
			fmt.Sprintf(msgs[rng.IntN(len(msgs))], rng.IntN(300)) + "\n"
		line = line[:min(len(line), n-i)]
		piece = append(piece, line...)
		i += len(line)
		flush(false)
	}
	flush(true)
}

func benchRepo(b *testing.B) *Repository {
	dir := b.TempDir()
	be, err := local.OpenOptions(dir, local.Options{Batch: true, NoSync: os.Getenv("KURA_BENCH_NOSYNC") == "1"})
	if err != nil {
		b.Fatal(err)
	}
	r, err := Init(context.Background(), be, InitOptions{Password: "p", Encrypt: true, KDF: cheapKDF, ChunkSize: benchChunk()})
	if err != nil {
		b.Fatal(err)
	}
	r.Close()
	workers, _ := strconv.Atoi(os.Getenv("KURA_BENCH_WORKERS"))
	r, err = Open(context.Background(), be, "p", OpenOptions{Workers: workers})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

var (
	benchFileOnce sync.Once
	benchFile     *os.File
)

// imageFile holds the mixed image in a temporary file, so the source is
// not on the Go heap and peak RSS reflects the repository code.
func imageFile(b *testing.B) *os.File {
	benchFileOnce.Do(func() {
		f, err := os.CreateTemp("", "kura-bench-*.img")
		if err != nil {
			b.Fatal(err)
		}
		_ = os.Remove(f.Name())
		bw := bufio.NewWriter(f)
		writeMixed(bw, benchSize())
		if err := bw.Flush(); err != nil {
			b.Fatal(err)
		}
		benchFile = f
	})
	return benchFile
}

func ingest(b *testing.B, r *Repository) (string, DiskStats) {
	ctx := context.Background()
	w, err := r.NewWriter(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	id, st, err := w.WriteDisk(ctx, DiskSource{Reader: imageFile(b), Size: int64(benchSize())}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return id, st
}

func BenchmarkIngestMixed(b *testing.B) {
	imageFile(b)
	size := int64(benchSize())
	b.SetBytes(size)
	var st DiskStats
	for b.Loop() {
		b.StopTimer()
		r := benchRepo(b)
		b.StartTimer()
		_, st = ingest(b, r)
	}
	b.ReportMetric(float64(st.BytesStored)/1e6, "MB-stored")
}

func BenchmarkIngestDuplicate(b *testing.B) {
	imageFile(b)
	size := int64(benchSize())
	r := benchRepo(b)
	ingest(b, r)
	b.SetBytes(size)
	for b.Loop() {
		if _, st := ingest(b, r); st.ChunksNew != 0 {
			b.Fatal(fmt.Sprint("duplicate ingest stored ", st.ChunksNew, " chunks"))
		}
	}
}

func BenchmarkReadBack(b *testing.B) {
	imageFile(b)
	size := int64(benchSize())
	r := benchRepo(b)
	id, _ := ingest(b, r)
	ctx := context.Background()
	b.SetBytes(size)
	for b.Loop() {
		d, err := r.OpenDisk(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		var n int64
		err = d.Stream(ctx, 0, func(off int64, data []byte, zero bool) error {
			n += int64(len(data))
			return nil
		})
		if err != nil || n != size {
			b.Fatal(err, n)
		}
	}
}

func BenchmarkReadAtSequential(b *testing.B) {
	imageFile(b)
	size := int64(benchSize())
	r := benchRepo(b)
	id, _ := ingest(b, r)
	ctx := context.Background()
	b.SetBytes(size)
	buf := make([]byte, 1<<20)
	for b.Loop() {
		d, _ := r.OpenDisk(ctx, id)
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := d.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		d.Close()
	}
}
