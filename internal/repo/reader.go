package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kurabackup/kura/internal/storage"
)

const defaultCacheBytes = 64 << 20

// DiskReader gives random access to a disk image of a recovery point. It
// caches decoded chunks (LRU), reads ahead of long sequential reads, and
// fetches what Prefetch (as far as the read-ahead allows, at once) and
// WillNeed (queued, in order) announce; random reads get no read-ahead.
// ReadAt is safe for concurrent use.
type DiskReader struct {
	r      *Repository
	x      *Index
	cache  *chunkCache
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	inflight map[Digest]*fetchCall
	lastEnd  int64
	seqRun   int64         // bytes read sequentially up to lastEnd
	ahead    int           // most chunks to prefetch on sequential access
	sem      chan struct{} // bounds concurrent prefetches
	wanted   chan int      // chunks announced by WillNeed, in order
	wantOnce sync.Once
	recent   [16]int // chunks announced last (no duplicates queued)
	recentN  int
}

type fetchCall struct {
	done chan struct{}
	data []byte
	err  error
}

// OpenDisk opens the disk whose index is indexID.
func (r *Repository) OpenDisk(ctx context.Context, indexID string) (*DiskReader, error) {
	x, err := r.LoadIndex(ctx, indexID)
	if err != nil {
		return nil, err
	}
	return r.openIndex(x), nil
}

func (r *Repository) openIndex(x *Index) *DiskReader {
	cb := r.opts.CacheBytes
	if cb <= 0 {
		cb = defaultCacheBytes
	}
	ahead := int(cb / int64(x.ChunkSize) / 2)
	ahead = max(0, min(ahead, r.workers()))
	ctx, cancel := context.WithCancel(context.Background())
	return &DiskReader{r: r, x: x, cache: newChunkCache(cb), ctx: ctx, cancel: cancel,
		inflight: make(map[Digest]*fetchCall), ahead: ahead, sem: make(chan struct{}, max(1, ahead)), lastEnd: -1}
}

// Size returns the disk size in bytes.
func (d *DiskReader) Size() int64 { return d.x.Size }

// Index returns the disk's index.
func (d *DiskReader) Index() *Index { return d.x }

// Close stops prefetching and drops the cache.
func (d *DiskReader) Close() error {
	d.cancel()
	return nil
}

// fetchChunk fetches, authenticates and decodes chunk digest dg.
func (r *Repository) fetchChunk(ctx context.Context, dg Digest) ([]byte, error) {
	name := chunkName(dg)
	env, err := r.be.Get(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", name, ErrMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return r.codec.openOwned(typeChunk, name, env)
}

// chunk returns the plaintext of chunk i (nil for an all-zero chunk).
func (d *DiskReader) chunk(ctx context.Context, i int) ([]byte, error) {
	dg := d.x.Digests[i]
	if dg.IsZero() {
		return nil, nil
	}
	if b, ok := d.cache.get(dg); ok {
		return b, nil
	}
	d.mu.Lock()
	c, ok := d.inflight[dg]
	if !ok {
		c = &fetchCall{done: make(chan struct{})}
		d.inflight[dg] = c
	}
	d.mu.Unlock()
	if ok {
		select {
		case <-c.done:
			return c.data, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c.data, c.err = d.r.fetchChunk(ctx, dg)
	if c.err == nil && len(c.data) != d.x.ChunkLen(i) {
		c.err = corrupt(chunkName(dg), "chunk has %d bytes, index expects %d", len(c.data), d.x.ChunkLen(i))
	}
	if c.err == nil {
		d.cache.add(dg, c.data)
	}
	d.mu.Lock()
	delete(d.inflight, dg)
	d.mu.Unlock()
	close(c.done)
	return c.data, c.err
}

// fetchAhead fetches chunk i into the cache unless it is there or being
// fetched (a worker never waits for another's fetch).
func (d *DiskReader) fetchAhead(i int) {
	dg := d.x.Digests[i]
	if _, ok := d.cache.get(dg); ok {
		return
	}
	d.mu.Lock()
	_, busy := d.inflight[dg]
	d.mu.Unlock()
	if !busy {
		_, _ = d.chunk(d.ctx, i)
	}
}

// prefetch starts background fetches of chunks [from, from+n).
func (d *DiskReader) prefetch(from, n int) { d.prefetchRange(from, from+n) }

// prefetchRange starts background fetches of chunks [from, to), as many
// as the read-ahead allows at once.
func (d *DiskReader) prefetchRange(from, to int) {
	for i := from; i < to && i < len(d.x.Digests); i++ {
		dg := d.x.Digests[i]
		if dg.IsZero() {
			continue
		}
		if _, ok := d.cache.get(dg); ok {
			continue
		}
		d.mu.Lock()
		_, busy := d.inflight[dg]
		d.mu.Unlock()
		if busy {
			continue
		}
		select {
		case d.sem <- struct{}{}:
		default:
			return // enough prefetches running
		}
		go func(i int) {
			defer func() { <-d.sem }()
			_, _ = d.chunk(d.ctx, i)
		}(i)
	}
}

// WillNeed announces that [off, off+n) will be read soon: its chunks are
// fetched in the background, in the order announced, by as many workers
// as the repository uses, into the cache. Announce no more than half the
// cache (OpenOptions.CacheBytes) ahead of reading, or chunks are evicted
// unused.
func (d *DiskReader) WillNeed(off, n int64) {
	if n <= 0 || off < 0 || off >= d.x.Size {
		return
	}
	d.wantOnce.Do(d.startWanted)
	cs := int64(d.x.ChunkSize)
	for i := off / cs; i <= (min(off+n, d.x.Size)-1)/cs; i++ {
		if d.x.Digests[i].IsZero() || d.announced(int(i)) {
			continue
		}
		select {
		case d.wanted <- int(i):
		case <-d.ctx.Done():
			return
		}
	}
}

// announced reports whether chunk i was announced recently, and records
// it. Announcements of many small files land in the same chunk.
func (d *DiskReader) announced(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, j := range d.recent[:min(d.recentN, len(d.recent))] {
		if j == i {
			return true
		}
	}
	d.recent[d.recentN%len(d.recent)] = i
	d.recentN++
	return false
}

// startWanted starts the workers fetching announced chunks.
func (d *DiskReader) startWanted() {
	d.wanted = make(chan int, max(1, int(d.cache.max/int64(d.x.ChunkSize))))
	for range max(1, d.r.workers()) {
		go func() {
			for {
				select {
				case i := <-d.wanted:
					d.fetchAhead(i)
				case <-d.ctx.Done():
					return
				}
			}
		}()
	}
}

// ReadAt implements io.ReaderAt.
func (d *DiskReader) ReadAt(p []byte, off int64) (int, error) {
	return d.ReadAtContext(d.ctx, p, off)
}
