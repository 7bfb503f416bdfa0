package nbd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// benchImage is a 1 GiB fully allocated qcow2, kept between runs.
func benchImage(b *testing.B) string {
	needTool(b, "qemu-img", "qemu-io", "qemu-nbd")
	img := filepath.Join(os.TempDir(), "kura-nbd-bench-1g.qcow2")
	if _, err := os.Stat(img); err == nil {
		return img
	}
	tmp := img + ".tmp"
	run(b, "qemu-img", "create", "-q", "-f", "qcow2", tmp, "1G")
	run(b, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 512M", "-c", "write -P 0xa5 512M 512M", tmp)
	if err := os.Rename(tmp, img); err != nil {
		b.Fatal(err)
	}
	return img
}

// BenchmarkReadQcow2 reads a 1 GiB qcow2 through qemu-nbd over a unix
// socket with 4 MiB requests, 1 or 4 in flight, next to nbdcopy.
func BenchmarkReadQcow2(b *testing.B) {
	img := benchImage(b)
	sock := startServer(b, "qemu-nbd", "--socket=SOCK", "--shared=4", "-f", "qcow2", "-r", "--persistent", img)
	const req = 4 << 20
	for _, inflight := range []int{1, 4} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			c := dialTest(b, sock, Options{MaxInFlight: inflight, Logger: nil})
			b.SetBytes(c.Size())
			for b.Loop() {
				var wg sync.WaitGroup
				errs := make(chan error, inflight)
				for w := range inflight {
					wg.Add(1)
					go func() {
						defer wg.Done()
						buf := make([]byte, req)
						for off := int64(w) * req; off < c.Size(); off += int64(inflight) * req {
							if _, err := c.ReadAtContext(context.Background(), buf, off); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("nbdcopy", func(b *testing.B) {
		needTool(b, "nbdcopy")
		b.SetBytes(1 << 30)
		for b.Loop() {
			if out, err := exec.Command("nbdcopy", "nbd+unix:///?socket="+sock, "null:").CombinedOutput(); err != nil {
				b.Fatalf("nbdcopy: %v %s", err, out)
			}
		}
	})
}

// BenchmarkReadMultiConn reads a 1 GiB qcow2 through qemu-nbd (or the
// export at KURA_BENCH_NBD_SOCKET, name KURA_BENCH_NBD_EXPORT: a running
// VM's pull-mode backup export) with 4 MiB reads, 4 at a time, over 1, 2
// or 4 connections (Multi).
func BenchmarkReadMultiConn(b *testing.B) {
	sock, export := os.Getenv("KURA_BENCH_NBD_SOCKET"), os.Getenv("KURA_BENCH_NBD_EXPORT")
	if sock == "" {
		img := benchImage(b)
		sock = startServer(b, "qemu-nbd", "--socket=SOCK", "--shared=8", "-f", "qcow2", "-r", "--persistent", img)
	}
	req, readers := int64(4<<20), 4
	if v, err := strconv.Atoi(os.Getenv("KURA_BENCH_NBD_READERS")); err == nil && v > 0 {
		readers = v
	}
	for _, conns := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			opts := Options{Export: export, MaxInFlight: 32}
			c := dialTest(b, sock, opts)
			m := DialMore(context.Background(), c, "unix", sock, opts, conns)
			b.Cleanup(func() { m.Close() })
			if m.Conns() != conns {
				b.Fatalf("%d connections, want %d", m.Conns(), conns)
			}
			size := min(m.Size(), 1<<30)
			b.SetBytes(size)
			for b.Loop() {
				var wg sync.WaitGroup
				var next atomic.Int64
				errs := make(chan error, readers)
				for range readers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						buf := make([]byte, req)
						for off := next.Add(req) - req; off < size; off = next.Add(req) - req {
							if _, err := m.ReadAtContext(context.Background(), buf, off); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
			}
		})
	}
}
