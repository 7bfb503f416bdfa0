package nbd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestNbdkitMemoryReadWrite(t *testing.T) {
	needTool(t, "nbdkit")
	sock := startServer(t, "nbdkit", "--foreground", "--unix", "SOCK", "memory", "64M")
	c := dialTest(t, sock, Options{MaxInFlight: 4})
	ctx := context.Background()
	if c.Size() != 64<<20 || c.ReadOnly() {
		t.Fatalf("size %d read-only %v", c.Size(), c.ReadOnly())
	}
	want := make([]byte, c.Size())
	rng := rand.New(rand.NewPCG(1, 2))
	// Writes of odd sizes, including one larger than the 32 MiB request limit.
	for _, w := range []struct{ off, n int64 }{{0, 4096}, {1<<20 + 512, 3 << 20}, {8 << 20, 40 << 20}, {64<<20 - 512, 512}} {
		p := make([]byte, w.n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		if err := c.WriteAt(ctx, p, w.off); err != nil {
			t.Fatal(err)
		}
		copy(want[w.off:], p)
	}
	if err := c.WriteZeroes(ctx, 9<<20, 2<<20, true); err != nil {
		t.Fatal(err)
	}
	clear(want[9<<20 : 11<<20])
	if err := c.WriteZeroes(ctx, 12<<20, 1<<20, false); err != nil {
		t.Fatal(err)
	}
	clear(want[12<<20 : 13<<20])
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); !bytes.Equal(got, want) {
		t.Fatal("read back differs from what was written")
	}
	// Concurrent small reads at random offsets.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			buf := make([]byte, 300000)
			for range 20 {
				off := r.Int64N(c.Size() - int64(len(buf)))
				if _, err := c.ReadAt(buf, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf, want[off:off+int64(len(buf))]) {
					errs <- errors.New("concurrent read mismatch")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// io.ReaderAt contract at the end of the export.
	buf := make([]byte, 1000)
	n, err := c.ReadAt(buf, c.Size()-100)
	if n != 100 || err != io.EOF || !bytes.Equal(buf[:100], want[len(want)-100:]) {
		t.Fatalf("read across end: n=%d err=%v", n, err)
	}
	if err := c.WriteAt(ctx, buf, c.Size()-10); err == nil {
		t.Fatal("write past the end accepted")
	}
	if err := c.Trim(ctx, 0, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadAt(buf, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

func TestNbdkitData(t *testing.T) {
	needTool(t, "nbdkit")
	sock := startServer(t, "nbdkit", "--foreground", "--unix", "SOCK", "data", "1 2 3 @1048576 0xff 0xfe @3000000 9", "size=4M")
	c := dialTest(t, sock, Options{})
	got := readAll(t, c)
	want := make([]byte, 4<<20)
	copy(want, []byte{1, 2, 3})
	copy(want[1048576:], []byte{0xff, 0xfe})
	want[3000000] = 9
	if !bytes.Equal(got, want) {
		t.Fatal("data plugin contents differ")
	}
	// Unaligned small read in the middle.
	p := make([]byte, 3)
	if _, err := c.ReadAt(p, 1048575); err != nil || !bytes.Equal(p, []byte{0, 0xff, 0xfe}) {
		t.Fatalf("read %v err %v", p, err)
	}
}

func TestNbdkitSparseRandomMapAndData(t *testing.T) {
	needTool(t, "nbdkit", "nbdinfo", "nbdcopy")
	sock := startServer(t, "nbdkit", "--foreground", "--unix", "SOCK", "sparse-random", "64M",
		"percent=30", "runlength=262144", "seed=7")
	c := dialTest(t, sock, Options{MetaContexts: []string{"base:allocation", "qemu:dirty-bitmap:none"}})
	if got := c.MetaContexts(); len(got) != 1 || got[0] != "base:allocation" {
		t.Fatalf("negotiated contexts %v", got)
	}
	if _, err := c.Map(context.Background(), "qemu:dirty-bitmap:none"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("map of refused context: %v", err)
	}
	m, err := c.Map(context.Background(), "base:allocation")
	if err != nil {
		t.Fatal(err)
	}
	sameExtents(t, m, nbdinfoMap(t, sock, "base:allocation"))
	if len(m) < 20 {
		t.Fatalf("only %d extents; sparse-random should be fragmented", len(m))
	}
	ref := filepath.Join(t.TempDir(), "ref.raw")
	run(t, "nbdcopy", "nbd+unix:///?socket="+sock, ref)
	want, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); !bytes.Equal(got, want) {
		t.Fatal("export read differs from nbdcopy's copy")
	}
}

func TestNbdkitErrorInjection(t *testing.T) {
	needTool(t, "nbdkit")
	sock := startServer(t, "nbdkit", "--foreground", "--unix", "SOCK", "--filter=error", "memory", "16M",
		"error-pread=EIO", "error-pread-rate=100%", "error-zero=ENOSPC", "error-zero-rate=100%")
	c := dialTest(t, sock, Options{})
	buf := make([]byte, 8192)
	_, err := c.ReadAt(buf, 65536)
	var se *ServerError
	if !errors.Is(err, ErrServer) || !errors.Is(err, syscall.EIO) || !errors.As(err, &se) {
		t.Fatalf("want EIO server error, got %v", err)
	}
	if !strings.Contains(err.Error(), "read at offset 65536") {
		t.Fatalf("error does not name operation and offset: %v", err)
	}
	ctx := context.Background()
	if err := c.WriteZeroes(ctx, 0, 4096, true); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("want ENOSPC from write zeroes, got %v", err)
	}
	// The connection survives server errors.
	if err := c.WriteAt(ctx, buf, 0); err != nil {
		t.Fatal(err)
	}
}

func TestNbdkitCancelAndBrokenConnection(t *testing.T) {
	needTool(t, "nbdkit")
	sock := startServer(t, "nbdkit", "--foreground", "--unix", "SOCK", "--filter=delay", "memory", "16M", "delay-read=3")
	c := dialTest(t, sock, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.ReadAtContext(ctx, make([]byte, 4096), 0)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("cancelled read: %v after %v", err, time.Since(start))
	}
	// A request pending when the connection breaks fails with ErrClosed.
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadAt(make([]byte, 4096), 4096)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	c.conn.Close() // as if the server went away
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "read at offset 4096") {
			t.Fatalf("pending read after break: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("pending read not failed by broken connection")
	}
	if err := c.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("request on broken connection: %v", err)
	}
}

func TestNbdkitTCP(t *testing.T) {
	needTool(t, "nbdkit")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command("nbdkit", "--foreground", "-i", "127.0.0.1", "-p", port,
		"data", "0x42 @4095 0x43", "size=8192")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var c *Client
	for {
		if c, err = Dial(ctx, "tcp", "127.0.0.1:"+port, Options{}); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := make([]byte, 2)
	if _, err := c.ReadAtContext(ctx, p, 4095); err != nil || p[0] != 0x43 || p[1] != 0 {
		t.Fatalf("read %v %v", p, err)
	}
}
