package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

// Point summaries (spec §6.2): a cache of the manifests under
// cache/points/, so that listing points reads a few objects instead of
// every manifest. The listing of points/ stays the truth.
const (
	summaryPrefix      = "cache/points/"
	summaryVersion     = 1
	summaryMaxEntries  = 10000
	summaryMaxSegments = 8
)

type summarySegment struct {
	Summary int            `json:"summary"`
	Created time.Time      `json:"created"`
	Entries []summaryEntry `json:"entries"`
}

type summaryEntry struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
	Point   *Manifest `json:"point"`
}

// matches reports whether e caches the manifest the listing shows as oi.
func (e *summaryEntry) matches(oi storage.ObjectInfo) bool {
	return e.Point != nil && !oi.ModTime.IsZero() && e.Size == oi.Size && e.ModTime.Equal(oi.ModTime)
}

// SummaryStats says how PointSummaries got the points.
type SummaryStats struct {
	Points    int `json:"points"`
	Cached    int `json:"cached"`    // taken from summaries
	Read      int `json:"read"`      // manifests read
	Segments  int `json:"segments"`  // summary objects read
	Written   int `json:"written"`   // summary objects written
	Deleted   int `json:"deleted"`   // summary objects removed by a rewrite
	Unusable  int `json:"unusable"`  // summary objects that could not be read
	Discarded int `json:"discarded"` // entries not used (deleted points, duplicates)
}

// PointSummaries returns every recovery point, sorted by id, without its
// configuration: Config and Requests are empty (LoadPoint gives the whole
// manifest). Manifests are taken from the point summaries where those are
// current and read otherwise; the summaries are then brought up to date
// (best effort). A damaged manifest is skipped with a warning, as in
// ListPoints.
func (r *Repository) PointSummaries(ctx context.Context) ([]*Manifest, error) {
	ms, _, err := r.pointSummaries(ctx)
	return ms, err
}

func (r *Repository) pointSummaries(ctx context.Context) ([]*Manifest, SummaryStats, error) {
	var st SummaryStats
	// P1: the truth.
	listed := map[string]storage.ObjectInfo{}
	err := r.be.List(ctx, "points/", func(oi storage.ObjectInfo) error {
		if id := pointIDFromName(oi.Name); id != "" {
			listed[id] = oi
		}
		return nil
	})
	if err != nil {
		return nil, st, fmt.Errorf("list points/: %w", err)
	}
	// P2: the cache.
	segs, err := r.listNames(ctx, summaryPrefix)
	if err != nil {
		return nil, st, err
	}
	cached := map[string]*summaryEntry{}
	total := 0
	seen := segs[:0] // segments present (read, or unusable)
	for _, name := range segs {
		seg, err := r.readSummary(ctx, name)
		if errors.Is(err, ErrMissing) {
			continue // removed by a concurrent rewrite
		}
		seen = append(seen, name)
		if err != nil {
			if ctx.Err() != nil {
				return nil, st, ctx.Err()
			}
			r.log.Debug("point summary unusable", "object", name, "err", err)
			st.Unusable++
			continue
		}
		st.Segments++
		for i := range seg.Entries {
			e := &seg.Entries[i]
			total++
			if e.Point == nil {
				continue
			}
			if oi, ok := listed[e.Point.ID]; ok && e.matches(oi) {
				cached[e.Point.ID] = e
			}
		}
	}
	// P3: cached entries, manifests for the rest.
	out := make([]*Manifest, 0, len(listed))
	var fresh []summaryEntry
	var todo []string
	for id := range listed {
		e, ok := cached[id]
		if !ok {
			todo = append(todo, id)
			continue
		}
		if err := e.Point.check(pointName(id)); err != nil || e.Point.ID != id {
			todo = append(todo, id) // not trusted: read the manifest
			delete(cached, id)
			continue
		}
		if e.Point.ConfigMAC != "" && e.Point.ConfigMAC != r.configMAC() {
			return nil, st, fmt.Errorf("point %s: %w", id, ErrConfigChanged)
		}
		out = append(out, e.Point)
	}
	st.Cached = len(out)
	read, err := r.loadManifests(ctx, todo)
	if err != nil {
		return nil, st, err
	}
	for _, m := range read {
		if m == nil {
			continue
		}
		s := summarize(m)
		out = append(out, s)
		fresh = append(fresh, summaryEntry{Size: listed[m.ID].Size, ModTime: listed[m.ID].ModTime, Point: s})
		st.Read++
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	st.Points = len(out)
	st.Discarded = total - st.Cached
	// P4: bring the cache up to date.
	if err := r.updateSummaries(ctx, seen, out, listed, fresh, &st); err != nil {
		r.log.Debug("point summaries not updated", "err", err)
	}
	return out, st, nil
}

// summarize is m without the fields summaries leave out.
func summarize(m *Manifest) *Manifest {
	s := *m
	s.Config, s.Requests = nil, nil
	return &s
}

// loadManifests reads the manifests of ids in parallel; an entry is nil
// for a point deleted since the listing or damaged (warned).
func (r *Repository) loadManifests(ctx context.Context, ids []string) ([]*Manifest, error) {
	out := make([]*Manifest, len(ids))
	errs := make([]error, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(r.workers(), max(1, len(ids))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				m, err := r.loadManifest(ctx, ids[i])
				switch {
				case errors.Is(err, ErrMissing):
				case errors.Is(err, ErrCorrupt):
					r.log.Warn("skipping damaged recovery point", "point", ids[i], "err", err)
				case err != nil:
					errs[i] = err
				default:
					out[i] = m
				}
			}
		}()
	}
	for i := range ids {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, errors.Join(errs...)
}

// readSummary reads one summary segment.
func (r *Repository) readSummary(ctx context.Context, name string) (*summarySegment, error) {
	b, err := r.getObject(ctx, typeManifest, name)
	if err != nil {
		return nil, err
	}
	return decodeSummary(name, b)
}

// decodeSummary decodes the plaintext of a summary segment.
func decodeSummary(name string, b []byte) (*summarySegment, error) {
	var seg summarySegment
	if err := json.Unmarshal(b, &seg); err != nil {
		return nil, corrupt(name, "point summary: %v", err)
	}
	if seg.Summary != summaryVersion {
		return nil, corrupt(name, "point summary version %d not supported", seg.Summary)
	}
	return &seg, nil
}

// updateSummaries is step P4: a segment of the manifests just read, or a
// rewrite of every used entry when the cache holds too many segments or
// mostly unused entries.
func (r *Repository) updateSummaries(ctx context.Context, segs []string, all []*Manifest, listed map[string]storage.ObjectInfo, fresh []summaryEntry, st *SummaryStats) error {
	rewrite := len(segs) > summaryMaxSegments || st.Discarded > st.Cached || st.Unusable > 0
	if len(fresh) == 0 && !rewrite {
		return nil
	}
	if err := r.checkWritable(); err != nil {
		return err
	}
	entries := fresh
	if rewrite {
		entries = make([]summaryEntry, 0, len(all))
		for _, m := range all {
			oi := listed[m.ID]
			entries = append(entries, summaryEntry{Size: oi.Size, ModTime: oi.ModTime, Point: m})
		}
	}
	for len(entries) > 0 {
		n := min(len(entries), summaryMaxEntries)
		if err := r.writeSummary(ctx, entries[:n]); err != nil {
			return err
		}
		st.Written++
		entries = entries[n:]
	}
	if !rewrite {
		return nil
	}
	for _, name := range segs {
		if err := r.be.Delete(ctx, name); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("remove point summary %s: %w", name, err)
		}
		st.Deleted++
	}
	return nil
}

func (r *Repository) writeSummary(ctx context.Context, entries []summaryEntry) error {
	seg := summarySegment{Summary: summaryVersion, Created: time.Now().UTC(), Entries: entries}
	b, err := json.Marshal(seg)
	if err != nil {
		return fmt.Errorf("encode point summary: %w", err)
	}
	name := summaryPrefix + strings.ToLower(NewPointID(time.Now()))
	if _, err := r.putObject(ctx, typeManifest, name, b); err != nil {
		return fmt.Errorf("write point summary: %w", err)
	}
	return nil
}
