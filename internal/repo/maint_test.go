package repo

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestVerifyFindsDamage(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, true)
	shared := randomBytes(6, 4*testCS)
	imgA := append(bytes.Clone(shared), randomBytes(7, 2*testCS)...)
	imgB := append(bytes.Clone(shared), randomBytes(8, 2*testCS)...)
	mA, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(imgA), Size: int64(len(imgA))})
	mB, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(imgB), Size: int64(len(imgB))})
	if v, err := r.Verify(ctx, VerifyOptions{ReadData: true}); err != nil || !v.OK() || v.Chunks != 8 {
		t.Fatalf("clean repo: %v %+v", err, v)
	}
	xA, _ := r.LoadIndex(ctx, mA.Disks[0].Index)
	sharedChunk := chunkName(xA.Digests[1])
	onlyA := chunkName(xA.Digests[5])
	// Flip one byte of a chunk both points use.
	env, _ := be.Get(ctx, sharedChunk)
	env = bytes.Clone(env)
	env[len(env)/2] ^= 1
	_ = be.Put(ctx, sharedChunk, env)
	_ = be.Delete(ctx, onlyA)

	v, err := r.Verify(ctx, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Problems) != 1 || v.Problems[0].Object != onlyA || v.Problems[0].Kind != "missing" ||
		len(v.Problems[0].Affected) != 1 || v.Problems[0].Affected[0] != (PointDisk{mA.ID, "vda"}) {
		t.Errorf("structure verify: %+v", v.Problems)
	}
	v, err = r.Verify(ctx, VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	var corruptP *Problem
	for i := range v.Problems {
		if v.Problems[i].Object == sharedChunk {
			corruptP = &v.Problems[i]
		}
	}
	if len(v.Problems) != 2 || corruptP == nil || corruptP.Kind != "corrupt" || len(corruptP.Affected) != 2 {
		t.Fatalf("read-data verify: %+v", v.Problems)
	}
	got := []string{corruptP.Affected[0].Point, corruptP.Affected[1].Point}
	if !(got[0] == mA.ID && got[1] == mB.ID) && !(got[0] == mB.ID && got[1] == mA.ID) {
		t.Errorf("corrupt chunk affects %v, want %s and %s", got, mA.ID, mB.ID)
	}
	// Reading the damaged point fails naming the object.
	d, _ := r.OpenDisk(ctx, mB.Disks[0].Index)
	_, err = d.ReadAt(make([]byte, 10), int64(testCS))
	if err == nil || !strings.Contains(err.Error(), sharedChunk) {
		t.Errorf("reading a corrupt chunk: %v", err)
	}
}

func TestGCDeferredByUnawareWriter(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, false)
	img := randomBytes(9, 5*testCS)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
	keep := randomBytes(10, 3*testCS)
	mk, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(keep), Size: int64(len(keep))})
	if err := r.DeletePoint(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	w, err := r.NewWriter(ctx, "slow backup") // started before gc: has seen no marker
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.GC(ctx, GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Deferred || rep.DeletedChunks != 0 || rep.UnusedChunks != 5 || len(rep.DeferredBy) != 1 {
		t.Fatalf("gc with running writer: %+v", rep)
	}
	if names, _ := r.listNames(ctx, "gc/"); len(names) != 0 {
		t.Errorf("deferred gc left markers %v", names)
	}
	// The old writer reuses a chunk gc considered unused, then commits.
	id, _, err := w.WriteDisk(ctx, DiskSource{Reader: bytes.NewReader(img[:testCS]), Size: testCS}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, &Manifest{Disks: []DiskEntry{{Target: "vda", Size: testCS, ChunkSize: testCS, Index: id}}}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	dry, err := r.GC(ctx, GCOptions{DryRun: true})
	if err != nil || dry.UnusedChunks != 4 || dry.DeletedChunks != 0 {
		t.Fatalf("dry run: %v %+v", err, dry)
	}
	rep, err = r.GC(ctx, GCOptions{})
	if err != nil || rep.Deferred || rep.DeletedChunks != 4 || rep.DeletedIndexes != 1 {
		t.Fatalf("gc after writer closed: %v %+v", err, rep)
	}
	readBack(t, r, mk.ID, keep)
	ps, _ := r.ListPoints(ctx)
	for _, p := range ps {
		if p.ID != mk.ID {
			readBack(t, r, p.ID, img[:testCS])
		}
	}
	if v, err := r.Verify(ctx, VerifyOptions{ReadData: true}); err != nil || !v.OK() {
		t.Fatalf("verify: %v %+v", err, v)
	}
}

// A writer that has seen a gc marker re-uploads candidate chunks only
// after the sweep, so its point survives.
func TestWriterWaitsForSweep(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, true)
	img := randomBytes(11, 2*testCS)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
	x, _ := r.LoadIndex(ctx, m.Disks[0].Index)
	_ = r.DeletePoint(ctx, m.ID)
	// A gc run stopped between marker and sweep (marker present, gc lock held).
	marker := gcMarker{ID: "20261121t000000z-00000000", Candidates: []string{chunkName(x.Digests[0]), chunkName(x.Digests[1])}}
	data, _ := jsonMarshal(marker)
	_ = be.Put(ctx, markerName(marker.ID), data)
	glk, err := lockAcquireGC(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	old := gcPoll
	gcPoll = 20 * time.Millisecond
	defer func() { gcPoll = old }()
	w, err := r.NewWriter(ctx, "aware")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var wg sync.WaitGroup
	var idx string
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		idx, _, werr = w.WriteDisk(ctx, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))}, nil)
	}()
	time.Sleep(100 * time.Millisecond)
	// The gc sweeps its candidates and finishes.
	for _, c := range marker.Candidates {
		_ = be.Delete(ctx, c)
	}
	_ = be.Delete(ctx, markerName(marker.ID))
	_ = glk.Release(ctx)
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	if err := w.Commit(ctx, &Manifest{Disks: []DiskEntry{{Target: "vda", Size: int64(len(img)), ChunkSize: testCS, Index: idx}}}); err != nil {
		t.Fatal(err)
	}
	ps, _ := r.ListPoints(ctx)
	readBack(t, r, ps[0].ID, img)
}

func TestConcurrentWritersAndGC(t *testing.T) {
	if testing.Short() {
		t.Skip("stress")
	}
	ctx := context.Background()
	r, _ := newTestRepo(t, true)
	base := testImage(12, 6*testCS)
	var mu sync.Mutex
	committed := map[string][]byte{}
	stop := make(chan struct{})
	var gcRuns, sweeps int
	var gwg sync.WaitGroup
	gwg.Add(1)
	go func() { // gc + delete loop
		defer gwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			for id := range committed {
				if len(committed) > 3 {
					_ = r.DeletePoint(ctx, id)
					delete(committed, id)
				}
			}
			mu.Unlock()
			rep, err := r.GC(ctx, GCOptions{})
			if err != nil {
				t.Errorf("gc: %v", err)
				return
			}
			gcRuns++
			if rep.DeletedChunks > 0 {
				sweeps++
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				img := bytes.Clone(base)
				copy(img[(i%6)*testCS:], testImage(uint64(100*g+i), testCS/2))
				m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
				mu.Lock()
				committed[m.ID] = img
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	gwg.Wait()
	for id, img := range committed {
		readBack(t, r, id, img)
	}
	if v, err := r.Verify(ctx, VerifyOptions{ReadData: true}); err != nil || !v.OK() {
		t.Fatalf("verify: %v %+v", err, v)
	}
	t.Logf("gc runs %d, sweeps %d, points kept %d", gcRuns, sweeps, len(committed))
	if sweeps == 0 {
		t.Log("note: no gc run swept while writers ran")
	}
	_ = fmt.Sprint()
}

// A parent whose point was deleted and swept is not trusted.
func TestParentGoneReadsAll(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, true)
	img := randomBytes(40, 4*testCS)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
	parent, _ := r.LoadIndex(ctx, m.Disks[0].Index)
	_ = r.DeletePoint(ctx, m.ID)
	if rep, err := r.GC(ctx, GCOptions{}); err != nil || rep.DeletedChunks != 4 {
		t.Fatalf("gc: %v %+v", err, rep)
	}
	cr := &countingReader{r: bytes.NewReader(img)}
	m2, st := writePoint(t, r, DiskSource{Reader: cr, Size: int64(len(img)), Parent: parent,
		Extents: []Extent{{0, int64(len(img)), ExtentUnchanged}}})
	if cr.n.Load() != int64(len(img)) || st.ChunksNew != 4 {
		t.Errorf("read %d bytes, %d new chunks; want the whole disk re-read", cr.n.Load(), st.ChunksNew)
	}
	readBack(t, r, m2.ID, img)
}
