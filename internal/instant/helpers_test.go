package instant

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/nbd"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/storage/local"
	"github.com/kurabackup/kura/internal/storage/mem"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// memRepo is an encrypted in-memory repository with a cheap KDF.
func memRepo(t testing.TB) *repo.Repository {
	t.Helper()
	r, err := repo.Init(context.Background(), mem.New(), repo.InitOptions{Password: "pw", Encrypt: true,
		KDF: repo.KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// dirRepo is an encrypted repository in a local directory, opened with
// the given chunk cache size.
func dirRepo(t testing.TB, dir string, cache int64) *repo.Repository {
	t.Helper()
	ctx := context.Background()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	be, err := local.OpenOptions(dir, local.Options{Batch: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	if _, err := os.Stat(filepath.Join(dir, "config")); err != nil {
		r, err := repo.Init(ctx, be, repo.InitOptions{Password: "pw", Encrypt: true, KDF: repo.KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	r, err := repo.Open(ctx, be, "pw", repo.OpenOptions{CacheBytes: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// writeDisk stores img as the only disk of a new point and returns it.
func writeDisk(t testing.TB, r *repo.Repository, img []byte) *repo.Manifest {
	t.Helper()
	ctx := context.Background()
	w, err := r.NewWriter(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	id, st, err := w.WriteDisk(ctx, repo.DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &repo.Manifest{VM: repo.VMInfo{Name: "vm1", UUID: "a1b2c3d4-0000-4000-8000-000000000001"}, Kind: "full",
		Disks: []repo.DiskEntry{{Target: "vda", Size: int64(len(img)), ChunkSize: r.Config().ChunkSize, Index: id, Stats: st}}}
	if err := w.Commit(ctx, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// mixedImage is size bytes: 4 MiB pieces of random data, log-like text
// and zeros in turn.
func mixedImage(size int) []byte {
	rng := rand.New(rand.NewPCG(9, 9))
	b := make([]byte, size)
	const piece = 4 << 20
	for off := 0; off < size; off += piece {
		end := min(off+piece, size)
		switch (off / piece) % 3 {
		case 0:
			for i := off; i < end; i++ {
				b[i] = byte(rng.Uint32())
			}
		case 1:
			for i := off; i < end; {
				i += copy(b[i:end], "2026-11-25T03:00:00Z kura[42]: chunk stored\n")
			}
		}
	}
	return b
}

// serveDisk serves the point's first disk as export "vda" on a unix
// socket for the test's lifetime.
func serveDisk(t testing.TB, r *repo.Repository, m *repo.Manifest) (string, *nbd.Server) {
	t.Helper()
	d, err := r.OpenDisk(context.Background(), m.Disks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	srv := nbd.NewServer(nbd.ServerOptions{})
	if err := srv.AddExport("vda", "", newDiskExport(d)); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kura-instant-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return sock, srv
}
