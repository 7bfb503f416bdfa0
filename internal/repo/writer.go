package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kurabackup/kura/internal/lock"
	"github.com/kurabackup/kura/internal/procinfo"
	"github.com/kurabackup/kura/internal/storage"
)

// ExtentKind says what a disk extent holds relative to the parent index.
type ExtentKind uint8

// Extent kinds (same meaning as hypervisor.ExtentKind).
const (
	ExtentData      ExtentKind = iota // read it
	ExtentZero                        // reads as zeros; not read
	ExtentUnchanged                   // same as in the parent index; not read
	// ExtentUnchangedZero is unchanged since the parent and reads as zeros:
	// a window made only of unchanged extents reuses the parent's digest;
	// in any other window it is filled with zeros. Never read.
	ExtentUnchangedZero
)

// Extent is a byte range of a disk.
type Extent struct {
	Offset, Length int64
	Kind           ExtentKind
}

// DiskSource is a disk image to write.
type DiskSource struct {
	Reader  io.ReaderAt // must allow concurrent ReadAt
	Size    int64
	Extents []Extent // sorted, contiguous, covering [0,Size); nil = all ExtentData
	Parent  *Index   // needed when an extent is ExtentUnchanged
	// ParentRetainUntil is the parent point's RetainUntil (immutable
	// repositories; zero = look the parent point up).
	ParentRetainUntil time.Time
}

// Writer writes disks and commits recovery points. It holds a shared
// "backup" lock for its lifetime. Use one Writer per backup job.
type Writer struct {
	r    *Repository
	lk   *lock.Lock
	gc   *gcView
	mu   sync.Mutex
	seen map[Digest]struct{} // digests known to exist (or being uploaded by us)
	ret  *writerRetention    // immutable repositories only
	reqs storage.RequestStats
	// distrust names objects a verify found missing or corrupt: never
	// reused, stored again when met (which heals every point using them).
	distrust map[string]bool
	// plain and envs are the pipeline's buffers (chunkworker.go), shared
	// by concurrent WriteDisk calls.
	plain, envs *bufPool
	compression Compression
	storing     atomic.Int32   // windows being hashed, compressed and sealed
	idle        func() float64 // the machine's idle CPU share lately (procinfo.IdleSampler)
}

// SetCompression chooses how the chunks this writer stores are compressed
// (default: the repository's OpenOptions.Compression, CompressAuto).
func (w *Writer) SetCompression(c Compression) {
	if c == "" {
		c = CompressAuto
	}
	w.compression = c
}

// Distrust tells the writer which objects (chunk and index names) are
// damaged: a window whose parent chunk is one of them is read again, and
// such an object is stored again whenever this writer produces it — so
// the next backup meeting the same data repairs every point that uses it.
// Call it before WriteDisk.
func (w *Writer) Distrust(objects []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.distrust == nil {
		w.distrust = map[string]bool{}
	}
	for _, o := range objects {
		w.distrust[o] = true
	}
}

func (w *Writer) distrusted(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.distrust[name]
}

// NewWriter takes a shared backup lock and returns a Writer.
func (r *Repository) NewWriter(ctx context.Context, purpose string) (*Writer, error) {
	if err := r.checkWritable(); err != nil {
		return nil, err
	}
	lk, err := lock.Acquire(ctx, r.be, lock.Shared, map[string]string{"purpose": purpose}, r.lockOptions()...)
	if err != nil {
		return nil, fmt.Errorf("take backup lock: %w", err)
	}
	if r.cfg.MAC == "" {
		// A repository made before config MACs: authenticate it now.
		if err := r.writeConfig(ctx); err != nil {
			_ = lk.Release(context.WithoutCancel(ctx))
			return nil, err
		}
		r.log.Info("repository config authenticated", "repository", r.cfg.ID)
	}
	cs, workers := r.cfg.ChunkSize, r.workers()
	w := &Writer{r: r, lk: lk, seen: make(map[Digest]struct{}),
		plain: newBufPool(cs, fetchReaders+workers),
		envs:  newBufPool(envBufSize(cs), workers), idle: procinfo.NewIdleSampler(idlePeriod).Idle}
	w.SetCompression(r.opts.Compression)
	if c, ok := r.be.(storage.Counter); ok {
		w.reqs = c.Requests()
	}
	if w.ret, err = r.newWriterRetention(ctx, time.Now()); err != nil {
		_ = lk.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	// Read the gc markers after the lock is visible, then record what we saw.
	if w.gc, err = r.loadGCView(ctx); err != nil {
		_ = lk.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	if seen := w.gc.seenList(); seen != "" {
		if err := lk.Update(ctx, map[string]string{"purpose": purpose, gcSeenKey: seen}); err != nil {
			_ = lk.Release(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("record gc marker in lock: %w", err)
		}
	}
	return w, nil
}

// Close releases the lock. Data written without Commit stays as
// unreferenced objects until gc removes them.
func (w *Writer) Close() error {
	if w.lk == nil {
		return nil
	}
	err := w.lk.Release(context.Background())
	w.lk = nil
	return err
}

// known reports whether a chunk with digest d exists (or is being
// uploaded by this Writer); otherwise it claims d for upload.
func (w *Writer) known(ctx context.Context, d Digest) (bool, error) {
	w.mu.Lock()
	_, ok := w.seen[d]
	if !ok {
		w.seen[d] = struct{}{}
	}
	w.mu.Unlock()
	if ok {
		return true, nil
	}
	name := chunkName(d)
	if w.distrusted(name) {
		return false, nil // store it again over the damaged object
	}
	if w.gc.isCandidate(name) {
		return false, w.gc.waitGone(ctx, w.r, name)
	}
	fi, err := w.r.be.Stat(ctx, name)
	if err == nil && fi.Size > 0 {
		if err := w.keep(ctx, name, fi.RetainUntil, &d); err != nil {
			w.forget(d)
			return false, err
		}
		return true, nil
	}
	if err == nil {
		// An empty file can only be the remains of a power loss in batch
		// sync mode: store the chunk again.
		return false, nil
	}
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	w.mu.Lock()
	delete(w.seen, d)
	w.mu.Unlock()
	return false, fmt.Errorf("stat %s: %w", name, err)
}

func (w *Writer) markKnown(ds []Digest) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range ds {
		if !d.IsZero() && !w.gc.isCandidate(chunkName(d)) && !w.distrust[chunkName(d)] {
			w.seen[d] = struct{}{}
		}
	}
}

// windowPlan classifies chunk windows from the extent list.
type windowPlan struct {
	extents []Extent
	parent  *Index
}

// segments returns the extents intersecting [a,b), clipped.
func (p *windowPlan) segments(a, b int64) []Extent {
	i := sort.Search(len(p.extents), func(i int) bool { return p.extents[i].Offset+p.extents[i].Length > a })
	var out []Extent
	for ; i < len(p.extents) && p.extents[i].Offset < b; i++ {
		e := p.extents[i]
		s, t := max(e.Offset, a), min(e.Offset+e.Length, b)
		out = append(out, Extent{Offset: s, Length: t - s, Kind: e.Kind})
	}
	return out
}

func normalizeExtents(src *DiskSource, cs int) ([]Extent, error) {
	if src.Extents == nil {
		return []Extent{{0, src.Size, ExtentData}}, nil
	}
	parentOK := src.Parent != nil && src.Parent.ChunkSize == cs && src.Parent.Size == src.Size
	var pos int64
	out := make([]Extent, 0, len(src.Extents))
	for _, e := range src.Extents {
		if e.Offset != pos || e.Length < 0 || e.Kind > ExtentUnchangedZero {
			return nil, fmt.Errorf("extent list is not sorted and contiguous at offset %d", pos)
		}
		if !parentOK {
			e.Kind = withoutParent(e.Kind)
		}
		if e.Length > 0 {
			out = append(out, e)
		}
		pos += e.Length
	}
	if pos != src.Size {
		return nil, fmt.Errorf("extents cover %d bytes, disk has %d", pos, src.Size)
	}
	return out, nil
}

// WriteDisk stores a disk image and its index; it returns the index id.
// Windows entirely unchanged since src.Parent are taken from the parent
// index without reading; zero windows are stored as nothing. Several
// disks may be written at once by one Writer (concurrent calls); they
// share its buffers.
func (w *Writer) WriteDisk(ctx context.Context, src DiskSource, progress func(done, total int64)) (string, DiskStats, error) {
	var st DiskStats
	cs := w.r.cfg.ChunkSize
	if src.Size < 0 || src.Reader == nil {
		return "", st, errors.New("disk source needs a reader and a size")
	}
	if chunkCount(src.Size, cs)*32 > maxPlainLen-1024 {
		return "", st, fmt.Errorf("disk of %d bytes is too large for chunk size %d", src.Size, cs)
	}
	exts, err := normalizeExtents(&src, cs)
	if err != nil {
		return "", st, err
	}
	if hasUnchanged(exts) {
		if ok, err := w.parentUsable(ctx, src.Parent); err != nil {
			return "", st, err
		} else if !ok {
			w.r.log.Warn("parent index no longer in the repository: reading the whole disk")
			for i := range exts {
				exts[i].Kind = withoutParent(exts[i].Kind)
			}
		} else {
			w.markKnown(src.Parent.Digests)
		}
	}
	plan := &windowPlan{extents: exts, parent: src.Parent}
	n := int(chunkCount(src.Size, cs))
	x := &Index{ChunkSize: cs, Size: src.Size, Digests: make([]Digest, n)}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var done atomic.Int64
	var progMu sync.Mutex
	report := func(k int64) {
		d := done.Add(k)
		if progress != nil {
			progMu.Lock()
			progress(d, src.Size)
			progMu.Unlock()
		}
	}
	// Pipeline (chunkworker.go): planner → readers → storers.
	jobs := make(chan int, fetchReaders)
	ready := make(chan window, cap(w.plain.free))
	var readers, storers sync.WaitGroup
	reads := make([]int64, fetchReaders)
	for k := range fetchReaders {
		readers.Add(1)
		go func(read *int64) {
			defer readers.Done()
			for i := range jobs {
				if ctx.Err() != nil {
					continue
				}
				buf, err := w.plain.get(ctx)
				if err != nil {
					cancel(err)
					continue
				}
				a := int64(i) * int64(cs)
				b := min(a+int64(cs), src.Size)
				n, err := readWindow(src.Reader, plan.segments(a, b), a, buf[:b-a])
				*read += n
				if err != nil {
					w.plain.put(buf)
					cancel(err)
					continue
				}
				ready <- window{i: i, a: a, b: b, buf: buf}
			}
		}(&reads[k])
	}
	stats := make([]DiskStats, w.r.workers())
	for k := range stats {
		storers.Add(1)
		go func(ws *DiskStats) {
			defer storers.Done()
			for win := range ready {
				if ctx.Err() != nil {
					w.plain.put(win.buf)
					continue
				}
				busy := w.storing.Add(1)
				cpuBound := w.cpuBound(len(ready), int(busy))
				err := w.store(ctx, win.buf[:win.b-win.a], &x.Digests[win.i], ws, cpuBound, func() {
					w.storing.Add(-1)
					w.plain.put(win.buf)
				})
				if err != nil {
					cancel(err)
					continue
				}
				report(win.b - win.a)
			}
		}(&stats[k])
	}
	var direct DiskStats
	for i := 0; i < n && ctx.Err() == nil; i++ {
		a := int64(i) * int64(cs)
		b := min(a+int64(cs), src.Size)
		segs := plan.segments(a, b)
		if len(segs) == 1 && segs[0].Kind == ExtentZero {
			direct.BytesZero += b - a
			report(b - a)
			continue
		}
		if allUnchanged(segs) {
			d := src.Parent.Digests[i]
			if d.IsZero() {
				direct.BytesZero += b - a
				report(b - a)
				continue
			}
			if name := chunkName(d); !w.gc.isCandidate(name) && !w.distrusted(name) {
				x.Digests[i] = d
				direct.BytesReused += b - a
				direct.ChunksReused++
				report(b - a)
				continue
			}
			// the parent's chunk may be swept by a running gc, or be
			// damaged: read it again
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
	}
	close(jobs)
	readers.Wait()
	close(ready)
	storers.Wait()
	if err := context.Cause(ctx); err != nil {
		return "", st, err
	}
	for _, r := range reads {
		direct.BytesRead += r
	}
	st = direct
	for _, s := range stats {
		st.Add(s)
	}
	if w.ret != nil && hasUnchanged(exts) {
		// Chunks taken from the parent: locked long enough already, or extended.
		pu := src.ParentRetainUntil
		if pu.IsZero() {
			if pu, err = w.r.parentRetention(ctx, w.r.codec.digest(src.Parent.encode()).String()); err != nil {
				return "", st, err
			}
		}
		if err := w.keepReused(ctx, x, pu); err != nil {
			return "", st, err
		}
	} else if err := w.keepReused(ctx, x, time.Time{}); err != nil {
		return "", st, err
	}
	id, stored, err := w.putIndex(ctx, x)
	st.BytesStored += stored
	return id, st, err
}

// idlePeriod is how often a writer samples the machine's idle CPU time.
const idlePeriod = 100 * time.Millisecond

// cpuBound says whether the CPUs are what a backup waits for, so that
// CompressAuto takes the fastest codec: windows are queued behind this
// one, half the CPUs are busy storing, or the machine had less than half
// a CPU idle lately (a hypervisor's NBD export, other backups or other
// work compete for it: reads are then slow because the CPUs are busy).
func (w *Writer) cpuBound(queued, storing int) bool {
	if queued > 0 || storing > max(1, maxProcs()/2) {
		return true
	}
	idle := w.idle()
	return idle >= 0 && idle < 0.5/float64(runtime.NumCPU())
}

func hasUnchanged(exts []Extent) bool {
	for _, e := range exts {
		if e.Kind == ExtentUnchanged || e.Kind == ExtentUnchangedZero {
			return true
		}
	}
	return false
}

// allUnchanged reports whether a window is unchanged since the parent
// throughout, so that the parent's digest can be reused.
func allUnchanged(segs []Extent) bool {
	for _, s := range segs {
		if s.Kind != ExtentUnchanged && s.Kind != ExtentUnchangedZero {
			return false
		}
	}
	return len(segs) > 0
}

// withoutParent is what a kind means when there is no usable parent:
// unchanged data must be read, unchanged zeros are zeros.
func withoutParent(k ExtentKind) ExtentKind {
	switch k {
	case ExtentUnchanged:
		return ExtentData
	case ExtentUnchangedZero:
		return ExtentZero
	}
	return k
}

// parentUsable reports whether the parent index is still stored. Checked
// after the lock and markers are in place: gc deletes an index only after
// its chunks, so a present index that is not a gc candidate has all its
// chunks (candidates are re-read window by window).
func (w *Writer) parentUsable(ctx context.Context, x *Index) (bool, error) {
	name := indexName(w.r.codec.digest(x.encode()).String())
	if w.gc.isCandidate(name) {
		return true, nil
	}
	_, err := w.r.be.Stat(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check parent index: %w", err)
	}
	return true, nil
}

// putIndex stores an index unless an identical one exists.
func (w *Writer) putIndex(ctx context.Context, x *Index) (string, int64, error) {
	plain := x.encode()
	id := w.r.codec.digest(plain).String()
	name := indexName(id)
	if w.gc.isCandidate(name) {
		if err := w.gc.waitGone(ctx, w.r, name); err != nil {
			return "", 0, err
		}
	} else if fi, err := w.r.be.Stat(ctx, name); err == nil && !w.distrusted(name) {
		return id, 0, w.keep(ctx, name, fi.RetainUntil, nil)
	}
	n, err := w.putObject(ctx, typeIndex, name, plain)
	return id, int64(n), err
}

// Commit writes the manifest, making the point visible. It fills m.ID
// (when empty), m.Version and m.Finished (when zero).
func (w *Writer) Commit(ctx context.Context, m *Manifest) error {
	if w.lk == nil {
		return errors.New("writer is closed")
	}
	if err := w.lk.Err(); err != nil {
		// Without a live lock a gc may have swept what this point needs.
		return fmt.Errorf("backup lock lost, point not committed (run the backup again): %w", err)
	}
	m.Version = ManifestVersion
	m.ConfigMAC = w.r.configMAC()
	if m.Started.IsZero() {
		m.Started = time.Now().UTC()
	}
	if m.Finished.IsZero() {
		m.Finished = time.Now().UTC()
	}
	if m.ID == "" {
		m.ID = NewPointID(m.Started)
	}
	if !validPointID(m.ID) {
		return fmt.Errorf("point id %q is not valid", m.ID)
	}
	for _, d := range m.Disks {
		if !validID(d.Index) {
			return fmt.Errorf("disk %s has no valid index id", d.Target)
		}
	}
	if w.ret != nil {
		m.RetainUntil = w.ret.min
		if err := w.keepMeta(ctx); err != nil {
			return err
		}
	}
	if c, ok := w.r.be.(storage.Counter); ok {
		// Requests of this point so far; the manifest's own PUT and syncs follow.
		rs := c.Requests().Sub(w.reqs)
		rs.Put++
		m.Requests = &rs
	}
	plain, err := m.encode()
	if err != nil {
		return err
	}
	// Chunks and indexes must be durable before the manifest that refers
	// to them, and the manifest before the caller drops what the previous
	// point depended on (a checkpoint).
	if err := w.r.syncBackend(ctx); err != nil {
		return err
	}
	if _, err = w.putObject(ctx, typeManifest, pointName(m.ID), plain); err != nil {
		return err
	}
	return w.r.syncBackend(ctx)
}

// syncBackend makes every object put so far durable, for backends that
// defer durability (storage.Syncer).
func (r *Repository) syncBackend(ctx context.Context) error {
	if s, ok := r.be.(storage.Syncer); ok {
		if err := s.Sync(ctx); err != nil {
			return fmt.Errorf("sync repository: %w", err)
		}
	}
	return nil
}
