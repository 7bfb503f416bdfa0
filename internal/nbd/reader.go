package nbd

import (
	"encoding/binary"
	"fmt"
	"io"
)

// maxStatusPayload bounds one BLOCK_STATUS chunk (1M descriptors).
const maxStatusPayload = 8 << 20

// readLoop demultiplexes replies to pending requests until the
// connection fails.
func (c *Client) readLoop() {
	defer close(c.readerDone)
	for {
		if err := c.readReply(); err != nil {
			c.fail(err)
			return
		}
	}
}

func (c *Client) lookup(cookie uint64, remove bool) *request {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.pending[cookie]
	if r != nil && remove {
		delete(c.pending, cookie)
	}
	return r
}

func (c *Client) readReply() error {
	var h [structHeaderLen]byte
	if _, err := io.ReadFull(c.br, h[:4]); err != nil {
		return fmt.Errorf("reading reply: %w", err)
	}
	switch m := binary.BigEndian.Uint32(h[:4]); m {
	case magicSimpleReply:
		if _, err := io.ReadFull(c.br, h[4:simpleReplyLen]); err != nil {
			return fmt.Errorf("reading reply: %w", err)
		}
		return c.simpleReply(binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint64(h[8:]))
	case magicStructReply:
		if !c.info.structured {
			return protoErr("structured reply without negotiation")
		}
		if _, err := io.ReadFull(c.br, h[4:]); err != nil {
			return fmt.Errorf("reading reply: %w", err)
		}
		return c.structuredChunk(binary.BigEndian.Uint16(h[4:]), binary.BigEndian.Uint16(h[6:]),
			binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint32(h[16:]))
	default:
		return protoErr("bad reply magic %#x", m)
	}
}

func (c *Client) simpleReply(errno uint32, cookie uint64) error {
	r := c.lookup(cookie, true)
	if r == nil {
		return protoErr("reply for unknown cookie %d", cookie)
	}
	if errno != 0 {
		c.finish(r, &ServerError{Op: r.op(), Offset: r.off, Length: int64(r.length), Code: errno, ErrOffset: -1})
		return nil
	}
	switch r.cmd {
	case cmdRead:
		if err := c.readInto(r, 0, int64(r.length)); err != nil {
			c.finish(r, fmt.Errorf("nbd: read at offset %d: %w", r.off, err))
			return err
		}
	case cmdBlockStatus:
		c.finish(r, protoErr("block status at offset %d answered by a simple reply", r.off))
		return nil
	}
	c.finish(r, nil)
	return nil
}

// readInto copies n payload bytes into r.buf[at:], or discards them if
// the request was abandoned.
func (c *Client) readInto(r *request, at, n int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.abandoned {
		_, err := io.CopyN(io.Discard, c.br, n)
		return err
	}
	_, err := io.ReadFull(c.br, r.buf[at:at+n])
	return err
}

func (c *Client) structuredChunk(flags, typ uint16, cookie uint64, length uint32) error {
	done := flags&chunkDone != 0
	r := c.lookup(cookie, done)
	if r == nil {
		return protoErr("reply chunk for unknown cookie %d", cookie)
	}
	err := c.chunkPayload(r, typ, length)
	if err != nil {
		if done || c.lookup(cookie, true) != nil {
			c.finish(r, fmt.Errorf("nbd: %s at offset %d: %w", r.op(), r.off, err))
		}
		return err
	}
	if !done {
		if typ == chunkNone {
			return protoErr("NBD_REPLY_TYPE_NONE without the done flag")
		}
		return nil
	}
	switch {
	case r.srvErr != nil:
		c.finish(r, r.srvErr)
	case r.cmd == cmdRead && r.got != int64(r.length):
		c.finish(r, protoErr("read at offset %d: reply covered %d of %d bytes", r.off, r.got, r.length))
	case r.cmd == cmdBlockStatus && !r.gotStatus:
		c.finish(r, protoErr("block status at offset %d: no extents for the requested context", r.off))
	default:
		c.finish(r, nil)
	}
	return nil
}

// chunkPayload consumes one chunk's payload and records it in r. An
// error return means the stream can no longer be trusted.
func (c *Client) chunkPayload(r *request, typ uint16, length uint32) error {
	switch typ {
	case chunkNone:
		if length != 0 {
			return protoErr("NBD_REPLY_TYPE_NONE with %d byte payload", length)
		}
		return nil
	case chunkOffsetData:
		if r.cmd != cmdRead || length <= 8 {
			return protoErr("data chunk of %d bytes for %s", length, r.op())
		}
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return err
		}
		at, err := r.chunkRange(binary.BigEndian.Uint64(b[:]), uint64(length-8))
		if err != nil {
			return err
		}
		r.got += int64(length - 8)
		return c.readInto(r, at, int64(length-8))
	}
	if typ != chunkOffsetHole && typ != chunkBlockStatus && typ&chunkErrBit == 0 {
		return protoErr("unknown reply chunk type %d", typ)
	}
	limit := uint32(maxStatusPayload)
	if typ != chunkBlockStatus {
		limit = 4 + 2 + maxStringLen + 8
	}
	if length > limit {
		return protoErr("reply chunk type %d of %d bytes", typ, length)
	}
	p := make([]byte, length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return err
	}
	switch typ {
	case chunkOffsetHole:
		return r.applyHole(p)
	case chunkBlockStatus:
		return r.applyStatus(p)
	default:
		se, err := decodeErrorChunk(typ, p)
		if err != nil {
			return err
		}
		se.Op, se.Offset, se.Length = r.op(), r.off, int64(r.length)
		if r.srvErr == nil {
			r.srvErr = se
		}
		return nil
	}
}

// chunkRange checks that [off, off+n) lies inside the request.
func (r *request) chunkRange(off, n uint64) (int64, error) {
	start := uint64(r.off)
	if off < start || n > uint64(r.length) || off-start > uint64(r.length)-n {
		return 0, protoErr("chunk [%d,+%d) outside request [%d,+%d)", off, n, r.off, r.length)
	}
	return int64(off - start), nil
}

func (r *request) applyHole(p []byte) error {
	if r.cmd != cmdRead || len(p) != 12 {
		return protoErr("hole chunk of %d bytes for %s", len(p), r.op())
	}
	n := binary.BigEndian.Uint32(p[8:])
	if n == 0 {
		return protoErr("empty hole chunk")
	}
	at, err := r.chunkRange(binary.BigEndian.Uint64(p), uint64(n))
	if err != nil {
		return err
	}
	r.got += int64(n)
	r.mu.Lock()
	if !r.abandoned {
		clear(r.buf[at : at+int64(n)])
	}
	r.mu.Unlock()
	return nil
}

func (r *request) applyStatus(p []byte) error {
	if r.cmd != cmdBlockStatus {
		return protoErr("block status chunk for %s", r.op())
	}
	id, exts, err := decodeBlockStatus(p, r.off)
	if err != nil {
		return err
	}
	if id != r.ctxID {
		return nil // another negotiated context; not asked for
	}
	if r.gotStatus {
		return protoErr("two block status chunks for one context")
	}
	r.gotStatus = true
	r.extents = exts
	return nil
}

// decodeBlockStatus decodes a BLOCK_STATUS chunk payload: a context id
// followed by (length, flags) descriptors, laid out from offset start.
func decodeBlockStatus(p []byte, start int64) (uint32, []Extent, error) {
	if len(p) < 12 || (len(p)-4)%8 != 0 {
		return 0, nil, protoErr("block status chunk of %d bytes", len(p))
	}
	id := binary.BigEndian.Uint32(p)
	exts := make([]Extent, 0, (len(p)-4)/8)
	off := start
	for d := p[4:]; len(d) > 0; d = d[8:] {
		l := int64(binary.BigEndian.Uint32(d))
		if l == 0 {
			return 0, nil, protoErr("zero-length extent at offset %d", off)
		}
		exts = append(exts, Extent{Offset: off, Length: l, Flags: binary.BigEndian.Uint32(d[4:])})
		off += l
	}
	return id, exts, nil
}

// decodeErrorChunk decodes an error chunk: errno, message length,
// message and (for ERROR_OFFSET) the offending offset.
func decodeErrorChunk(typ uint16, p []byte) (*ServerError, error) {
	if len(p) < 6 {
		return nil, protoErr("error chunk of %d bytes", len(p))
	}
	code := binary.BigEndian.Uint32(p)
	ml := int(binary.BigEndian.Uint16(p[4:]))
	rest := p[6:]
	if ml > len(rest) {
		return nil, protoErr("error message of %d bytes in %d byte chunk", ml, len(p))
	}
	se := &ServerError{Code: code, Message: string(rest[:ml]), ErrOffset: -1}
	rest = rest[ml:]
	switch {
	case typ == chunkErrorOffset && len(rest) == 8:
		se.ErrOffset = int64(binary.BigEndian.Uint64(rest) & (1<<63 - 1))
	case typ == chunkErrorOffset || (typ == chunkError && len(rest) != 0):
		return nil, protoErr("error chunk type %d with %d trailing bytes", typ, len(rest))
	}
	if code == 0 {
		return nil, protoErr("error chunk with error number 0")
	}
	return se, nil
}
