package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/lock"
	"github.com/kurabackup/kura/internal/storage"
)

// GCOptions configure GC.
type GCOptions struct {
	DryRun bool // report what would be deleted, delete nothing
}

// GCReport is the result of GC.
type GCReport struct {
	Points           int `json:"points"`            // points whose references were kept
	ReferencedChunks int `json:"referenced_chunks"` // chunks in use
	// MarkBytes is the memory the mark phase held for the referenced
	// chunks (8 bytes each, plus slack).
	MarkBytes      int64 `json:"mark_bytes"`
	UnusedChunks   int   `json:"unused_chunks"`  // unreferenced chunks found
	UnusedIndexes  int   `json:"unused_indexes"` // unreferenced indexes found
	UnusedBytes    int64 `json:"unused_bytes"`   // their stored size
	DeletedChunks  int   `json:"deleted_chunks"`
	DeletedIndexes int   `json:"deleted_indexes"`
	BytesFreed     int64 `json:"bytes_freed"`
	DryRun         bool  `json:"dry_run"`
	// Deferred is set when a running backup that started before this gc
	// could still reference the unused objects: nothing was deleted.
	Deferred    bool     `json:"deferred"`
	DeferredBy  []string `json:"deferred_by,omitempty"` // "host pid N started T" of those backups
	TempRemoved int      `json:"temp_removed"`          // leftover temporary files removed by the backend
	// Immutable repositories: unused objects still locked are left alone;
	// they become deletable between LockedFrom and LockedUntil.
	Locked      int       `json:"locked,omitempty"`
	LockedBytes int64     `json:"locked_bytes,omitempty"`
	LockedFrom  time.Time `json:"locked_from,omitzero"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
}

// tempCleaner is implemented by backends that keep temporary files (local).
type tempCleaner interface {
	CleanTemp(ctx context.Context, olderThan time.Duration) (int, error)
}

// GC deletes chunks and indexes no recovery point references. It is safe
// to run while backups write into the repository (see the GC protocol in
// docs/design/repository-format.md).
func (r *Repository) GC(ctx context.Context, opts GCOptions) (*GCReport, error) {
	if !opts.DryRun {
		if err := r.checkWritable(); err != nil {
			return nil, err
		}
	}
	lk, err := lock.Acquire(ctx, r.be, lock.GC, map[string]string{"purpose": "gc"}, r.lockOptions()...)
	if err != nil {
		return nil, fmt.Errorf("take gc lock: %w", err)
	}
	defer func() { _ = lk.Release(context.WithoutCancel(ctx)) }()
	rep := &GCReport{DryRun: opts.DryRun}
	// Markers left by dead gc runs (we hold the only gc lock) are removed
	// only after a complete sweep: their candidates may already be half
	// deleted, and writers must keep distrusting them until then.
	stale, err := r.listNames(ctx, "gc/")
	if err != nil {
		return nil, err
	}
	if tc, ok := r.be.(tempCleaner); ok && !opts.DryRun {
		// Temporary files of killed writers: an hour is far longer than
		// any single Put takes.
		if n, err := tc.CleanTemp(ctx, time.Hour); err != nil {
			r.log.Warn("gc: cleaning temporary files failed", "err", err)
		} else {
			rep.TempRemoved = n
		}
	}
	// Mark: the first 8 bytes of every referenced digest (a shared prefix
	// only keeps an unreferenced chunk), then the store's listing.
	g, err := r.loadRefs(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("gc mark (nothing deleted): %w", err)
	}
	marked := map[string]bool{}
	for _, m := range g.points {
		marked[m.ID] = true
	}
	set := newPrefixSet()
	err = r.eachIndex(ctx, g, nil, func(_ string, x *Index) error {
		for _, d := range x.Digests {
			if !d.IsZero() {
				set.add(digestPrefix(d))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gc mark (nothing deleted): %w", err)
	}
	set.done()
	rep.Points, rep.ReferencedChunks, rep.MarkBytes = len(g.points), set.len(), set.bytes(8)
	cand := newCandidates()
	collect := func(prefix string, used func(name string) bool) error {
		return r.be.List(ctx, prefix, func(oi storage.ObjectInfo) error {
			if !used(oi.Name) {
				cand.add(oi.Name, oi.Size)
			}
			return nil
		})
	}
	err = collect("chunks/", func(n string) bool {
		d, err := parseDigest(n[strings.LastIndexByte(n, '/')+1:])
		if err != nil || n != chunkName(d) {
			return true // not ours: leave it alone
		}
		return set.index(digestPrefix(d)) >= 0
	})
	if err == nil {
		err = collect("indexes/", func(n string) bool {
			id := strings.TrimPrefix(n, "indexes/")
			_, ok := g.indexes[id]
			return ok || !validID(id)
		})
	}
	if err != nil {
		return nil, fmt.Errorf("gc list: %w", err)
	}
	if r.cfg.Immutable != nil {
		if err := r.dropLocked(ctx, cand, rep); err != nil {
			return nil, err
		}
	}
	rep.count(cand)
	if opts.DryRun || (rep.UnusedChunks+rep.UnusedIndexes == 0 && len(stale) == 0) {
		return rep, nil
	}
	// Announce the candidates, then look for backups that have not seen it.
	mk := gcMarker{ID: strings.ToLower(NewPointID(time.Now())), Created: time.Now().UTC()}
	data, err := cand.markerJSON(mk.ID, mk.Created)
	if err != nil {
		return nil, err
	}
	mname := markerName(mk.ID)
	if err := r.be.Put(ctx, mname, data); err != nil {
		return nil, fmt.Errorf("write gc marker: %w", err)
	}
	data = nil
	defer func() { _ = r.be.Delete(context.WithoutCancel(ctx), mname) }()
	infos, err := lock.List(ctx, r.be)
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	for _, in := range infos {
		if in.Kind == lock.Shared && !in.Stale && !sawMarker(in.Data, mk.ID) {
			rep.DeferredBy = append(rep.DeferredBy, fmt.Sprintf("%s pid %d started %s", in.Host, in.PID, in.Created.UTC().Format(time.RFC3339)))
		}
	}
	if len(rep.DeferredBy) > 0 {
		rep.Deferred = true
		r.log.Info("gc deferred: backup in progress", "backups", rep.DeferredBy)
		return rep, nil
	}
	// Points committed between mark and marker by backups that are over.
	if err := r.unmarkNewPoints(ctx, marked, cand); err != nil {
		return nil, err
	}
	rep.count(cand)
	// Sweep: chunks first, then indexes (an index is never left pointing at
	// nothing while it is still listed).
	err = cand.each(func(n string, size int64) error {
		err := r.be.Delete(ctx, n)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("gc sweep: %w", err)
		}
		if strings.HasPrefix(n, "chunks/") {
			rep.DeletedChunks++
		} else {
			rep.DeletedIndexes++
		}
		rep.BytesFreed += size
		return nil
	})
	if err != nil {
		return rep, err
	}
	for _, n := range stale {
		if err := r.be.Delete(ctx, n); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return rep, fmt.Errorf("remove stale gc marker: %w", err)
		}
	}
	return rep, nil
}

func (rep *GCReport) count(cand *candidates) {
	rep.UnusedChunks, rep.UnusedIndexes, rep.UnusedBytes = 0, 0, 0
	_ = cand.each(func(n string, s int64) error {
		if strings.HasPrefix(n, "chunks/") {
			rep.UnusedChunks++
		} else {
			rep.UnusedIndexes++
		}
		rep.UnusedBytes += s
		return nil
	})
}

// unmarkNewPoints removes from cand everything referenced by points that
// appeared after the mark phase.
func (r *Repository) unmarkNewPoints(ctx context.Context, marked map[string]bool, cand *candidates) error {
	ids, err := r.PointIDs(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if marked[id] {
			continue
		}
		m, err := r.loadManifest(ctx, id)
		if errors.Is(err, ErrMissing) {
			continue
		}
		if err != nil {
			return fmt.Errorf("gc re-mark (nothing deleted): %w", err)
		}
		for _, d := range m.Disks {
			cand.drop(indexName(d.Index))
			x, err := r.LoadIndex(ctx, d.Index)
			if err != nil {
				return fmt.Errorf("gc re-mark (nothing deleted): %w", err)
			}
			for _, dg := range x.Digests {
				cand.dropChunk(dg)
			}
		}
	}
	return nil
}
