package repo

import (
	"context"
	"sync"
)

type streamResult struct {
	data []byte
	buf  *[]byte
	err  error
}

// Stream calls fn for every chunk of the disk in order. Chunks are
// fetched, authenticated and decoded by workers in parallel; at most
// 2×workers chunks are in memory. zero=true means an all-zero chunk (data
// is nil). data is only valid during the call.
func (d *DiskReader) Stream(ctx context.Context, workers int, fn func(off int64, data []byte, zero bool) error) error {
	if workers <= 0 {
		workers = d.r.workers()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	window := 2 * workers
	cs := d.x.ChunkSize
	bufs := sync.Pool{New: func() any { b := make([]byte, 0, cs); return &b }}
	type job struct {
		i   int
		out chan streamResult
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var scratch []byte
			for j := range jobs {
				bp := bufs.Get().(*[]byte)
				var res streamResult
				res.buf = bp
				res.data, scratch, res.err = d.r.fetchChunk(ctx, d.x.Digests[j.i], (*bp)[:0], scratch)
				if res.err == nil && len(res.data) != d.x.ChunkLen(j.i) {
					res.err = corrupt(chunkName(d.x.Digests[j.i]), "chunk has %d bytes, index expects %d", len(res.data), d.x.ChunkLen(j.i))
				}
				j.out <- res
			}
		}()
	}
	queue := make(chan chan streamResult, window)
	go func() {
		defer close(jobs)
		defer close(queue)
		for i, dg := range d.x.Digests {
			out := make(chan streamResult, 1)
			if dg.IsZero() {
				out <- streamResult{}
			} else {
				select {
				case jobs <- job{i, out}:
				case <-ctx.Done():
					return
				}
			}
			select {
			case queue <- out:
			case <-ctx.Done():
				return
			}
		}
	}()
	var err error
	i := 0
	for out := range queue {
		res := <-out
		if err == nil {
			off := int64(i) * int64(cs)
			switch {
			case res.err != nil:
				err = res.err
			case d.x.Digests[i].IsZero():
				err = fn(off, nil, true)
			default:
				err = fn(off, res.data, false)
			}
			if err != nil {
				cancel()
			}
		}
		if res.buf != nil {
			if cap(res.data) == cs {
				*res.buf = res.data[:0]
			}
			bufs.Put(res.buf)
		}
		i++
	}
	wg.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return err
}
