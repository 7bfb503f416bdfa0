package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kurabackup/kura/internal/storage"
)

// chunkBufs are the reusable buffers of one chunk reader: the envelope as
// stored and the decrypted payload of a compressed chunk.
type chunkBufs struct {
	env, scratch []byte
}

// readChunk fetches, authenticates and decodes chunk dg into dst[:0],
// reusing b's buffers (backends with storage.BufferGetter read into them).
func (r *Repository) readChunk(ctx context.Context, dg Digest, dst []byte, b *chunkBufs) ([]byte, error) {
	name := chunkName(dg)
	env, err := storage.GetBuffer(ctx, r.be, name, b.env)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", name, ErrMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	b.env = env
	out, scratch, err := r.codec.open(dst, b.scratch, typeChunk, name, env)
	b.scratch = scratch
	return out, err
}

// Stream calls fn for every chunk of the disk in order. Chunks are
// fetched, authenticated and decoded by workers in parallel; at most
// 2×workers chunks are in memory. zero=true means an all-zero chunk (data
// is nil). data is only valid during the call.
func (d *DiskReader) Stream(ctx context.Context, workers int, fn func(off int64, data []byte, zero bool) error) error {
	return d.StreamChunks(ctx, workers, 0, func(off int64, data []byte, zero bool, release func()) error {
		defer release()
		return fn(off, data, zero)
	})
}

type streamResult struct {
	data []byte
	err  error
}

// StreamChunks is Stream for callers that keep chunks after the call (to
// write several at once): fn owns data until it calls release, once, from
// any goroutine. Up to 2×workers + held chunks are in memory; once held
// chunks are out, fetching waits for a release.
func (d *DiskReader) StreamChunks(ctx context.Context, workers, held int, fn func(off int64, data []byte, zero bool, release func()) error) error {
	if workers <= 0 {
		workers = d.r.workers()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	window := 2 * workers
	cs := d.x.ChunkSize
	bufs := newBufPool(cs, window+held)
	type job struct {
		i   int
		buf []byte
		out chan streamResult
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b chunkBufs
			for j := range jobs {
				buf := j.buf
				data, err := d.r.readChunk(ctx, d.x.Digests[j.i], buf[:0], &b)
				if err == nil && len(data) != d.x.ChunkLen(j.i) {
					err = corrupt(chunkName(d.x.Digests[j.i]), "chunk has %d bytes, index expects %d", len(data), d.x.ChunkLen(j.i))
				}
				if err != nil || cap(data) != cs {
					// Failed, or decoded elsewhere than buf.
					bufs.put(buf)
				}
				if err != nil {
					data = nil
				}
				j.out <- streamResult{data: data, err: err}
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
				// Buffers are taken in disk order, so the chunk fn waits
				// for always has one.
				buf, err := bufs.get(ctx)
				if err != nil {
					return
				}
				select {
				case jobs <- job{i, buf, out}:
				case <-ctx.Done():
					bufs.put(buf)
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
	nop := func() {}
	for out := range queue {
		res := <-out
		release := nop
		if res.data != nil && cap(res.data) == cs {
			data := res.data
			release = func() { bufs.put(data) }
		}
		if err == nil {
			off := int64(i) * int64(cs)
			switch {
			case res.err != nil:
				err = res.err
				release()
			case d.x.Digests[i].IsZero():
				err = fn(off, nil, true, nop)
			default:
				err = fn(off, res.data, false, release)
			}
			if err != nil {
				cancel(err)
			}
		} else {
			release()
		}
		i++
	}
	wg.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return err
}
