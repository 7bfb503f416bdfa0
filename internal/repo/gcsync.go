package repo

import (
	"bytes"
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
// Chunk candidates are kept as sorted digests (32 bytes each), the others
// by name.
type gcView struct {
	mu      sync.Mutex
	markers []*markerState
}

type markerState struct {
	id     string
	gone   bool
	chunks *sortedSet[Digest]
	other  map[string]bool
}

func (ms *markerState) has(name string) bool {
	if d, ok := chunkDigest(name); ok {
		return ms.chunks.index(d) >= 0
	}
	return ms.other[name]
}

func (r *Repository) loadGCView(ctx context.Context) (*gcView, error) {
	v := &gcView{}
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
		ms := &markerState{id: strings.TrimPrefix(n, "gc/"), chunks: newDigestSet(), other: map[string]bool{}}
		if err := parseMarker(data, func(c string) {
			if d, ok := chunkDigest(c); ok {
				ms.chunks.add(d)
			} else {
				ms.other[c] = true
			}
		}); err != nil {
			return nil, corrupt(n, "gc marker: %v", err)
		}
		ms.chunks.done()
		v.markers = append(v.markers, ms)
	}
	return v, nil
}

// parseMarker decodes a gc marker, handing each candidate to fn as it is
// read (a marker may list millions).
func parseMarker(data []byte, fn func(name string)) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		if k, _ := t.(string); !strings.EqualFold(k, "candidates") { // as encoding/json matches keys
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
			continue
		}
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return fmt.Errorf("candidates is not a list")
		}
		for dec.More() {
			var c string
			if err := dec.Decode(&c); err != nil {
				return err
			}
			fn(c)
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
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

// marker returns the first marker naming name as a candidate, or nil.
func (v *gcView) marker(name string) *markerState {
	if v == nil {
		return nil
	}
	for _, ms := range v.markers {
		if ms.has(name) {
			return ms
		}
	}
	return nil
}

func (v *gcView) isCandidate(name string) bool { return v.marker(name) != nil }

// waitGone blocks until the marker listing name has been removed (its
// sweep is over) or its gc run is dead (no live gc lock).
func (v *gcView) waitGone(ctx context.Context, r *Repository, name string) error {
	ms := v.marker(name)
	if ms == nil {
		return nil
	}
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
