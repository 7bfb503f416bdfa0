package nbd

import (
	"context"
	"errors"
	"sync/atomic"
)

// Multi reads one export through several connections, as a server that
// advertises NBD_FLAG_CAN_MULTI_CONN allows (QEMU's pull-mode backup
// exports and read-only qemu-nbd do). Each read goes to the connection
// with the fewest bytes in flight, so large sequential reads spread over
// all of them. It is an io.ReaderAt and safe for concurrent use.
type Multi struct {
	conns []*Client
	load  []atomic.Int64 // bytes in flight per connection
	next  atomic.Uint32  // round-robin start among equally loaded ones
}

// DialMore opens up to n-1 more connections to the export c is connected
// to when the server allows several (CanMultiConn), and returns a Multi
// over c and them. Extra connections that fail are left out (logged): c
// alone always works. The extra connections negotiate no meta context;
// use c for block status.
func DialMore(ctx context.Context, c *Client, network, address string, opts Options, n int) *Multi {
	conns := []*Client{c}
	if c.CanMultiConn() {
		opts.MetaContexts = nil
		for len(conns) < n {
			x, err := Dial(ctx, network, address, opts)
			if err != nil {
				c.log.Debug("nbd: extra connection refused; reading with fewer", "have", len(conns), "err", err)
				break
			}
			if x.Size() != c.Size() {
				x.Close()
				break
			}
			conns = append(conns, x)
		}
	}
	return &Multi{conns: conns, load: make([]atomic.Int64, len(conns))}
}

// Conns is the number of connections.
func (m *Multi) Conns() int { return len(m.conns) }

// Size is the export size in bytes.
func (m *Multi) Size() int64 { return m.conns[0].Size() }

// ReadAt implements io.ReaderAt.
func (m *Multi) ReadAt(p []byte, off int64) (int, error) {
	return m.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext reads len(p) bytes at off through the least loaded
// connection (see Client.ReadAtContext).
func (m *Multi) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	i := m.pick()
	m.load[i].Add(int64(len(p)))
	defer m.load[i].Add(-int64(len(p)))
	return m.conns[i].ReadAtContext(ctx, p, off)
}

func (m *Multi) pick() int {
	n := len(m.conns)
	if n == 1 {
		return 0
	}
	start := int(m.next.Add(1)) % n
	best, bestLoad := start, m.load[start].Load()
	for k := 1; k < n && bestLoad > 0; k++ {
		j := (start + k) % n
		if l := m.load[j].Load(); l < bestLoad {
			best, bestLoad = j, l
		}
	}
	return best
}

// Close closes every connection.
func (m *Multi) Close() error {
	var errs []error
	for _, c := range m.conns {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
