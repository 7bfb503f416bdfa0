package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/lock"
	"github.com/kurabackup/kura/internal/storage"
)

// gcSeenKey is the lock data key where a Writer records the ids of the gc
// markers it has read (comma-separated). Membership, not ordering, is what
// counts: ids made within one second do not sort by creation.
const gcSeenKey = "gc_seen"

// gcMarker is stored under gc/<id> while a gc run sweeps: it lists the
// objects the run may delete.
type gcMarker struct {
	ID         string    `json:"id"`
	Created    time.Time `json:"created"`
	Candidates []string  `json:"candidates"`
}

func markerName(id string) string { return "gc/" + id }

// gcView is what a Writer learnt from the gc markers present when it
// started: objects it must neither trust nor re-upload while a sweep runs.
type gcView struct {
	mu      sync.Mutex
	markers []*markerState
	byName  map[string]*markerState
}

type markerState struct {
	id   string
	gone bool
}

func (r *Repository) loadGCView(ctx context.Context) (*gcView, error) {
	v := &gcView{byName: make(map[string]*markerState)}
	names, err := r.listNames(ctx, "gc/")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		data, err := r.be.Get(ctx, n)
		if errors.Is(err, storage.ErrNotFound) {
			continue // sweep finished meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read gc marker %s: %w", n, err)
		}
		var m gcMarker
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, corrupt(n, "gc marker: %v", err)
		}
		ms := &markerState{id: strings.TrimPrefix(n, "gc/")}
		v.markers = append(v.markers, ms)
		for _, c := range m.Candidates {
			v.byName[c] = ms
		}
	}
	return v, nil
}

// seenList returns the ids of the markers seen, comma-separated.
func (v *gcView) seenList() string {
	ids := make([]string, len(v.markers))
	for i, m := range v.markers {
		ids[i] = m.id
	}
	return strings.Join(ids, ",")
}

// sawMarker reports whether a lock's data records having read marker id.
func sawMarker(data map[string]string, id string) bool {
	for s := range strings.SplitSeq(data[gcSeenKey], ",") {
		if s == id {
			return true
		}
	}
	return false
}

func (v *gcView) isCandidate(name string) bool {
	if v == nil || len(v.byName) == 0 {
		return false
	}
	_, ok := v.byName[name]
	return ok
}

// waitGone blocks until the marker listing name has been removed (its
// sweep is over) or its gc run is dead (no live gc lock).
func (v *gcView) waitGone(ctx context.Context, r *Repository, name string) error {
	ms := v.byName[name]
	for {
		v.mu.Lock()
		gone := ms.gone
		v.mu.Unlock()
		if gone {
			return nil
		}
		_, err := r.be.Stat(ctx, markerName(ms.id))
		if errors.Is(err, storage.ErrNotFound) {
			gone = true
		} else if err != nil {
			return fmt.Errorf("check gc marker: %w", err)
		} else if live, err := gcRunning(ctx, r.be); err != nil {
			return err
		} else {
			gone = !live
		}
		if gone {
			v.mu.Lock()
			ms.gone = true
			v.mu.Unlock()
			return nil
		}
		r.log.Info("waiting for a running gc to finish before storing an object it may delete", "object", name)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(gcPoll):
		}
	}
}

var gcPoll = time.Second

// gcRunning reports whether a live (not stale) gc lock exists.
func gcRunning(ctx context.Context, be storage.Backend) (bool, error) {
	infos, err := lock.List(ctx, be)
	if err != nil {
		return false, fmt.Errorf("list locks: %w", err)
	}
	for _, in := range infos {
		if in.Kind == lock.GC && !in.Stale {
			return true, nil
		}
	}
	return false, nil
}
