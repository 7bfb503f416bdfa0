package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kurabackup/kura/internal/crypto"
	"github.com/kurabackup/kura/internal/storage"
)

// VerifyOptions select how deep Verify checks.
type VerifyOptions struct {
	// ReadData fetches, authenticates, decompresses and re-hashes every
	// referenced chunk. Without it, chunks are only checked for presence.
	ReadData bool
	Progress func(done, total int64) // chunks checked (ReadData only)
	// Fresh, with ReadData, says a chunk was re-hashed recently enough to
	// be skipped this time (a nightly verify re-reads only the chunks not
	// verified for some days): it is still checked for presence.
	Fresh func(d Digest) bool
	// Verified, with ReadData, receives batches of chunks re-hashed and
	// found sound, so that the caller can remember when.
	Verified func(ds []Digest)
}

// PointDisk names one disk of one recovery point.
type PointDisk struct {
	Point string `json:"point"`
	Disk  string `json:"disk"`
}

// Problem is one damaged object and what it breaks.
type Problem struct {
	Object   string      `json:"object"` // object name
	Kind     string      `json:"kind"`   // "missing" or "corrupt"
	Detail   string      `json:"detail"`
	Affected []PointDisk `json:"affected,omitempty"` // points and disks that cannot be restored fully
}

// VerifyReport is the result of Verify. Problems is empty when the
// repository is sound.
type VerifyReport struct {
	Points     int   `json:"points"`
	Indexes    int   `json:"indexes"`
	Chunks     int   `json:"chunks"` // referenced objects checked
	ChunksRead int64 `json:"chunks_read"`
	// ChunksFresh were skipped as recently verified (VerifyOptions.Fresh).
	ChunksFresh int64     `json:"chunks_fresh,omitempty"`
	BytesRead   int64     `json:"bytes_read"`
	Problems    []Problem `json:"problems"`
}

// OK reports whether no problem was found.
func (v *VerifyReport) OK() bool { return len(v.Problems) == 0 }

func problemKind(err error) string {
	if errors.Is(err, ErrMissing) {
		return "missing"
	}
	return "corrupt"
}

// refGraph maps what references what, for reporting affected points.
type refGraph struct {
	points  []*Manifest
	indexes map[string][]PointDisk // index id → users
	chunks  map[Digest][]string    // chunk → index ids using it
	loaded  map[string]*Index
}

func (g *refGraph) affectedByChunk(d Digest) []PointDisk {
	var out []PointDisk
	seen := map[PointDisk]bool{}
	for _, id := range g.chunks[d] {
		for _, pd := range g.indexes[id] {
			if !seen[pd] {
				seen[pd] = true
				out = append(out, pd)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Point+out[i].Disk < out[j].Point+out[j].Disk })
	return out
}

// loadGraph reads every manifest and index. Problems found on the way are
// added to rep (if not nil); with rep nil the first problem is returned.
func (r *Repository) loadGraph(ctx context.Context, rep *VerifyReport) (*refGraph, error) {
	g := &refGraph{indexes: map[string][]PointDisk{}, chunks: map[Digest][]string{}, loaded: map[string]*Index{}}
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
		g.points = append(g.points, m)
		for _, d := range m.Disks {
			g.indexes[d.Index] = append(g.indexes[d.Index], PointDisk{Point: m.ID, Disk: d.Target})
		}
	}
	idxIDs := make([]string, 0, len(g.indexes))
	for id := range g.indexes {
		idxIDs = append(idxIDs, id)
	}
	sort.Strings(idxIDs)
	for _, id := range idxIDs {
		x, err := r.LoadIndex(ctx, id)
		if err != nil {
			if rep == nil || ctx.Err() != nil {
				return nil, err
			}
			rep.Problems = append(rep.Problems, Problem{Object: indexName(id), Kind: problemKind(err), Detail: err.Error(), Affected: g.indexes[id]})
			continue
		}
		g.loaded[id] = x
		for _, d := range x.Digests {
			if d.IsZero() {
				continue
			}
			if us := g.chunks[d]; len(us) == 0 || us[len(us)-1] != id {
				g.chunks[d] = append(us, id)
			}
		}
	}
	return g, nil
}

// Verify checks the repository structure and, with ReadData, every chunk's
// content.
func (r *Repository) Verify(ctx context.Context, opts VerifyOptions) (*VerifyReport, error) {
	rep := &VerifyReport{Problems: []Problem{}}
	// Points are not deleted (nor their chunks swept) while verify reads
	// them: a problem it reports is a problem of a live point.
	lease, err := r.LeaseAll(ctx, "verify")
	if err != nil {
		return nil, err
	}
	defer func() { _ = lease.Release(context.WithoutCancel(ctx)) }()
	keys, err := r.listNames(ctx, "keys/")
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		data, err := r.be.Get(ctx, k)
		if err == nil {
			_, err = crypto.ParseKeyFile(data)
		}
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{Object: k, Kind: "corrupt", Detail: err.Error()})
		}
	}
	g, err := r.loadGraph(ctx, rep)
	if err != nil {
		return nil, err
	}
	rep.Points, rep.Indexes, rep.Chunks = len(g.points), len(g.loaded), len(g.chunks)
	// Only referenced chunks are remembered while listing: memory follows
	// what the points use, not what the store holds.
	present := make(map[Digest]bool, len(g.chunks))
	err = r.be.List(ctx, "chunks/", func(oi storage.ObjectInfo) error {
		if d, err := parseDigest(oi.Name[strings.LastIndexByte(oi.Name, '/')+1:]); err == nil {
			if _, used := g.chunks[d]; used && oi.Name == chunkName(d) {
				present[d] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list chunks: %w", err)
	}
	var toRead []Digest
	for d := range g.chunks {
		if !present[d] {
			rep.Problems = append(rep.Problems, Problem{Object: chunkName(d), Kind: "missing",
				Detail: "chunk referenced by an index is not in the repository", Affected: g.affectedByChunk(d)})
		} else if opts.ReadData && opts.Fresh != nil && opts.Fresh(d) {
			rep.ChunksFresh++
		} else if opts.ReadData {
			toRead = append(toRead, d)
		}
	}
	if opts.ReadData {
		r.readAll(ctx, g, toRead, rep, opts)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if r.cfg.Immutable != nil {
		rps, err := r.verifyRetention(ctx, g)
		if err != nil {
			return nil, err
		}
		for _, p := range rps {
			detail := "not locked"
			if !p.RetainUntil.IsZero() {
				detail = "locked only until " + p.RetainUntil.UTC().Format(time.RFC3339)
			}
			rep.Problems = append(rep.Problems, Problem{Object: p.Object, Kind: "lock-too-short",
				Detail: detail + ", the immutability period needs " + p.Need.UTC().Format(time.RFC3339) +
					" (the store may have lost it, or someone shortened it in governance mode)"})
		}
	}
	sort.Slice(rep.Problems, func(i, j int) bool { return strings.Compare(rep.Problems[i].Object, rep.Problems[j].Object) < 0 })
	return rep, nil
}

// readAll re-hashes the given chunks in parallel.
func (r *Repository) readAll(ctx context.Context, g *refGraph, ds []Digest, rep *VerifyReport, opts VerifyOptions) {
	jobs := make(chan Digest)
	var mu sync.Mutex
	var done atomic.Int64
	var sound []Digest
	flush := func() {
		if opts.Verified != nil && len(sound) > 0 {
			opts.Verified(sound)
		}
		sound = nil
	}
	var wg sync.WaitGroup
	for range r.workers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf, scratch []byte
			for d := range jobs {
				var err error
				buf, scratch, err = r.fetchChunk(ctx, d, buf[:0], scratch)
				if err == nil && r.codec.digest(buf) != d {
					err = corrupt(chunkName(d), "content does not match its digest")
				}
				mu.Lock()
				rep.ChunksRead++
				rep.BytesRead += int64(len(buf))
				if err != nil && ctx.Err() == nil {
					rep.Problems = append(rep.Problems, Problem{Object: chunkName(d), Kind: problemKind(err), Detail: err.Error(), Affected: g.affectedByChunk(d)})
				} else if err == nil {
					if sound = append(sound, d); len(sound) >= 1024 {
						flush()
					}
				}
				if opts.Progress != nil {
					opts.Progress(done.Add(1), int64(len(ds)))
				}
				mu.Unlock()
			}
		}()
	}
	for _, d := range ds {
		select {
		case jobs <- d:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	flush()
}
