package nbd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Export is a read-only disk image served by a Server. Implementations
// must be safe for concurrent use.
type Export interface {
	// Size is the export size in bytes.
	Size() int64
	// ReadAt fills p with the bytes at off; the range lies within Size.
	ReadAt(ctx context.Context, p []byte, off int64) error
	// Allocation describes the base:allocation status of the bytes from
	// off: contiguous extents starting at off, with StateHole and
	// StateZero flags. They may cover less than length bytes (at least
	// one) or more (the server clips them).
	Allocation(ctx context.Context, off, length int64) ([]Extent, error)
}

// Prefetcher is implemented by exports that can act on NBD_CMD_CACHE (a
// client's hint that it will read a range soon).
type Prefetcher interface {
	Prefetch(off, length int64)
}

// ServerOptions configure a Server. Zero values mean the defaults.
type ServerOptions struct {
	Logger *slog.Logger
	// MaxConns bounds open connections (default 64).
	MaxConns int
	// MaxRequests bounds the requests of one connection served at once
	// (default 16); the next request is read only when one finishes.
	MaxRequests int
	// BufferBytes bounds the READ buffers of all connections (default
	// 256 MiB).
	BufferBytes int64
	// HandshakeTimeout bounds the negotiation of a connection (default 30 s).
	HandshakeTimeout time.Duration
	// Grace bounds how long a stopping server waits for requests in
	// flight before closing connections (default 5 s).
	Grace time.Duration
}

// ExportStats counts what a server did for one export.
type ExportStats struct {
	Connections int64 `json:"connections"` // open now
	Reads       int64 `json:"reads"`
	BytesRead   int64 `json:"bytes_read"`  // data bytes sent
	BytesHoles  int64 `json:"bytes_holes"` // bytes answered as holes
	Errors      int64 `json:"errors"`
}

// maxServerBlock is the largest READ the server accepts (announced as the
// maximum block size).
const maxServerBlock = 32 << 20

// baseAllocationID is the meta context id of base:allocation.
const baseAllocationID = 1

// ErrServerClosed is returned by Serve once the server has stopped.
var ErrServerClosed = errors.New("nbd: server closed")

type srvExport struct {
	name, desc string
	e          Export
	conns      atomic.Int64
	reads      atomic.Int64
	bytes      atomic.Int64
	holes      atomic.Int64
	errs       atomic.Int64
}

// Server serves read-only exports over the NBD protocol (fixed newstyle
// negotiation, structured replies, base:allocation block status, several
// connections per export). Register exports with AddExport, then call
// Serve for each listener.
type Server struct {
	opts ServerOptions
	log  *slog.Logger
	buf  *budget

	mu      sync.Mutex
	exports map[string]*srvExport
	conns   map[*srvConn]struct{}
}

// NewServer returns a server without exports.
func NewServer(opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 64
	}
	if opts.MaxRequests <= 0 {
		opts.MaxRequests = 16
	}
	if opts.BufferBytes <= 0 {
		opts.BufferBytes = 256 << 20
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 30 * time.Second
	}
	if opts.Grace <= 0 {
		opts.Grace = 5 * time.Second
	}
	return &Server{opts: opts, log: opts.Logger, buf: newBudget(opts.BufferBytes),
		exports: map[string]*srvExport{}, conns: map[*srvConn]struct{}{}}
}

// AddExport registers e under name (at most 4096 bytes; "" is the default
// export). It may be called while serving.
func (s *Server) AddExport(name, description string, e Export) error {
	if len(name) > maxStringLen || len(description) > maxStringLen {
		return fmt.Errorf("nbd: export name or description longer than %d bytes", maxStringLen)
	}
	if e.Size() < 0 {
		return fmt.Errorf("nbd: export %q has negative size", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.exports[name]; ok {
		return fmt.Errorf("nbd: export %q already registered", name)
	}
	s.exports[name] = &srvExport{name: name, desc: description, e: e}
	return nil
}

// Stats returns the counters of every export, by name.
func (s *Server) Stats() map[string]ExportStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]ExportStats, len(s.exports))
	for n, x := range s.exports {
		out[n] = ExportStats{Connections: x.conns.Load(), Reads: x.reads.Load(), BytesRead: x.bytes.Load(),
			BytesHoles: x.holes.Load(), Errors: x.errs.Load()}
	}
	return out
}

func (s *Server) lookup(name string) *srvExport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exports[name]
}

func (s *Server) exportNames() []*srvExport {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*srvExport, 0, len(s.exports))
	for _, x := range s.exports {
		out = append(out, x)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Serve accepts connections on ln until ctx ends, then stops: it closes
// ln, stops reading requests, lets those in flight finish (for at most
// Grace), closes every connection and returns ErrServerClosed. Clients
// see a closed connection, never an error reply, so those that reconnect
// (QEMU) carry on with a server started again on the same address.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// hard ends reads of requests still running after the grace period.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var connWG sync.WaitGroup
	var err error
	for {
		conn, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(aerr, net.ErrClosed) {
				err = fmt.Errorf("nbd: accept: %w", aerr)
				break
			}
			// Out of file descriptors and the like: wait, keep serving.
			s.log.Warn("nbd: accept failed", "err", aerr)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		c := &srvConn{s: s, conn: conn, sem: make(chan struct{}, s.opts.MaxRequests), hard: hard}
		if !s.track(c) {
			s.log.Warn("nbd: connection refused: too many connections", "max", s.opts.MaxConns)
			conn.Close()
			continue
		}
		connWG.Add(1)
		go func() {
			defer connWG.Done()
			defer s.untrack(c)
			c.run(ctx)
		}()
	}
	ln.Close()
	done := make(chan struct{})
	go func() { connWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.opts.Grace):
		s.log.Warn("nbd: requests still running after the grace period: closing connections")
		cancelHard()
		s.closeAll()
		<-done
	}
	if err != nil {
		return err
	}
	return ErrServerClosed
}

func (s *Server) track(c *srvConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) >= s.opts.MaxConns {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *srvConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.conn.Close()
	}
}

// budget bounds the bytes of READ buffers in use.
type budget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	free  int64
	total int64
}

func newBudget(n int64) *budget {
	b := &budget{free: n, total: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *budget) acquire(n int64) int64 {
	n = min(n, b.total)
	b.mu.Lock()
	for b.free < n {
		b.cond.Wait()
	}
	b.free -= n
	b.mu.Unlock()
	return n
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.free += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// bufPools hold READ buffers by power-of-two size class (4 KiB..32 MiB).
var bufPools [14]sync.Pool

func sizeClass(n int) int {
	c := 0
	for size := 4096; size < n; size <<= 1 {
		c++
	}
	return c
}

func getBuf(n int) *[]byte {
	c := sizeClass(n)
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 4096<<c)
	return &b
}

func putBuf(p *[]byte) { bufPools[sizeClass(cap(*p))].Put(p) }
