package nbd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
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
