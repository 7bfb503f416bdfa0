package extract

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/kurabackup/kura/internal/fsread"
)

// Reading runs one step ahead of writing: a goroutine reads the files'
// data, in writing order, into a bounded number of buffers, and tells
// Options.WillNeed which volume ranges it reads next.
const (
	segmentSize = 1 << 20  // bytes per read
	inFlight    = 16       // buffers between reader and writer
	hintAhead   = 32 << 20 // bytes of plain extents announced ahead of reading
)

type segment struct {
	off int64
	buf *[]byte
	n   int
	end bool // the file's last segment (n may be 0)
	err error
}

// Data is the content of one file: its size, its extents (bytes outside
// them are holes) and the runs of data, read in order with Next.
type Data struct {
	Size    int64
	Extents []fsread.Extent
	r       *reader
	last    *segment
	done    bool
}

// Next returns the next run of data and its offset in the file; the
// bytes are valid until the next call. It returns io.EOF after the last.
func (d *Data) Next() (int64, []byte, error) {
	if d.last != nil {
		d.r.pool.Put(d.last.buf)
		d.last = nil
	}
	if d.done {
		return 0, nil, io.EOF
	}
	for {
		var s segment
		select {
		case s = <-d.r.ch:
		case <-d.r.ctx.Done():
			return 0, nil, d.r.ctx.Err()
		}
		if s.err != nil {
			d.done = true
			return 0, nil, s.err
		}
		if s.end {
			d.done = true
		}
		if s.n == 0 {
			if s.buf != nil {
				d.r.pool.Put(s.buf)
			}
			if d.done {
				return 0, nil, io.EOF
			}
			continue
		}
		d.last = &s
		return s.off, (*s.buf)[:s.n], nil
	}
}

// drain consumes what a sink left unread of the file.
func (d *Data) drain() error {
	for {
		if _, _, err := d.Next(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// WriteDense writes the whole content to w, holes as zeros.
func (d *Data) WriteDense(w io.Writer) error {
	var pos int64
	zero := make([]byte, 64<<10)
	pad := func(to int64) error {
		for pos < to {
			n := min(int64(len(zero)), to-pos)
			if _, err := w.Write(zero[:n]); err != nil {
				return err
			}
			pos += n
		}
		return nil
	}
	for {
		off, b, err := d.Next()
		if err == io.EOF {
			return pad(d.Size)
		}
		if err != nil {
			return err
		}
		if err := pad(off); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		pos += int64(len(b))
	}
}

type reader struct {
	ctx  context.Context
	ch   chan segment
	pool sync.Pool
	done chan struct{} // closed when the goroutine has returned
}

// startReader reads files' data in order on a goroutine until ctx ends.
func startReader(ctx context.Context, files []*fileItem, opt Options) *reader {
	r := &reader{ctx: ctx, ch: make(chan segment, inFlight), done: make(chan struct{})}
	r.pool.New = func() any { b := make([]byte, segmentSize); return &b }
	go func() {
		defer close(r.done)
		r.run(files, opt)
	}()
	return r
}

func (r *reader) send(s segment) bool {
	select {
	case r.ch <- s:
		return true
	case <-r.ctx.Done():
		return false
	}
}

func (r *reader) run(files []*fileItem, opt Options) {
	h := newHinter(files, opt.WillNeed)
	var plain int64 // bytes of plain extents read so far
	for _, f := range files {
		for _, x := range f.f.Extents() {
			for off := x.Off; off < x.Off+x.Len; {
				if x.Phys >= 0 {
					h.reached(plain)
				}
				buf := r.pool.Get().(*[]byte)
				n := int(min(int64(len(*buf)), x.Off+x.Len-off))
				k, err := f.f.ReadAt((*buf)[:n], off)
				if k < n && err != nil {
					if err == io.EOF {
						err = fmt.Errorf("file shorter than its extents: %w", io.ErrUnexpectedEOF)
					}
					r.send(segment{err: fmt.Errorf("%s: read at %d: %w", fsread.Escape(f.Path), off, err)})
					return
				}
				if !r.send(segment{off: off, buf: buf, n: n}) {
					return
				}
				if x.Phys >= 0 {
					plain += int64(n)
				}
				off += int64(n)
			}
		}
		if !r.send(segment{end: true}) {
			return
		}
		f.f.Close()
	}
}

// hinter announces the plain extents to be read, hintAhead bytes ahead
// of reading, in batches, merging neighbours into one range.
type hinter struct {
	will      func(off, n int64)
	runs      []fsread.Extent // plain extents of all files, in reading order
	next      int             // first run not yet announced
	announced int64           // bytes announced
}

func newHinter(files []*fileItem, will func(off, n int64)) *hinter {
	h := &hinter{will: will}
	if will == nil {
		return h
	}
	for _, f := range files {
		for _, x := range f.f.Extents() {
			if x.Phys >= 0 {
				h.runs = append(h.runs, x)
			}
		}
	}
	return h
}

// reached notes that read bytes of plain extents have been read.
func (h *hinter) reached(read int64) {
	if h.will == nil || h.next == len(h.runs) || h.announced-read > hintAhead*3/4 {
		return
	}
	var start, end int64 = -1, -1
	for h.next < len(h.runs) && h.announced-read < hintAhead {
		x := h.runs[h.next]
		if start >= 0 && x.Phys != end {
			h.will(start, end-start)
			start = -1
		}
		if start < 0 {
			start = x.Phys
		}
		end = x.Phys + x.Len
		h.announced += x.Len
		h.next++
	}
	if start >= 0 {
		h.will(start, end-start)
	}
}
