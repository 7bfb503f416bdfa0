package instant

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kurabackup/kura/internal/nbd"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/testenv"
)

// benchPoint is a 1 GiB point (half random bytes, half log text, no zero
// chunk) in a repository kept under the temporary directory between runs.
func benchPoint(b *testing.B, cache int64) (*repo.Repository, *repo.Manifest) {
	dir := filepath.Join(os.TempDir(), "kura-instant-bench-repo")
	fresh := false
	if _, err := os.Stat(filepath.Join(dir, "config")); err != nil {
		os.RemoveAll(dir)
		fresh = true
	}
	r := dirRepo(b, dir, cache)
	ctx := context.Background()
	if !fresh {
		if ps, err := r.ListPoints(ctx); err == nil && len(ps) == 1 {
			return r, ps[0]
		}
	}
	const size = 1 << 30
	img := make([]byte, size)
	for i := 0; i < size/2; i += 32 {
		s := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(i)))
		copy(img[i:], s[:])
	}
	for i := size / 2; i < size; {
		i += copy(img[i:], fmt.Sprintf("2026-11-25T03:%02d:%02dZ kura[%d]: chunk %d stored\n", i%60, i%59, i%7, i))
	}
	return r, writeDisk(b, r, img)
}

func serveBench(b *testing.B, d *repo.DiskReader) string {
	srv := nbd.NewServer(nbd.ServerOptions{})
	if err := srv.AddExport("", "", newDiskExport(d)); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, ln); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return sock
}

func nbdcopyNull(b *testing.B, sock string) {
	if out, err := exec.Command("nbdcopy", "nbd+unix:///?socket="+sock, "null:").CombinedOutput(); err != nil {
		b.Fatalf("nbdcopy: %v %s", err, out)
	}
}

// BenchmarkServeNbdcopy copies a served 1 GiB point to null: with nbdcopy
// (its defaults: 4 connections, 256 KiB requests): "cached" with every
// chunk already decoded in the reader's cache, "uncached" from a fresh
// reader (chunks fetched, authenticated, decrypted and decompressed on
// demand with read-ahead; the chunk files are in the page cache).
func BenchmarkServeNbdcopy(b *testing.B) {
	testenv.NeedTool(b, "nbdcopy")
	b.Run("cached", func(b *testing.B) {
		r, m := benchPoint(b, 2<<30)
		d, err := r.OpenDisk(context.Background(), m.Disks[0].Index)
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		sock := serveBench(b, d)
		nbdcopyNull(b, sock) // fill the cache
		b.SetBytes(m.Disks[0].Size)
		for b.Loop() {
			nbdcopyNull(b, sock)
		}
	})
	b.Run("uncached", func(b *testing.B) {
		r, m := benchPoint(b, ServeCacheBytes)
		b.SetBytes(m.Disks[0].Size)
		for b.Loop() {
			b.StopTimer()
			d, err := r.OpenDisk(context.Background(), m.Disks[0].Index)
			if err != nil {
				b.Fatal(err)
			}
			sock := serveBench(b, d)
			b.StartTimer()
			nbdcopyNull(b, sock)
			d.Close()
		}
	})
}
