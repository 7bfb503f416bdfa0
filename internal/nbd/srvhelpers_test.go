package nbd

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// memExport is an in-memory export made of fixed-size blocks; all-zero
// blocks are reported as holes (like a repository's zero chunks).
type memExport struct {
	data  []byte
	block int64
	zero  []bool
	fail  atomic.Int64 // ReadAt at this offset fails with EIO when > 0
}

// newMemExport builds size bytes with a pseudo-random pattern in the
// blocks for which data(i) is true and zeros elsewhere.
func newMemExport(size, block int64, data func(i int64) bool) *memExport {
	m := &memExport{data: make([]byte, size), block: block}
	rng := rand.New(rand.NewPCG(uint64(size), uint64(block)))
	for i := int64(0); i*block < size; i++ {
		isData := data(i)
		m.zero = append(m.zero, !isData)
		if isData {
			for j := i * block; j < min(size, (i+1)*block); j += 8 {
				v := rng.Uint64()
				for k := int64(0); k < 8 && j+k < size; k++ {
					m.data[j+k] = byte(v >> (8 * k))
				}
			}
		}
	}
	return m
}

func (m *memExport) Size() int64 { return int64(len(m.data)) }

var errInjected = errors.New("injected read failure")

func (m *memExport) ReadAt(ctx context.Context, p []byte, off int64) error {
	if f := m.fail.Load(); f > 0 && off <= f && f < off+int64(len(p)) {
		return errInjected
	}
	copy(p, m.data[off:])
	return nil
}

func (m *memExport) Allocation(ctx context.Context, off, length int64) ([]Extent, error) {
	var out []Extent
	for pos := off; pos < off+length && pos < m.Size(); {
		i := pos / m.block
		end := min((i+1)*m.block, m.Size())
		var fl uint32
		if m.zero[i] {
			fl = StateHole | StateZero
		}
		if n := len(out); n > 0 && out[n-1].Flags == fl {
			out[n-1].Length += end - pos
		} else {
			out = append(out, Extent{Offset: pos, Length: end - pos, Flags: fl})
		}
		pos = end
	}
	return out, nil
}

// wantMap is the base:allocation map a client must see for m.
func (m *memExport) wantMap() []Extent {
	exts, _ := m.Allocation(context.Background(), 0, m.Size())
	return exts
}

// serveTest runs a server with the exports on a fresh unix socket for the
// test's lifetime; stop ends it early (as a restart would).
func serveTest(t testing.TB, exports map[string]Export) (sock string, srv *Server, stop func()) {
	t.Helper()
	dir, err := os.MkdirTemp("", "kura-nbd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock = filepath.Join(dir, "s.sock")
	srv = NewServer(ServerOptions{Logger: testLogger(t), Grace: 2 * time.Second})
	for name, e := range exports {
		if err := srv.AddExport(name, "export "+name, e); err != nil {
			t.Fatal(err)
		}
	}
	stop = startOn(t, srv, sock)
	return sock, srv, stop
}

// startOn serves srv on the unix socket sock until stop is called (or the
// test ends).
func startOn(t testing.TB, srv *Server, sock string) (stop func()) {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	}
	t.Cleanup(stop)
	return stop
}
