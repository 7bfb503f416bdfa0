package repo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

// commitPoints commits n points of VM vm (no disk data: an empty disk).
func commitPoints(t testing.TB, r *Repository, vm string, n int) []string {
	t.Helper()
	ctx := context.Background()
	w, err := r.NewWriter(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	id, st, err := w.WriteDisk(ctx, DiskSource{Reader: strings.NewReader(""), Size: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range n {
		m := &Manifest{VM: VMInfo{Name: vm, UUID: "uuid-" + vm}, Kind: "full", Config: []byte("<domain/>"),
			Disks: []DiskEntry{{Target: "vda", Size: 0, ChunkSize: r.Config().ChunkSize, Index: id, Stats: st}}}
		if err := w.Commit(ctx, m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	return ids
}

// summaryIDs lists the points PointSummaries returns.
func summaryIDs(t testing.TB, r *Repository) ([]string, SummaryStats) {
	t.Helper()
	ms, st, err := r.pointSummaries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		if m.Config != nil {
			t.Fatalf("summary of %s has a configuration", m.ID)
		}
		ids[i] = m.ID
	}
	return ids, st
}

func allIDs(t testing.TB, r *Repository) []string {
	t.Helper()
	ids, err := r.PointIDs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// The summaries are built on first use, then serve the listing without
// reading manifests, and follow additions and deletions.
func TestPointSummaries(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", enc), func(t *testing.T) {
			r, be := newTestRepo(t, enc)
			ctx := context.Background()
			commitPoints(t, r, "a", 5)
			ids, st := summaryIDs(t, r)
			if !slices.Equal(ids, allIDs(t, r)) || st.Read != 5 || st.Written != 1 {
				t.Fatalf("first listing: %v %+v", ids, st)
			}
			full, err := r.ListPoints(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := r.PointSummaries(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range ms {
				want := summarize(full[i])
				if m.ID != want.ID || m.VM != want.VM || m.Disks[0].Index != want.Disks[0].Index || !m.Started.Equal(want.Started) {
					t.Fatalf("summary %d = %+v, want %+v", i, m, want)
				}
			}
			if _, st = summaryIDs(t, r); st.Read != 0 || st.Cached != 5 || st.Written != 0 {
				t.Fatalf("second listing read manifests: %+v", st)
			}
			// Additions are read, then cached.
			commitPoints(t, r, "b", 3)
			if ids, st = summaryIDs(t, r); len(ids) != 8 || st.Read != 3 || st.Cached != 5 {
				t.Fatalf("after additions: %d points %+v", len(ids), st)
			}
			// Deleted points disappear at once.
			del := allIDs(t, r)[:5]
			if _, err := r.DeletePoints(ctx, del, DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			ids, st = summaryIDs(t, r)
			if !slices.Equal(ids, allIDs(t, r)) || len(ids) != 3 || st.Read != 0 {
				t.Fatalf("after deletion: %v %+v", ids, st)
			}
			// Mostly unused entries: rewritten into one segment.
			if st.Written != 1 || st.Deleted != 2 {
				t.Fatalf("no rewrite after deletions: %+v", st)
			}
			if n := countPrefix(t, be, summaryPrefix); n != 1 {
				t.Fatalf("%d segments after rewrite", n)
			}
		})
	}
}

func countPrefix(t testing.TB, be storage.Backend, prefix string) int {
	t.Helper()
	n := 0
	if err := be.List(context.Background(), prefix, func(storage.ObjectInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// A manifest put back after its deletion (format spec §8.1 D4), damaged
// or foreign summary objects, and too many segments: never a point lost
// or a deleted one shown, only manifests read again.
func TestPointSummariesStaleOrDamaged(t *testing.T) {
	r, be := newTestRepo(t, true)
	ctx := context.Background()
	ids := commitPoints(t, r, "a", 3)
	slices.Sort(ids)
	summaryIDs(t, r)
	// Put back with new bytes' time: read again.
	name := pointName(ids[1])
	env, err := be.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if err := be.Put(ctx, name, env); err != nil {
		t.Fatal(err)
	}
	if got, st := summaryIDs(t, r); !slices.Equal(got, ids) || st.Read != 1 {
		t.Fatalf("after put-back: %v %+v", got, st)
	}
	// Garbage and an object moved from points/: ignored, then removed.
	if err := be.Put(ctx, summaryPrefix+"garbage", []byte("not an envelope")); err != nil {
		t.Fatal(err)
	}
	if err := be.Put(ctx, summaryPrefix+"moved", env); err != nil {
		t.Fatal(err)
	}
	got, st := summaryIDs(t, r)
	if !slices.Equal(got, ids) || st.Unusable != 2 || st.Deleted == 0 {
		t.Fatalf("with damaged summaries: %v %+v", got, st)
	}
	if _, err := be.Stat(ctx, summaryPrefix+"garbage"); err == nil {
		t.Fatal("damaged summary kept")
	}
	// Many segments: merged.
	for i := range summaryMaxSegments + 1 {
		commitPoints(t, r, fmt.Sprint("v", i), 1)
		summaryIDs(t, r)
	}
	if n := countPrefix(t, be, summaryPrefix); n > summaryMaxSegments {
		t.Fatalf("%d segments kept", n)
	}
	if got, st := summaryIDs(t, r); !slices.Equal(got, allIDs(t, r)) || st.Read != 0 {
		t.Fatalf("after merging: %d points, %+v", len(got), st)
	}
	// No cache at all: everything read again.
	if err := be.List(ctx, summaryPrefix, func(oi storage.ObjectInfo) error { return be.Delete(ctx, oi.Name) }); err != nil {
		t.Fatal(err)
	}
	if got, st := summaryIDs(t, r); !slices.Equal(got, allIDs(t, r)) || st.Cached != 0 {
		t.Fatalf("without summaries: %d points, %+v", len(got), st)
	}
}

// Writers committing, points being deleted and listings updating the
// summaries at once: every listing shows every point committed before it
// started and not deleted, and no point deleted before it started.
func TestPointSummariesConcurrent(t *testing.T) {
	r, _ := newTestRepo(t, false)
	ctx := context.Background()
	var mu sync.Mutex
	// deleting: a deletion was started; deleted: it returned.
	committed, deleting, deleted := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				for _, id := range commitPoints(t, r, fmt.Sprint("w", w, "-", i%5), 1) {
					mu.Lock()
					committed[id] = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			mu.Lock()
			var victim string
			for id := range committed {
				if !deleting[id] {
					victim = id
					break
				}
			}
			if victim != "" {
				deleting[victim] = true
			}
			mu.Unlock()
			if victim == "" {
				continue
			}
			if _, err := r.DeletePoints(ctx, []string{victim}, DeleteOptions{}); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			deleted[victim] = true
			mu.Unlock()
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	for listings := 0; time.Now().Before(deadline) || listings < 20; listings++ {
		mu.Lock()
		before := map[string]bool{} // true: must be listed; false: must not
		for id := range committed {
			switch {
			case deleted[id]:
				before[id] = false
			case !deleting[id]:
				before[id] = true
			}
		}
		mu.Unlock()
		ms, err := r.PointSummaries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, m := range ms {
			got[m.ID] = true
		}
		for id, live := range before {
			if live && !got[id] {
				mu.Lock()
				gone := deleting[id]
				mu.Unlock()
				if !gone {
					t.Fatalf("listing lost point %s", id)
				}
			}
			if !live && got[id] {
				t.Fatalf("listing shows point %s deleted before it started", id)
			}
		}
	}
	close(stop)
	wg.Wait()
	got, _ := summaryIDs(t, r)
	if !slices.Equal(got, allIDs(t, r)) {
		t.Fatalf("final listing differs: %d points, %d manifests", len(got), len(allIDs(t, r)))
	}
}

// sortedSet holds exactly the values added, whatever the order and the
// duplicates, across merges.
func TestSortedSet(t *testing.T) {
	s := newPrefixSet()
	want := map[uint64]bool{}
	x := uint64(1)
	for i := range 300000 {
		x = x*6364136223846793005 + 1442695040888963407
		v := x >> (i % 40) // many duplicates among the small ones
		s.add(v)
		want[v] = true
	}
	s.done()
	if s.len() != len(want) {
		t.Fatalf("%d values, want %d", s.len(), len(want))
	}
	for v := range want {
		if s.index(v) < 0 {
			t.Fatalf("%d missing", v)
		}
	}
	if !slices.IsSorted(s.items) {
		t.Fatal("not sorted")
	}
	if s.index(12345) >= 0 && !want[12345] {
		t.Fatal("value never added found")
	}
}
