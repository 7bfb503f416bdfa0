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
	g, err := r.loadRefs(ctx, rep)
	if err != nil {
		return nil, err
	}
	set, err := r.referenced(ctx, g, rep)
	if err != nil {
		return nil, err
	}
	rep.Points, rep.Chunks = len(g.points), set.len()
	present := make([]bool, set.len())
	err = r.be.List(ctx, "chunks/", func(oi storage.ObjectInfo) error {
		if d, err := parseDigest(oi.Name[strings.LastIndexByte(oi.Name, '/')+1:]); err == nil && oi.Name == chunkName(d) {
			if i := set.index(d); i >= 0 {
				present[i] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list chunks: %w", err)
	}
	var damaged []Problem // chunk problems, affected points filled in below
	toRead := present     // reused: which chunks to read
	n := 0
	for i, d := range set.items {
		switch {
		case !present[i]:
			damaged = append(damaged, Problem{Object: chunkName(d), Kind: "missing",
				Detail: "chunk referenced by an index is not in the repository"})
		case opts.ReadData && opts.Fresh != nil && opts.Fresh(d):
			rep.ChunksFresh++
			toRead[i] = false
		default:
			n++
		}
	}
	if opts.ReadData {
		damaged = append(damaged, r.readAll(ctx, set.items, toRead, n, rep, opts)...)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if err := r.affected(ctx, g, damaged); err != nil {
		return nil, err
	}
	rep.Problems = append(rep.Problems, damaged...)
	if r.cfg.Immutable != nil {
		rps, err := r.verifyRetention(ctx, g, set)
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

// referenced returns every digest the indexes of g reference, once and
// sorted (32 bytes each): memory follows what the points use, not what
// the store holds, nor how many indexes share a chunk. Indexes that cannot
// be loaded are problems in rep.
func (r *Repository) referenced(ctx context.Context, g *refs, rep *VerifyReport) (*sortedSet[Digest], error) {
	set := newDigestSet()
	err := r.eachIndex(ctx, g, rep, func(_ string, x *Index) error {
		rep.Indexes++
		for _, d := range x.Digests {
			if !d.IsZero() {
				set.add(d)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	set.done()
	return set, nil
}

// affected fills in the points and disks that damaged chunks break: a
// second pass over the indexes, done only when something is damaged.
func (r *Repository) affected(ctx context.Context, g *refs, damaged []Problem) error {
	if len(damaged) == 0 {
		return nil
	}
	users := map[Digest][]string{} // damaged chunk → index ids
	for _, p := range damaged {
		if d, err := parseDigest(p.Object[strings.LastIndexByte(p.Object, '/')+1:]); err == nil {
			users[d] = nil
		}
	}
	err := r.eachIndex(ctx, g, nil, func(id string, x *Index) error {
		for _, d := range x.Digests {
			if us, ok := users[d]; ok && (len(us) == 0 || us[len(us)-1] != id) {
				users[d] = append(us, id)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range damaged {
		d, err := parseDigest(damaged[i].Object[strings.LastIndexByte(damaged[i].Object, '/')+1:])
		if err != nil {
			continue
		}
		seen := map[PointDisk]bool{}
		for _, id := range users[d] {
			for _, pd := range g.indexes[id] {
				if !seen[pd] {
					seen[pd] = true
					damaged[i].Affected = append(damaged[i].Affected, pd)
				}
			}
		}
		sort.Slice(damaged[i].Affected, func(a, b int) bool {
			x, y := damaged[i].Affected[a], damaged[i].Affected[b]
			return x.Point+x.Disk < y.Point+y.Disk
		})
	}
	return nil
}

// readAll re-hashes the chunks ds[i] with want[i] (n of them; want nil:
// all) in parallel and returns the problems found (without the points
// they affect).
func (r *Repository) readAll(ctx context.Context, ds []Digest, want []bool, n int, rep *VerifyReport, opts VerifyOptions) []Problem {
	jobs := make(chan Digest)
	var mu sync.Mutex
	var done atomic.Int64
	var sound []Digest
	var problems []Problem
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
			var buf []byte
			var b chunkBufs
			for d := range jobs {
				var err error
				buf, err = r.readChunk(ctx, d, buf[:0], &b)
				if err == nil && r.codec.digest(buf) != d {
					err = corrupt(chunkName(d), "content does not match its digest")
				}
				mu.Lock()
				rep.ChunksRead++
				rep.BytesRead += int64(len(buf))
				if err != nil && ctx.Err() == nil {
					problems = append(problems, Problem{Object: chunkName(d), Kind: problemKind(err), Detail: err.Error()})
				} else if err == nil {
					if sound = append(sound, d); len(sound) >= 1024 {
						flush()
					}
				}
				if opts.Progress != nil {
					opts.Progress(done.Add(1), int64(n))
				}
				mu.Unlock()
			}
		}()
	}
	for i, d := range ds {
		if want != nil && !want[i] {
			continue
		}
		select {
		case jobs <- d:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	flush()
	return problems
}
