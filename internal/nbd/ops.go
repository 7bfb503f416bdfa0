package nbd

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// ReadAt implements io.ReaderAt.
func (c *Client) ReadAt(p []byte, off int64) (int, error) {
	return c.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext reads len(p) bytes at off, splitting into requests of at
// most the server's maximum block size that run in parallel. Reading past
// the end of the export returns the bytes before it and io.EOF.
func (c *Client) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("nbd: read at negative offset %d", off)
	}
	if off >= c.Size() {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := int64(len(p))
	if rem := c.Size() - off; n > rem {
		n = rem
	}
	err := c.split(ctx, off, n, c.chunk, func(ctx context.Context, o, l int64) error {
		return c.readAligned(ctx, p[o-off:o-off+l], o)
	})
	if err != nil {
		return 0, err
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// readAligned reads p at off, widening the request to the server's
// minimum block size when needed.
func (c *Client) readAligned(ctx context.Context, p []byte, off int64) error {
	mb := int64(c.info.minBlock)
	start, end := off, off+int64(len(p))
	if mb > 1 && (start%mb != 0 || end%mb != 0) {
		start -= start % mb
		if r := end % mb; r != 0 {
			end += mb - r
		}
		tmp := make([]byte, end-start)
		if err := c.do(ctx, &request{cmd: cmdRead, off: start, length: uint32(len(tmp)), buf: tmp}, nil); err != nil {
			return err
		}
		copy(p, tmp[off-start:])
		return nil
	}
	return c.do(ctx, &request{cmd: cmdRead, off: off, length: uint32(len(p)), buf: p}, nil)
}

// split runs fn over [off, off+length) in pieces of at most step bytes,
// with up to cap(c.sem) pieces at a time; it returns the first error.
func (c *Client) split(ctx context.Context, off, length, step int64, fn func(ctx context.Context, off, n int64) error) error {
	if length <= step {
		if length == 0 {
			return nil
		}
		return fn(ctx, off, length)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	gate := make(chan struct{}, cap(c.sem))
loop:
	for o := off; o < off+length; o += step {
		n := min(step, off+length-o)
		select {
		case gate <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-gate }()
			if err := fn(ctx, o, n); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return fmt.Errorf("nbd: at offset %d: %w", off, context.Cause(ctx))
	}
	return firstErr
}

func (c *Client) checkWrite(op string, off, length int64) error {
	if c.ReadOnly() {
		return fmt.Errorf("nbd: %s at offset %d: %w: export is read-only", op, off, ErrUnsupported)
	}
	return c.checkRange(op, off, length)
}

func (c *Client) checkRange(op string, off, length int64) error {
	if off < 0 || length < 0 || off > c.Size() || length > c.Size()-off {
		return fmt.Errorf("nbd: %s at offset %d length %d: beyond export size %d", op, off, length, c.Size())
	}
	if mb := int64(c.info.minBlock); mb > 1 && (off%mb != 0 || (length%mb != 0 && off+length != c.Size())) {
		return fmt.Errorf("nbd: %s at offset %d length %d: not aligned to the server's %d byte block", op, off, length, mb)
	}
	return nil
}

// WriteAt writes p at off (NBD_CMD_WRITE), in parallel pieces.
func (c *Client) WriteAt(ctx context.Context, p []byte, off int64) error {
	if err := c.checkWrite("write", off, int64(len(p))); err != nil {
		return err
	}
	return c.split(ctx, off, int64(len(p)), c.chunk, func(ctx context.Context, o, l int64) error {
		return c.do(ctx, &request{cmd: cmdWrite, off: o, length: uint32(l)}, p[o-off:o-off+l])
	})
}

// zeroBuf is shared by the WRITE fallback of WriteZeroes (never written).
var zeroBuf = make([]byte, 1<<20)

// WriteZeroes makes [off, off+length) read as zeros with
// NBD_CMD_WRITE_ZEROES. Unless mayTrim, NBD_CMD_FLAG_NO_HOLE asks the
// server to keep the range allocated. Servers without WRITE_ZEROES get
// plain writes of zeros.
func (c *Client) WriteZeroes(ctx context.Context, off, length int64, mayTrim bool) error {
	if err := c.checkWrite("write zeroes", off, length); err != nil {
		return err
	}
	if c.info.flags&tfWriteZeroes == 0 {
		return c.split(ctx, off, length, int64(len(zeroBuf)), func(ctx context.Context, o, l int64) error {
			return c.do(ctx, &request{cmd: cmdWrite, off: o, length: uint32(l)}, zeroBuf[:l])
		})
	}
	var flags uint16
	if !mayTrim {
		flags = cmdFlagNoHole
	}
	return c.split(ctx, off, length, c.bigStep(), func(ctx context.Context, o, l int64) error {
		return c.do(ctx, &request{cmd: cmdWriteZeroes, flags: flags, off: o, length: uint32(l)}, nil)
	})
}

// bigStep is the piece size for requests without payload.
func (c *Client) bigStep() int64 {
	mb := int64(max(c.info.minBlock, 1))
	return maxLenRequest / mb * mb
}

// Trim tells the server [off, off+length) is no longer needed
// (NBD_CMD_TRIM); the contents become unspecified.
func (c *Client) Trim(ctx context.Context, off, length int64) error {
	if err := c.checkWrite("trim", off, length); err != nil {
		return err
	}
	if c.info.flags&tfSendTrim == 0 {
		return fmt.Errorf("nbd: trim at offset %d: %w", off, ErrUnsupported)
	}
	return c.split(ctx, off, length, c.bigStep(), func(ctx context.Context, o, l int64) error {
		return c.do(ctx, &request{cmd: cmdTrim, off: o, length: uint32(l)}, nil)
	})
}

// Flush asks the server to persist completed writes (NBD_CMD_FLUSH). A
// server that does not announce flush support has nothing to flush, and
// Flush returns nil.
func (c *Client) Flush(ctx context.Context) error {
	if c.info.flags&tfSendFlush == 0 {
		return nil
	}
	return c.do(ctx, &request{cmd: cmdFlush}, nil)
}

// BlockStatus sends one NBD_CMD_BLOCK_STATUS for metaContext over
// [off, off+length) and returns the extents of that context, starting at
// off. The server may describe less than length bytes; extents never go
// past off+length.
func (c *Client) BlockStatus(ctx context.Context, metaContext string, off, length int64) ([]Extent, error) {
	id, ok := c.info.contexts[metaContext]
	if !ok {
		return nil, fmt.Errorf("nbd: block status %q: %w: meta context not negotiated", metaContext, ErrUnsupported)
	}
	if off < 0 || length <= 0 || off >= c.Size() || length > c.Size()-off {
		return nil, fmt.Errorf("nbd: block status at offset %d length %d: outside export of %d bytes", off, length, c.Size())
	}
	end := off + min(length, c.bigStep())
	req := &request{cmd: cmdBlockStatus, off: off, length: uint32(end - off), ctxID: id}
	if err := c.do(ctx, req, nil); err != nil {
		return nil, err
	}
	exts := req.extents
	for i := range exts {
		if exts[i].Offset+exts[i].Length >= end {
			exts[i].Length = end - exts[i].Offset
			exts = exts[:i+1]
			break
		}
	}
	return exts, nil
}

// Map returns the extents of metaContext for the whole export, adjacent
// extents with equal flags merged, contiguous from 0 to Size.
func (c *Client) Map(ctx context.Context, metaContext string) ([]Extent, error) {
	var out []Extent
	for off := int64(0); off < c.Size(); {
		exts, err := c.BlockStatus(ctx, metaContext, off, c.Size()-off)
		if err != nil {
			return nil, err
		}
		if len(exts) == 0 {
			return nil, protoErr("block status at offset %d returned no extents", off)
		}
		for _, e := range exts {
			if n := len(out); n > 0 && out[n-1].Flags == e.Flags {
				out[n-1].Length += e.Length
			} else {
				out = append(out, e)
			}
		}
		last := exts[len(exts)-1]
		off = last.Offset + last.Length
	}
	return out, nil
}
