package nbd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// srvConn is one client connection of a Server.
type srvConn struct {
	s    *Server
	conn net.Conn
	br   *bufio.Reader
	n    *negotiated
	sem  chan struct{} // requests being served
	hard context.Context

	wmu    sync.Mutex
	broken bool
}

func (c *srvConn) run(ctx context.Context) {
	defer c.conn.Close()
	c.br = bufio.NewReaderSize(c.conn, 64<<10)
	c.conn.SetDeadline(time.Now().Add(c.s.opts.HandshakeTimeout))
	// A server stopping during negotiation just hangs up.
	stopNeg := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Now()) })
	g := &srvNegotiator{s: c.s, rw: struct {
		io.Reader
		io.Writer
	}{c.br, c.conn}}
	n, err := g.run()
	if !stopNeg() || err != nil {
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errNegotiationEnded) {
			c.s.log.Debug("nbd: negotiation failed", "remote", c.conn.RemoteAddr(), "err", err)
		}
		return
	}
	c.conn.SetDeadline(time.Time{})
	c.n = n
	n.export.conns.Add(1)
	defer n.export.conns.Add(-1)
	c.s.log.Debug("nbd: client connected", "export", n.export.name, "structured", n.structured, "meta", n.metaID != 0)
	c.transmit(ctx)
}

// transmit reads requests until the client disconnects or ctx ends, then
// waits for the requests in flight to be answered.
func (c *srvConn) transmit(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Now()) })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var hb [requestHeaderLen]byte
	for {
		if _, err := io.ReadFull(c.br, hb[:]); err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) {
				c.s.log.Debug("nbd: reading request", "err", err)
			}
			return
		}
		h, err := decodeReqHeader(hb[:])
		if err != nil {
			c.s.log.Warn("nbd: client sent garbage: closing the connection", "export", c.n.export.name)
			return
		}
		switch h.cmd {
		case cmdDisc:
			return
		case cmdWrite:
			// The payload must be consumed to stay in sync.
			if h.length > maxServerBlock {
				c.s.log.Warn("nbd: oversized write: closing the connection", "length", h.length)
				return
			}
			if _, err := io.CopyN(io.Discard, c.br, int64(h.length)); err != nil {
				return
			}
		}
		c.sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-c.sem }()
			c.serve(h)
		}()
	}
}

// reqError is an error answer to one request.
type reqError struct {
	code uint32
	msg  string
}

func badRequest(format string, args ...any) *reqError {
	return &reqError{code: errEINVAL, msg: fmt.Sprintf(format, args...)}
}

// cmdFlags lists the commands the server knows and their valid flags.
var cmdFlags = map[uint16]uint16{
	cmdRead:        cmdFlagDF | cmdFlagFUA,
	cmdBlockStatus: cmdFlagReqOne,
	cmdFlush:       0,
	cmdCache:       0,
	cmdWrite:       cmdFlagFUA,
	cmdTrim:        cmdFlagFUA,
	cmdWriteZeroes: cmdFlagFUA | cmdFlagNoHole,
}

// checkRequest validates a request against the export and what was
// negotiated. It is pure, for fuzzing.
func checkRequest(h reqHeader, size int64, structured, meta bool) *reqError {
	allowed, ok := cmdFlags[h.cmd]
	if !ok {
		return badRequest("command %d not supported", h.cmd)
	}
	if h.flags&^allowed != 0 {
		return badRequest("flags %#x not valid for %s", h.flags, cmdName(h.cmd))
	}
	switch h.cmd {
	case cmdWrite, cmdTrim, cmdWriteZeroes:
		return &reqError{code: errEPERM, msg: "the export is read-only"}
	case cmdFlush:
		return nil
	case cmdBlockStatus:
		if !structured || !meta {
			return badRequest("block status without a negotiated meta context")
		}
	}
	if h.length == 0 && h.cmd != cmdCache {
		return badRequest("%s of length 0", cmdName(h.cmd))
	}
	if h.off > uint64(size) || uint64(h.length) > uint64(size)-h.off {
		return badRequest("%s at offset %d length %d: beyond the export size %d", cmdName(h.cmd), h.off, h.length, size)
	}
	if h.cmd == cmdRead && h.length > maxServerBlock {
		return badRequest("read of %d bytes: the maximum is %d", h.length, maxServerBlock)
	}
	return nil
}

func (c *srvConn) serve(h reqHeader) {
	x := c.n.export
	if e := checkRequest(h, x.e.Size(), c.n.structured, c.n.metaID != 0); e != nil {
		x.errs.Add(1)
		c.replyError(h, e)
		return
	}
	switch h.cmd {
	case cmdRead:
		c.read(h)
	case cmdBlockStatus:
		c.blockStatus(h)
	case cmdCache:
		if p, ok := x.e.(Prefetcher); ok && h.length > 0 {
			p.Prefetch(int64(h.off), int64(h.length))
		}
		c.send(appendSimpleReply(nil, 0, h.cookie))
	default: // flush: nothing is ever written
		c.send(appendSimpleReply(nil, 0, h.cookie))
	}
}

// send writes one reply (header and payload parts) atomically. A failed
// write closes the connection.
func (c *srvConn) send(parts ...[]byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.broken {
		return
	}
	bufs := net.Buffers(parts)
	if _, err := bufs.WriteTo(c.conn); err != nil {
		c.broken = true
		c.conn.Close()
	}
}

func (c *srvConn) replyError(h reqHeader, e *reqError) {
	if c.n.structured && (h.cmd == cmdRead || h.cmd == cmdBlockStatus) {
		p := appendErrorChunk(nil, e.code, e.msg)
		c.send(appendChunkHeader(nil, chunkDone, chunkError, h.cookie, uint32(len(p))), p)
		return
	}
	c.send(appendSimpleReply(nil, e.code, h.cookie))
}

// exportError turns an error of the export into a reply.
func exportError(op string, off int64, err error) *reqError {
	code := uint32(errEIO)
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno) && errno != 0 && errno < 1<<16:
		code = uint32(errno)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		code = errESHUTDOWN
	}
	return &reqError{code: code, msg: fmt.Sprintf("%s at offset %d: %v", op, off, err)}
}

// allocation returns the merged extents covering exactly [off, off+n).
func (c *srvConn) allocation(off, n int64, whole bool) ([]Extent, error) {
	var out []Extent
	end := off + n
	for pos := off; pos < end; {
		exts, err := c.n.export.e.Allocation(c.hard, pos, end-pos)
		if err != nil {
			return nil, err
		}
		if len(exts) == 0 {
			return nil, fmt.Errorf("export returned no extents at offset %d", pos)
		}
		for _, e := range exts {
			if e.Offset != pos || e.Length <= 0 {
				return nil, fmt.Errorf("export returned extent [%d,+%d) at offset %d", e.Offset, e.Length, pos)
			}
			e.Length = min(e.Length, end-pos)
			e.Flags &= StateHole | StateZero
			if k := len(out); k > 0 && out[k-1].Flags == e.Flags {
				out[k-1].Length += e.Length
			} else {
				out = append(out, e)
			}
			pos += e.Length
			if pos == end {
				break
			}
		}
		if !whole {
			break
		}
	}
	return out, nil
}

func (c *srvConn) read(h reqHeader) {
	x := c.n.export
	off, n := int64(h.off), int64(h.length)
	exts, err := c.allocation(off, n, true)
	if err != nil {
		x.errs.Add(1)
		c.replyError(h, exportError("allocation", off, err))
		return
	}
	granted := c.s.buf.acquire(n)
	defer c.s.buf.release(granted)
	bp := getBuf(int(n))
	defer putBuf(bp)
	buf := *bp
	var data int64
	for _, e := range exts {
		p := buf[e.Offset-off : e.Offset-off+e.Length]
		if e.Flags&StateZero != 0 {
			clear(p)
			continue
		}
		if err := x.e.ReadAt(c.hard, p, e.Offset); err != nil {
			x.errs.Add(1)
			c.replyError(h, exportError("read", e.Offset, err))
			return
		}
		data += e.Length
	}
	x.reads.Add(1)
	x.bytes.Add(data)
	x.holes.Add(n - data)
	switch {
	case !c.n.structured:
		c.send(appendSimpleReply(nil, 0, h.cookie), buf)
	case h.flags&cmdFlagDF != 0 || len(exts) == 1 && exts[0].Flags&StateZero == 0:
		c.send(dataChunk(nil, chunkDone, h.cookie, off, n), buf)
	default:
		parts := make([][]byte, 0, 2*len(exts))
		for i, e := range exts {
			var fl uint16
			if i == len(exts)-1 {
				fl = chunkDone
			}
			if e.Flags&StateZero != 0 {
				hdr := appendChunkHeader(nil, fl, chunkOffsetHole, h.cookie, 12)
				hdr = appendU64(hdr, uint64(e.Offset))
				parts = append(parts, appendU32(hdr, uint32(e.Length)))
				continue
			}
			parts = append(parts, dataChunk(nil, fl, h.cookie, e.Offset, e.Length), buf[e.Offset-off:e.Offset-off+e.Length])
		}
		c.send(parts...)
	}
}

// dataChunk appends the header of an OFFSET_DATA chunk of n bytes at off.
func dataChunk(b []byte, flags uint16, cookie uint64, off, n int64) []byte {
	b = appendChunkHeader(b, flags, chunkOffsetData, cookie, uint32(8+n))
	return appendU64(b, uint64(off))
}

// maxStatusExtents bounds the descriptors of one block status reply.
const maxStatusExtents = 1 << 16

func (c *srvConn) blockStatus(h reqHeader) {
	x := c.n.export
	exts, err := c.allocation(int64(h.off), int64(h.length), false)
	if err != nil {
		x.errs.Add(1)
		c.replyError(h, exportError("block status", int64(h.off), err))
		return
	}
	switch {
	case h.flags&cmdFlagReqOne != 0:
		exts = exts[:1]
	case len(exts) > maxStatusExtents:
		exts = exts[:maxStatusExtents]
	}
	p := appendBlockStatus(nil, c.n.metaID, exts)
	c.send(appendChunkHeader(nil, chunkDone, chunkBlockStatus, h.cookie, uint32(len(p))), p)
}
