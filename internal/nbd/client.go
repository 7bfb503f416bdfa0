package nbd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"syscall"
	"time"
)

// Options configures Dial and NewClient.
type Options struct {
	Export       string   // export name ("vda" for libvirt backup exports, "" default)
	MetaContexts []string // e.g. "base:allocation", "qemu:dirty-bitmap:backup-vda"
	Logger       *slog.Logger
	MaxInFlight  int // pipelined requests (default 16)
}

// Client is one NBD connection in transmission phase.
type Client struct {
	conn  net.Conn
	br    *bufio.Reader
	log   *slog.Logger
	info  *exportInfo
	chunk int64 // largest READ/WRITE payload per request
	sem   chan struct{}

	writeMu sync.Mutex

	mu       sync.Mutex
	pending  map[uint64]*request
	next     uint64
	broken   error // set once the connection is unusable
	closing  bool
	inflight sync.WaitGroup

	drain      time.Duration // closeDrain; shorter in tests
	readerDone chan struct{}
	closeOnce  sync.Once
}

// Dial connects to an NBD server ("unix" with a socket path, or "tcp"
// with host:port) and negotiates the export.
//
// A unix socket that refuses the connection is tried again for up to 2 s:
// a server just started (qemu-nbd) creates its socket file when it binds,
// a moment before it listens.
func Dial(ctx context.Context, network, address string, opts Options) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	for deadline := time.Now().Add(2 * time.Second); err != nil && network == "unix" &&
		errors.Is(err, syscall.ECONNREFUSED) && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("nbd: dial %s %s: %w", network, address, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		conn, err = d.DialContext(ctx, network, address)
	}
	if err != nil {
		return nil, fmt.Errorf("nbd: dial %s %s: %w", network, address, err)
	}
	c, err := NewClient(ctx, conn, opts)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// NewClient negotiates over an established connection (any net.Conn,
// e.g. one end of a pipe in tests). On error the caller should close conn
// (it may already be closed if ctx ended).
func NewClient(ctx context.Context, conn net.Conn, opts Options) (*Client, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 16
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	n := &negotiator{rw: conn, log: log}
	info, err := n.run(opts.Export, opts.MetaContexts)
	if !stop() {
		return nil, fmt.Errorf("nbd: negotiation: %w", ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	if err != nil {
		return nil, fmt.Errorf("nbd: negotiating export %q: %w", opts.Export, err)
	}
	c := &Client{
		conn:       conn,
		br:         bufio.NewReaderSize(conn, 256<<10),
		log:        log,
		info:       info,
		chunk:      int64(min(info.maxBlock, defaultMaxBlock)),
		sem:        make(chan struct{}, opts.MaxInFlight),
		pending:    map[uint64]*request{},
		drain:      closeDrain,
		readerDone: make(chan struct{}),
	}
	log.Debug("nbd: connected", "export", opts.Export, "size", info.size, "flags", info.flags,
		"structured", info.structured, "contexts", info.contexts,
		"min_block", info.minBlock, "max_block", info.maxBlock)
	go c.readLoop()
	return c, nil
}

// Size is the export size in bytes.
func (c *Client) Size() int64 { return c.info.size }

// ReadOnly reports whether the server refuses writes.
func (c *Client) ReadOnly() bool { return c.info.flags&tfReadOnly != 0 }

// CanMultiConn reports whether the server allows several connections to
// the export with consistent results.
func (c *Client) CanMultiConn() bool { return c.info.flags&tfCanMultiConn != 0 }

// BlockSizes returns the minimum, preferred and maximum block sizes.
func (c *Client) BlockSizes() (minimum, preferred, maximum uint32) {
	return c.info.minBlock, c.info.prefBlock, c.info.maxBlock
}

// MetaContexts lists the meta contexts the server accepted, sorted.
func (c *Client) MetaContexts() []string {
	out := make([]string, 0, len(c.info.contexts))
	for name := range c.info.contexts {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// request is one command waiting for its reply.
type request struct {
	cmd    uint16
	flags  uint16
	off    int64
	length uint32
	buf    []byte // READ destination, len == length
	ctxID  uint32 // BLOCK_STATUS context wanted

	// filled by the reader goroutine
	mu        sync.Mutex // guards buf against abandonment
	abandoned bool
	released  bool  // c.inflight.Done called (completion or abandonment)
	got       int64 // READ bytes covered by chunks
	extents   []Extent
	gotStatus bool
	srvErr    *ServerError

	done chan struct{}
	err  error
}

func (r *request) op() string { return cmdName(r.cmd) }

// do sends req (with payload for WRITE) and waits for its reply.
func (c *Client) do(ctx context.Context, req *request, payload []byte) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return c.ctxErr(req, ctx)
	}
	defer func() { <-c.sem }()
	if err := ctx.Err(); err != nil {
		return c.ctxErr(req, ctx)
	}
	req.done = make(chan struct{})
	c.mu.Lock()
	if c.broken != nil || c.closing {
		err := c.broken
		if err == nil {
			err = ErrClosed
		}
		c.mu.Unlock()
		return fmt.Errorf("nbd: %s at offset %d: %w", req.op(), req.off, err)
	}
	cookie := c.next
	c.next++
	c.pending[cookie] = req
	c.inflight.Add(1)
	c.mu.Unlock()

	var hdr [requestHeaderLen]byte
	reqHeader{flags: req.flags, cmd: req.cmd, cookie: cookie, off: uint64(req.off), length: req.length}.put(hdr[:])
	if err := c.send(ctx, hdr[:], payload); err != nil {
		c.fail(err)
		<-req.done
		return req.err
	}
	select {
	case <-req.done:
		return req.err
	case <-ctx.Done():
		c.abandon(req)
		return c.ctxErr(req, ctx)
	}
}

func (c *Client) ctxErr(req *request, ctx context.Context) error {
	return fmt.Errorf("nbd: %s at offset %d: %w", req.op(), req.off, ctx.Err())
}

// send writes one request; a cancellation in the middle of a write breaks
// the connection, since a half-sent request cannot be taken back.
func (c *Client) send(ctx context.Context, hdr, payload []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		c.fail(fmt.Errorf("%w: request cancelled while being sent: %w", ErrClosed, ctx.Err()))
	})
	defer stop()
	bufs := net.Buffers{hdr}
	if len(payload) > 0 {
		bufs = append(bufs, payload)
	}
	if _, err := bufs.WriteTo(c.conn); err != nil {
		return fmt.Errorf("%w: sending request: %w", ErrClosed, err)
	}
	return nil
}

// abandon detaches a cancelled request from the caller's buffer. The
// reply is still consumed (and discarded) by the reader goroutine.
func (c *Client) abandon(req *request) {
	if !req.mu.TryLock() {
		// The reader is copying a payload for this request right now;
		// do not wait on a possibly stalled server.
		c.fail(fmt.Errorf("%w: request cancelled while its reply was being read", ErrClosed))
		req.mu.Lock()
	}
	req.abandoned = true
	c.release(req)
	req.mu.Unlock()
}

// release drops req from the count Close waits for; r.mu must be held.
func (c *Client) release(r *request) {
	if !r.released {
		r.released = true
		c.inflight.Done()
	}
}

// fail marks the connection broken and fails every pending request.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.broken == nil {
		if !errors.Is(err, ErrClosed) {
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
		c.broken = err
		if !c.closing {
			c.log.Warn("nbd: connection failed", "err", err)
		}
	}
	err = c.broken
	pend := c.pending
	c.pending = map[uint64]*request{}
	c.mu.Unlock()
	c.conn.Close()
	for _, r := range pend {
		c.finish(r, fmt.Errorf("nbd: %s at offset %d length %d: %w", r.op(), r.off, r.length, err))
	}
}

// finish completes r. Only the goroutine that removed r from c.pending
// may call it. The request is detached from the caller's buffer first.
func (c *Client) finish(r *request, err error) {
	r.mu.Lock()
	r.abandoned = true
	c.release(r)
	r.mu.Unlock()
	r.err = err
	close(r.done)
}

// closeDrain bounds how long Close waits for replies to cancelled requests.
const closeDrain = 2 * time.Second

// Close waits for requests in flight, sends NBD_CMD_DISC and closes the
// connection. Replies to cancelled requests are awaited for at most
// closeDrain.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		broken := c.broken
		c.mu.Unlock()
		c.inflight.Wait()
		for deadline := time.Now().Add(c.drain); time.Now().Before(deadline); {
			c.mu.Lock()
			n := len(c.pending)
			broken = c.broken
			c.mu.Unlock()
			if n == 0 || broken != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if broken == nil {
			var hdr [requestHeaderLen]byte
			reqHeader{cmd: cmdDisc}.put(hdr[:])
			c.writeMu.Lock()
			c.conn.SetWriteDeadline(time.Now().Add(closeDrain))
			_, err = c.conn.Write(hdr[:])
			c.writeMu.Unlock()
			if err != nil {
				err = fmt.Errorf("nbd: sending disconnect: %w", err)
			}
		}
		c.fail(ErrClosed)
		<-c.readerDone
	})
	return err
}
