package repo

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"sort"
	"sync"
)

// What references what, walked with memory bounded by the number of
// distinct chunks (gc, verify, info): the manifests are read once and
// kept (without their configuration), each distinct index is loaded once
// and handed over, never kept.

// refs are the points of the repository and the disks using each index.
type refs struct {
	points  []*Manifest
	indexes map[string][]PointDisk // index id → users
	ids     []string               // index ids, sorted
}

// loadRefs reads every manifest. Problems found on the way are added to
// rep (if not nil); with rep nil the first problem is returned.
func (r *Repository) loadRefs(ctx context.Context, rep *VerifyReport) (*refs, error) {
	g := &refs{indexes: map[string][]PointDisk{}}
	ids, err := r.PointIDs(ctx)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		m, err := r.loadManifest(ctx, id)
		if err != nil {
			if errors.Is(err, ErrMissing) {
				continue // deleted meanwhile
			}
			if rep == nil || ctx.Err() != nil {
				return nil, err
			}
			rep.Problems = append(rep.Problems, Problem{Object: pointName(id), Kind: problemKind(err), Detail: err.Error(),
				Affected: []PointDisk{{Point: id}}})
			continue
		}
		m.Config = nil // the bulk of a manifest; not needed here
		g.points = append(g.points, m)
		for _, d := range m.Disks {
			g.indexes[d.Index] = append(g.indexes[d.Index], PointDisk{Point: m.ID, Disk: d.Target})
		}
	}
	for id := range g.indexes {
		g.ids = append(g.ids, id)
	}
	sort.Strings(g.ids)
	return g, nil
}

// eachIndex loads every distinct index (several at once) and calls fn
// for each, one call at a time, in no particular order. An index that
// cannot be loaded is a problem added to rep (and skipped), or with rep
// nil the error returned.
func (r *Repository) eachIndex(ctx context.Context, g *refs, rep *VerifyReport, fn func(id string, x *Index) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type loaded struct {
		id  string
		x   *Index
		err error
	}
	jobs := make(chan string)
	out := make(chan loaded)
	var wg sync.WaitGroup
	for range min(r.workers(), max(1, len(g.ids))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				x, err := r.LoadIndex(ctx, id)
				select {
				case out <- loaded{id, x, err}:
				case <-ctx.Done():
				}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for _, id := range g.ids {
			select {
			case jobs <- id:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(out) }()
	var first error
	for l := range out {
		if first != nil {
			continue
		}
		err := l.err
		if err == nil {
			err = fn(l.id, l.x)
		} else if rep != nil && ctx.Err() == nil {
			rep.Problems = append(rep.Problems, Problem{Object: indexName(l.id), Kind: problemKind(err), Detail: err.Error(), Affected: g.indexes[l.id]})
			continue
		}
		if err != nil {
			first = err
			cancel()
		}
	}
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// sortedSet is a set of values kept sorted in one slice: values added go
// to a pending slice, merged in when it grows to half the set. About one
// and a half times the values' size, against several times for a map.
type sortedSet[T any] struct {
	cmp     func(a, b T) int
	items   []T
	pending []T
}

func (s *sortedSet[T]) add(v T) {
	s.pending = append(s.pending, v)
	if len(s.pending) >= max(1<<16, len(s.items)/2) {
		s.flush()
	}
}

// flush merges the pending values in, dropping duplicates.
func (s *sortedSet[T]) flush() {
	if len(s.pending) == 0 {
		return
	}
	slices.SortFunc(s.pending, s.cmp)
	p := slices.CompactFunc(s.pending, func(a, b T) bool { return s.cmp(a, b) == 0 })
	n := len(s.items)
	s.items = slices.Grow(s.items, len(p))[:n+len(p)]
	// Merge from the end, in place.
	i, j, k := n-1, len(p)-1, n+len(p)-1
	for j >= 0 {
		if i >= 0 && s.cmp(s.items[i], p[j]) > 0 {
			s.items[k] = s.items[i]
			i--
		} else {
			s.items[k] = p[j]
			j--
		}
		k--
	}
	s.items = slices.CompactFunc(s.items, func(a, b T) bool { return s.cmp(a, b) == 0 })
	s.pending = s.pending[:0]
}

// done merges what is pending and frees the pending buffer; the set is
// then read with index and len.
func (s *sortedSet[T]) done() {
	s.flush()
	s.pending = nil
	s.items = slices.Clip(s.items)
}

// index returns the position of v in the set (after done), or -1.
func (s *sortedSet[T]) index(v T) int {
	i, ok := slices.BinarySearchFunc(s.items, v, s.cmp)
	if !ok {
		return -1
	}
	return i
}

func (s *sortedSet[T]) len() int { return len(s.items) }

// bytes is the memory the set holds now.
func (s *sortedSet[T]) bytes(size int) int64 {
	return int64(size) * int64(cap(s.items)+cap(s.pending))
}

// newDigestSet is a set of exact digests (verify).
func newDigestSet() *sortedSet[Digest] {
	return &sortedSet[Digest]{cmp: func(a, b Digest) int { return bytes.Compare(a[:], b[:]) }}
}

// newPrefixSet is a set of digests by their first 8 bytes (gc's mark
// phase): two digests sharing a prefix only make gc keep an unreferenced
// chunk, never delete a referenced one.
func newPrefixSet() *sortedSet[uint64] {
	return &sortedSet[uint64]{cmp: cmp.Compare[uint64]}
}

func digestPrefix(d Digest) uint64 { return binary.BigEndian.Uint64(d[:8]) }
