package repo

import (
	"context"
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/local"
	"github.com/kurabackup/kura/internal/testenv/s3server"
)

// Backend benchmarks: the same work on a local directory and on versitygw
// over loopback (serving a directory on the same disk), side by side:
//
//	go test -run '^$' -bench 'Backend|CopyLocalToS3' -benchtime 1x ./internal/repo
//
// Image size KURA_BENCH_MB (default 1024). S3 runs report the requests of
// a full and of an incremental point (8 changed chunks) per point.

func benchBackends(b *testing.B) map[string]func(b *testing.B) storage.Backend {
	return map[string]func(b *testing.B) storage.Backend{
		"local": func(b *testing.B) storage.Backend {
			be, err := local.OpenOptions(b.TempDir(), local.Options{Batch: true})
			if err != nil {
				b.Fatal(err)
			}
			return be
		},
		"s3": func(b *testing.B) storage.Backend {
			srv := s3server.Start(b)
			be, err := storage.Open(context.Background(), srv.Location(srv.Bucket(b, "bench", false), "repo"), storage.OpenOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return be
		},
	}
}

func benchRepoOn(b *testing.B, be storage.Backend) *Repository {
	r, err := Init(context.Background(), be, InitOptions{Password: "p", Encrypt: true, KDF: cheapKDF, ChunkSize: benchChunk()})
	if err != nil {
		b.Fatal(err)
	}
	r.Close()
	workers, _ := strconv.Atoi(os.Getenv("KURA_BENCH_WORKERS"))
	if r, err = Open(context.Background(), be, "p", OpenOptions{Workers: workers}); err != nil {
		b.Fatal(err)
	}
	return r
}

func reportRequests(b *testing.B, prefix string, m *Manifest) {
	if m == nil || m.Requests == nil {
		return
	}
	q := m.Requests
	b.ReportMetric(float64(q.Put), prefix+"-PUT")
	b.ReportMetric(float64(q.Head), prefix+"-HEAD")
	b.ReportMetric(float64(q.Get), prefix+"-GET")
	b.ReportMetric(float64(q.List), prefix+"-LIST")
}

func BenchmarkBackendIngest(b *testing.B) {
	for _, name := range []string{"local", "s3"} {
		b.Run(name, func(b *testing.B) {
			f := imageFile(b)
			size := int64(benchSize())
			b.SetBytes(size)
			var full, incr *Manifest
			for b.Loop() {
				b.StopTimer()
				r := benchRepoOn(b, benchBackends(b)[name](b))
				b.StartTimer()
				full = commitBench(b, r, DiskSource{Reader: f, Size: size})
				b.StopTimer()
				incr = commitBench(b, r, incrementalSource(b, r, full, f, size))
				b.StartTimer()
			}
			reportRequests(b, "full", full)
			reportRequests(b, "incr", incr)
		})
	}
}

// incrementalSource is the image with 8 windows marked changed (and left
// identical, so they dedup after being read).
func incrementalSource(b *testing.B, r *Repository, parent *Manifest, f io.ReaderAt, size int64) DiskSource {
	x, err := r.LoadIndex(context.Background(), parent.Disks[0].Index)
	if err != nil {
		b.Fatal(err)
	}
	cs := int64(r.Config().ChunkSize)
	var exts []Extent
	for off := int64(0); off < size; off += cs {
		k := ExtentUnchanged
		if (off/cs)%(size/cs/8+1) == 3 {
			k = ExtentData
		}
		exts = append(exts, Extent{Offset: off, Length: min(cs, size-off), Kind: k})
	}
	return DiskSource{Reader: f, Size: size, Extents: exts, Parent: x}
}

func commitBench(b *testing.B, r *Repository, src DiskSource) *Manifest {
	ctx := context.Background()
	w, err := r.NewWriter(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	id, st, err := w.WriteDisk(ctx, src, nil)
	if err != nil {
		b.Fatal(err)
	}
	m := &Manifest{VM: VMInfo{Name: "bench"}, Kind: "full", Disks: []DiskEntry{{Target: "vda", Size: src.Size, ChunkSize: r.Config().ChunkSize, Index: id, Stats: st}}}
	if src.Parent != nil {
		m.Kind = "incremental"
	}
	if err := w.Commit(ctx, m); err != nil {
		b.Fatal(err)
	}
	return m
}

func BenchmarkBackendRead(b *testing.B) {
	for _, name := range []string{"local", "s3"} {
		b.Run(name, func(b *testing.B) {
			f := imageFile(b)
			size := int64(benchSize())
			r := benchRepoOn(b, benchBackends(b)[name](b))
			m := commitBench(b, r, DiskSource{Reader: f, Size: size})
			ctx := context.Background()
			b.SetBytes(size)
			for b.Loop() {
				d, err := r.OpenDisk(ctx, m.Disks[0].Index)
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
		})
	}
}

// BenchmarkCopyLocalToS3 copies one point of the image from a local
// repository into an S3 repository initialised as its copy.
func BenchmarkCopyLocalToS3(b *testing.B) {
	f := imageFile(b)
	size := int64(benchSize())
	bes := benchBackends(b)
	src := benchRepoOn(b, bes["local"](b))
	commitBench(b, src, DiskSource{Reader: f, Size: size})
	ctx := context.Background()
	b.SetBytes(size)
	for b.Loop() {
		b.StopTimer()
		dst, err := Init(ctx, bes["s3"](b), InitOptions{CopyOf: src})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		rep, err := Copy(ctx, src, dst, CopyOptions{})
		if err != nil || rep.Copied != 1 {
			b.Fatal(rep, err)
		}
	}
}
