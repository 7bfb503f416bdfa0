package nbd

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Multi reads a read-only qemu-nbd export (which advertises multi-conn)
// through several connections, concurrently, and gets the image; an
// export without multi-conn (nbdkit's multi-conn filter disabling it) is
// read through its one connection.
func TestMultiQemuNbd(t *testing.T) {
	img := makeQcow2WithBitmap(t)
	needTool(t, "nbdkit")
	raw := filepath.Join(t.TempDir(), "disk.raw")
	run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, raw)
	want, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		cmd   []string
		conns int
	}{
		{"multi-conn", []string{"qemu-nbd", "--socket=SOCK", "--shared=8", "-f", "qcow2", "--persistent", "-r", img}, 4},
		{"single", []string{"nbdkit", "--foreground", "--unix", "SOCK", "--readonly", "--filter=multi-conn",
			"file", raw, "multi-conn-mode=disable"}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			sock := startServer(t, c.cmd[0], c.cmd[1:]...)
			first := dialTest(t, sock, Options{MetaContexts: []string{"base:allocation"}})
			m := DialMore(ctx, first, "unix", sock, Options{Logger: testLogger(t)}, 4)
			defer m.Close()
			if m.Conns() != c.conns {
				t.Fatalf("%d connections, want %d", m.Conns(), c.conns)
			}
			got := make([]byte, m.Size())
			var wg sync.WaitGroup
			const piece = 3 << 20 // not aligned to anything
			for off := int64(0); off < m.Size(); off += piece {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, err := m.ReadAt(got[off:min(off+piece, m.Size())], off)
					if err != nil && err != io.EOF {
						t.Errorf("read at %d: %v (%d bytes)", off, err, n)
					}
				}()
			}
			wg.Wait()
			if !bytes.Equal(got, want) {
				t.Fatal("content read through several connections differs")
			}
		})
	}
}
