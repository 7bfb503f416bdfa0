package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

// ErrStillLocked means a point cannot be deleted yet: its retention in an
// immutable repository has not expired.
var ErrStillLocked = errors.New("locked by the repository's immutability period")

// Immutability is the policy of an immutable repository (config field
// "immutable"): every object a point references is retained by the store
// until at least the point's start + Retain.
type Immutability struct {
	RetainSeconds int64 `json:"retain_seconds"`
	// SlackSeconds: objects are locked Retain + Slack ahead, so that the
	// next points within Slack need no retention extension at all.
	SlackSeconds int64 `json:"slack_seconds"`
}

// Retain is the immutability period.
func (im *Immutability) Retain() time.Duration { return time.Duration(im.RetainSeconds) * time.Second }

// Slack is how far beyond the period objects are locked.
func (im *Immutability) Slack() time.Duration { return time.Duration(im.SlackSeconds) * time.Second }

// DefaultSlack is the slack for a period: a quarter of it, at most 7 days.
func DefaultSlack(retain time.Duration) time.Duration {
	return min(retain/4, 7*24*time.Hour)
}

// retainer returns the backend's retention support, checking that the
// store can lock objects.
func retainer(ctx context.Context, be storage.Backend) (storage.Retainer, error) {
	rt, ok := be.(storage.Retainer)
	if !ok {
		return nil, fmt.Errorf("%s cannot lock objects: an immutable repository needs an S3 bucket with Object Lock", be.Location())
	}
	ok, err := rt.RetentionSupported(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s: the bucket has no Object Lock: create it with Object Lock enabled (versioning on, no default retention)", be.Location())
	}
	return rt, nil
}

// writerRetention is what a Writer of an immutable repository keeps.
type writerRetention struct {
	rt    storage.Retainer
	need  time.Time // start + period: every referenced object must be locked at least until then
	until time.Time // need + slack: the date new objects and extensions get

	mu      sync.Mutex
	min     time.Time           // the earliest date any referenced object is known to have
	trusted map[Digest]struct{} // chunks whose date this writer set or checked
}

func (r *Repository) newWriterRetention(ctx context.Context, start time.Time) (*writerRetention, error) {
	im := r.cfg.Immutable
	if im == nil {
		return nil, nil
	}
	rt, err := retainer(ctx, r.be)
	if err != nil {
		return nil, err
	}
	need := start.Add(im.Retain()).UTC().Truncate(time.Second).Add(time.Second)
	until := need.Add(im.Slack())
	return &writerRetention{rt: rt, need: need, until: until, min: until, trusted: map[Digest]struct{}{}}, nil
}

// note records that an object referenced by the point is locked until t.
func (wr *writerRetention) note(t time.Time, d *Digest) {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if t.Before(wr.min) {
		wr.min = t
	}
	if d != nil {
		wr.trusted[*d] = struct{}{}
	}
}

// put stores a new object, locked until wr.until, in the same request.
func (w *Writer) put(ctx context.Context, name string, data []byte) error {
	if w.ret == nil {
		return w.r.be.Put(ctx, name, data)
	}
	err := w.ret.rt.PutRetained(ctx, name, data, w.ret.until)
	if errors.Is(err, storage.ErrRetained) {
		// A retried PUT whose first attempt went through, or an object of
		// the same name (same content) stored meanwhile: fine if locked
		// long enough.
		if oi, serr := w.r.be.Stat(ctx, name); serr == nil && !oi.RetainUntil.Before(w.ret.need) {
			return nil
		}
	}
	return err
}

// keep makes sure an existing object the point references is locked long
// enough, extending its retention when it is not (current is its date from
// Stat). d is the chunk's digest, nil for an index.
func (w *Writer) keep(ctx context.Context, name string, current time.Time, d *Digest) error {
	wr := w.ret
	if wr == nil {
		return nil
	}
	if !current.Before(wr.need) {
		wr.note(current, d)
		return nil
	}
	if err := wr.rt.ExtendRetention(ctx, name, wr.until); err != nil {
		return fmt.Errorf("extend retention of %s: %w", name, err)
	}
	wr.note(wr.until, d)
	return nil
}

// keepReused extends the retention of the chunks of x that this writer
// took from the parent index without looking at them, unless the parent
// point's objects are already locked long enough (parentUntil).
func (w *Writer) keepReused(ctx context.Context, x *Index, parentUntil time.Time) error {
	wr := w.ret
	if wr == nil {
		return nil
	}
	var todo []Digest
	wr.mu.Lock()
	seen := map[Digest]bool{}
	for _, d := range x.Digests {
		if _, ok := wr.trusted[d]; !ok && !d.IsZero() && !seen[d] {
			seen[d] = true
			todo = append(todo, d)
		}
	}
	wr.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	if !parentUntil.Before(wr.need) {
		wr.note(parentUntil, nil)
		return nil
	}
	jobs := make(chan Digest)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range w.r.ioWorkers() {
		wg.Go(func() {
			for d := range jobs {
				if err := w.keep(ctx, chunkName(d), time.Time{}, &d); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for _, d := range todo {
		jobs <- d
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// parentRetention is the retain_until of the newest point whose disks
// include index id (zero when none is found among the newest 100).
func (r *Repository) parentRetention(ctx context.Context, id string) (time.Time, error) {
	ids, err := r.PointIDs(ctx)
	if err != nil {
		return time.Time{}, err
	}
	for i := len(ids) - 1; i >= 0 && i >= len(ids)-100; i-- {
		m, err := r.loadManifest(ctx, ids[i])
		if err != nil {
			continue
		}
		for _, d := range m.Disks {
			if d.Index == id {
				return m.RetainUntil, nil
			}
		}
	}
	return time.Time{}, nil
}

// ioWorkers is the parallelism of work bound by request latency.
func (r *Repository) ioWorkers() int { return max(r.workers(), 16) }

// lockedUntil reports whether point id of an immutable repository is
// still locked (its manifest's retention is in the future), and until when.
func (r *Repository) lockedUntil(ctx context.Context, id string) (time.Time, bool) {
	if r.cfg.Immutable == nil {
		return time.Time{}, false
	}
	oi, err := r.be.Stat(ctx, pointName(id))
	if err != nil {
		return time.Time{}, false // the deletion reports it
	}
	return oi.RetainUntil, oi.RetainUntil.After(time.Now())
}

// RetentionProblem is a referenced object locked for less time than the
// policy asks.
type RetentionProblem struct {
	Object      string    `json:"object"`
	RetainUntil time.Time `json:"retain_until"` // zero: not locked at all
	Need        time.Time `json:"need"`         // point start + period, over the points referencing it
}

// verifyRetention checks, for an immutable repository, that every object
// a point references is locked until at least the point's start plus the
// period (one Stat per referenced object).
func (r *Repository) verifyRetention(ctx context.Context, g *refs, set *sortedSet[Digest]) ([]RetentionProblem, error) {
	im := r.cfg.Immutable
	need := map[string]time.Time{} // manifests and indexes
	add := func(name string, t time.Time) {
		if t.After(need[name]) {
			need[name] = t
		}
	}
	idxNeed := map[string]time.Time{}
	for _, m := range g.points {
		t := m.Started.Add(im.Retain())
		add(pointName(m.ID), t)
		for _, d := range m.Disks {
			add(indexName(d.Index), t)
			if t.After(idxNeed[d.Index]) {
				idxNeed[d.Index] = t
			}
		}
	}
	// A chunk needs the latest date of the indexes using it: one date
	// per referenced chunk, beside the set.
	chunkNeed := make([]int64, set.len())
	err := r.eachIndex(ctx, g, &VerifyReport{}, func(id string, x *Index) error {
		t := idxNeed[id].UnixNano()
		for _, dg := range x.Digests {
			if i := set.index(dg); i >= 0 && t > chunkNeed[i] {
				chunkNeed[i] = t
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	type check struct {
		name string
		need time.Time
	}
	var mu sync.Mutex
	var out []RetentionProblem
	jobs := make(chan check)
	var wg sync.WaitGroup
	for range r.ioWorkers() {
		wg.Go(func() {
			for c := range jobs {
				oi, err := r.be.Stat(ctx, c.name)
				if err != nil {
					continue // missing objects are reported by Verify itself
				}
				if oi.RetainUntil.Before(c.need) {
					mu.Lock()
					out = append(out, RetentionProblem{Object: c.name, RetainUntil: oi.RetainUntil, Need: c.need})
					mu.Unlock()
				}
			}
		})
	}
	for name, t := range need {
		jobs <- check{name, t}
	}
	for i, t := range chunkNeed {
		if t != 0 {
			jobs <- check{chunkName(set.items[i]), time.Unix(0, t)}
		}
	}
	close(jobs)
	wg.Wait()
	return out, ctx.Err()
}

// putObject seals plain and stores it like put.
func (w *Writer) putObject(ctx context.Context, t objType, name string, plain []byte) (int, error) {
	env, err := w.r.codec.seal(nil, t, name, plain)
	if err != nil {
		return 0, err
	}
	if err := w.put(ctx, name, env); err != nil {
		return 0, putError(name, err)
	}
	return len(env), nil
}

// dropLocked removes from the gc candidates the objects whose retention
// has not expired (one Stat each), so that gc never tries to delete them,
// and reports when they become deletable.
func (r *Repository) dropLocked(ctx context.Context, cand *candidates, rep *GCReport) error {
	now := time.Now()
	var mu sync.Mutex
	var firstErr error
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range r.ioWorkers() {
		wg.Go(func() {
			for name := range jobs {
				oi, err := r.be.Stat(ctx, name)
				mu.Lock()
				switch {
				case errors.Is(err, storage.ErrNotFound):
					cand.drop(name)
				case err != nil:
					if firstErr == nil {
						firstErr = fmt.Errorf("gc: retention of %s (nothing deleted): %w", name, err)
					}
				case oi.RetainUntil.After(now):
					rep.Locked++
					rep.LockedBytes += cand.size(name)
					if rep.LockedFrom.IsZero() || oi.RetainUntil.Before(rep.LockedFrom) {
						rep.LockedFrom = oi.RetainUntil
					}
					if oi.RetainUntil.After(rep.LockedUntil) {
						rep.LockedUntil = oi.RetainUntil
					}
					cand.drop(name)
				}
				mu.Unlock()
			}
		})
	}
	for _, n := range cand.names() {
		jobs <- n
	}
	close(jobs)
	wg.Wait()
	return firstErr
}

// putMeta stores config or a key file. In an immutable repository they are
// locked too (a deleted config or key file would make every point
// unreadable without an exported master key), for the period plus slack,
// and every point extends them (keepMeta).
func (r *Repository) putMeta(ctx context.Context, name string, data []byte) error {
	im := r.cfg.Immutable
	if im == nil {
		return r.be.Put(ctx, name, data)
	}
	rt, err := retainer(ctx, r.be)
	if err != nil {
		return err
	}
	return rt.PutRetained(ctx, name, data, time.Now().Add(im.Retain()+im.Slack()))
}

// keepMeta extends the retention of config and of the key files to the
// point's date: one request each.
func (w *Writer) keepMeta(ctx context.Context) error {
	names, err := w.r.listNames(ctx, "keys/")
	if err != nil {
		return err
	}
	for _, n := range append(names, configName) {
		if err := w.ret.rt.ExtendRetention(ctx, n, w.ret.until); err != nil {
			return fmt.Errorf("extend retention of %s: %w", n, err)
		}
	}
	return nil
}
