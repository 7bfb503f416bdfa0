// Package catalogtest is the conformance suite every catalog.Catalog
// implementation must pass: the embedded SQLite catalog and the
// PostgreSQL one alike. It checks the behaviour the rest of kura relies
// on — points and their disks round-trip exactly, prefixes resolve,
// reconcile is scoped by host, jobs move through their phases, queued
// jobs are claimed once, interrupted jobs are recognised, damage,
// verification state and boot checks survive a rebuild, and the audit log
// keeps order.
package catalogtest

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/phase"
)

// Target is the implementation under test.
type Target struct {
	// New creates a fresh, empty catalog for one test and returns a
	// function that opens handles on it; handles opened with different
	// options (clock, host, pid) share the same data. Handles are closed
	// by the suite.
	New func(t *testing.T) func(opts catalog.Options) catalog.Catalog
}

// open creates a fresh catalog and opens one handle on it.
func (tg Target) open(t *testing.T, opts catalog.Options) catalog.Catalog {
	t.Helper()
	c := tg.New(t)(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Run runs the suite.
func Run(t *testing.T, tg Target) {
	for name, fn := range map[string]func(*testing.T, Target){
		"PointRoundTrip":               testPointRoundTrip,
		"AddPointIdempotentAndInvalid": testAddPointIdempotentAndInvalid,
		"PointPrefixLookup":            testPointPrefixLookup,
		"PointsFilterAndLatest":        testPointsFilterAndLatest,
		"VMsUpsertAndMarkMissing":      testVMsUpsertAndMarkMissing,
		"Rebuild":                      testRebuild,
		"Copies":                       testCopies,
		"Jobs":                         testJobs,
		"MarkInterrupted":              testMarkInterrupted,
		"Queue":                        testQueue,
		"JobLog":                       testJobLog,
		"Damage":                       testDamage,
		"VerifiedChunks":               testVerifiedChunks,
		"VMStatuses":                   testVMStatuses,
		"ScheduleRuns":                 testScheduleRuns,
		"Audit":                        testAudit,
		"BootChecks":                   testBootChecks,
		"Snapshot":                     testSnapshot,
	} {
		t.Run(name, func(t *testing.T) { fn(t, tg) })
	}
}

var t0 = time.Date(2026, 11, 21, 22, 0, 0, 123456789, time.UTC)

func samplePoint(id, repo, vmUUID, vmName string, started time.Time) catalog.Point {
	return catalog.Point{
		ID: id, RepoID: repo, VMUUID: vmUUID, VMName: vmName, Kind: catalog.KindIncremental,
		Parent: "parent-" + id, Consistency: "filesystem", Checkpoint: "kura-" + id,
		Started: started, Finished: started.Add(90 * time.Second),
		BytesRead: 1 << 30, BytesNew: 1 << 20, BytesStored: 1 << 19,
		Tags: []string{"nightly", "gold"}, Notes: []string{"agent frozen 2 filesystems"},
		Disks: []catalog.PointDisk{
			{Target: "vdb", Source: "/var/lib/libvirt/images/b.qcow2", Format: "qcow2", IndexID: "idx-b-" + id,
				Size: 8 << 30, BytesRead: 1 << 29, BytesNew: 1 << 19, BytesStored: 1 << 18, Incremental: true},
			{Target: "vda", Source: "/var/lib/libvirt/images/a.raw", Format: "raw", IndexID: "idx-a-" + id,
				Size: 4 << 30, BytesRead: 1 << 29, BytesNew: 1 << 19, BytesStored: 1 << 18},
		},
	}
}

func testPointRoundTrip(t *testing.T, tg Target) {
	c := tg.open(t, catalog.Options{})
	ctx := context.Background()
	want := samplePoint("3f2a9c", "repo-a", "uuid-1", "web", t0)
	if err := c.AddPoint(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := c.Point(ctx, "3f2a9c")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	// Zero times and empty lists survive as zero values.
	bare := catalog.Point{ID: "bare", RepoID: "repo-a", VMUUID: "uuid-2", VMName: "db", Kind: catalog.KindFull}
	if err := c.AddPoint(ctx, bare); err != nil {
		t.Fatal(err)
	}
	got, err = c.Point(ctx, "bare")
	if err != nil || !reflect.DeepEqual(got, bare) {
		t.Fatalf("bare point: %+v, %v", got, err)
	}
	repos, err := c.Repositories(ctx)
	if err != nil || len(repos) != 1 || repos[0].ID != "repo-a" {
		t.Fatalf("repositories %+v, %v", repos, err)
	}
	if err := c.UpsertRepository(ctx, catalog.Repository{ID: "repo-a", Location: "/srv/kura"}); err != nil {
		t.Fatal(err)
	}
	repos, _ = c.Repositories(ctx)
	if repos[0].Location != "/srv/kura" {
		t.Errorf("location %q", repos[0].Location)
	}
}

func testAddPointIdempotentAndInvalid(t *testing.T, tg Target) {
	c := tg.open(t, catalog.Options{})
	ctx := context.Background()
	p := samplePoint("p1", "r", "u", "vm", t0)
	for i := 0; i < 3; i++ {
		if err := c.AddPoint(ctx, p); err != nil {
			t.Fatalf("add #%d: %v", i, err)
		}
	}
	ps, err := c.Points(ctx, catalog.PointFilter{})
	if err != nil || len(ps) != 1 || len(ps[0].Disks) != 2 {
		t.Fatalf("after 3 adds: %d points, %v", len(ps), err)
	}
	// Re-adding with changed content replaces it, disks included.
	p.Disks = p.Disks[:1]
	p.Notes = nil
	if err := c.AddPoint(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, _ := c.Point(ctx, "p1")
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("replaced point:\n got %+v\nwant %+v", got, p)
	}
	for _, bad := range []catalog.Point{
		{ID: "x", RepoID: "r", VMUUID: "u", Kind: "differential"},
		{ID: "", RepoID: "r", VMUUID: "u", Kind: catalog.KindFull},
		{ID: "x", RepoID: "r", VMUUID: "u", Kind: catalog.KindFull, Disks: []catalog.PointDisk{{Target: "vda"}, {Target: "vda"}}},
	} {
		if err := c.AddPoint(ctx, bad); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("AddPoint(%+v) = %v, want catalog.ErrInvalid", bad, err)
		}
	}
}

func testPointPrefixLookup(t *testing.T, tg Target) {
	c := tg.open(t, catalog.Options{})
	ctx := context.Background()
	for i, id := range []string{"ab12", "ab34", "cd56", "cd", "a_%x"} {
		if err := c.AddPoint(ctx, samplePoint(id, "r", "u", "vm", t0.Add(time.Duration(i)*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		in   string
		want string
		err  error
	}{
		{"ab1", "ab12", nil},
		{"ab34", "ab34", nil},
		{"ab", "", catalog.ErrAmbiguous},
		{"cd", "cd", nil}, // exact match wins over longer IDs sharing the prefix
		{"cd5", "cd56", nil},
		{"AB1", "", catalog.ErrNotFound}, // case-sensitive
		{"a_", "a_%x", nil},              // LIKE wildcards are literal
		{"a%", "", catalog.ErrNotFound},
		{"zz", "", catalog.ErrNotFound},
	}
	for _, tc := range cases {
		got, err := c.Point(ctx, tc.in)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("Point(%q) err %v, want %v", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.ID != tc.want || len(got.Disks) != 2 {
			t.Errorf("Point(%q) = %q (%d disks), %v; want %q", tc.in, got.ID, len(got.Disks), err, tc.want)
		}
	}
}

func testPointsFilterAndLatest(t *testing.T, tg Target) {
	c := tg.open(t, catalog.Options{})
	ctx := context.Background()
	add := func(id, repo, uuid, name string, h int) {
		t.Helper()
		if err := c.AddPoint(ctx, samplePoint(id, repo, uuid, name, t0.Add(time.Duration(h)*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	add("p3", "r1", "u1", "web", 3)
	add("p1", "r1", "u1", "web", 1)
	add("p2", "r1", "u2", "db", 2)
	add("p4", "r2", "u1", "web", 4)
	ids := func(f catalog.PointFilter) []string {
		t.Helper()
		ps, err := c.Points(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range ps {
			if len(p.Disks) != 2 || p.Disks[0].Target != "vdb" {
				t.Errorf("point %s disks %+v", p.ID, p.Disks)
			}
			out = append(out, p.ID)
		}
		return out
	}
	check := func(f catalog.PointFilter, want ...string) {
		t.Helper()
		if got := ids(f); !reflect.DeepEqual(got, want) {
			t.Errorf("Points(%+v) = %v, want %v", f, got, want)
		}
	}
	check(catalog.PointFilter{}, "p1", "p2", "p3", "p4")
	check(catalog.PointFilter{VM: "web"}, "p1", "p3", "p4")
	check(catalog.PointFilter{VM: "u2"}, "p2")
	check(catalog.PointFilter{VM: "web", RepoID: "r1"}, "p1", "p3")
	check(catalog.PointFilter{Since: t0.Add(2 * time.Hour), Until: t0.Add(3 * time.Hour)}, "p2", "p3")
	check(catalog.PointFilter{VM: "nope"})

	p, err := c.LatestPoint(ctx, "r1", "u1")
	if err != nil || p.ID != "p3" || len(p.Disks) != 2 {
		t.Errorf("LatestPoint = %s, %v; want p3", p.ID, err)
	}
	if _, err := c.LatestPoint(ctx, "r2", "u2"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("LatestPoint none: %v", err)
	}
	if err := c.DeletePoint(ctx, "r1", "p3"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeletePoint(ctx, "r1", "p3"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := c.Point(ctx, "p3"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("deleted point: %v", err)
	}
	p, _ = c.LatestPoint(ctx, "r1", "u1")
	if p.ID != "p1" {
		t.Errorf("LatestPoint after delete = %s, want p1", p.ID)
	}
}

func testVMsUpsertAndMarkMissing(t *testing.T, tg Target) {
	c := tg.open(t, catalog.Options{Now: func() time.Time { return t0.Add(10 * time.Hour) }})
	ctx := context.Background()
	a := catalog.VM{UUID: "u1", Name: "web", Hypervisor: "libvirt", URI: "qemu:///system", Host: "h1",
		FirstSeen: t0, LastSeen: t0.Add(time.Hour)}
	if err := c.UpsertVM(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := c.UpsertVM(ctx, catalog.VM{UUID: "u2", Name: "db", URI: "qemu+ssh://h2/system"}); err != nil {
		t.Fatal(err)
	}
	// A later sighting renames and moves; first_seen stays the earliest.
	a2 := catalog.VM{UUID: "u1", Name: "web2", Hypervisor: "libvirt", URI: "qemu+ssh://h2/system", Host: "h2",
		FirstSeen: t0.Add(5 * time.Hour), LastSeen: t0.Add(6 * time.Hour)}
	if err := c.UpsertVM(ctx, a2); err != nil {
		t.Fatal(err)
	}
	vms, err := c.VMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []catalog.VM{
		{UUID: "u2", Name: "db", URI: "qemu+ssh://h2/system", FirstSeen: t0.Add(10 * time.Hour), LastSeen: t0.Add(10 * time.Hour)},
		{UUID: "u1", Name: "web2", Hypervisor: "libvirt", URI: "qemu+ssh://h2/system", Host: "h2",
			FirstSeen: t0, LastSeen: t0.Add(6 * time.Hour)},
	}
	if !reflect.DeepEqual(vms, want) {
		t.Fatalf("VMs:\n got %+v\nwant %+v", vms, want)
	}
	// Another host's inventory never marks h2's VMs missing.
	if newly, err := c.MarkMissing(ctx, catalog.Scope{Host: "h3", URI: "qemu:///system"}, nil); err != nil || len(newly) != 0 {
		t.Fatalf("MarkMissing of another host = %v, %v; want nothing", newly, err)
	}
	h2 := catalog.Scope{Host: "h2", URI: "qemu+ssh://h2/system"}
	newly, err := c.MarkMissing(ctx, h2, []string{"u1", "u9"})
	if err != nil || !reflect.DeepEqual(newly, []string{"u2"}) {
		t.Fatalf("MarkMissing = %v, %v; want [u2] (by URI: it has no host)", newly, err)
	}
	vms, _ = c.VMs(ctx)
	if !vms[0].Missing || vms[1].Missing {
		t.Errorf("missing flags: %+v", vms)
	}
	// The VM comes back: marked present again, nothing newly missing.
	newly, err = c.MarkMissing(ctx, h2, []string{"u1", "u2"})
	if err != nil || len(newly) != 0 {
		t.Fatalf("MarkMissing again = %v, %v", newly, err)
	}
	vms, _ = c.VMs(ctx)
	if vms[0].Missing || vms[1].Missing {
		t.Errorf("missing flags after return: %+v", vms)
	}
	if err := c.UpsertVM(ctx, catalog.VM{UUID: "u3"}); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("vm without name: %v", err)
	}
}

func testJobs(t *testing.T, tg Target) {
	clock, ticking := t0, false // each reading after the open advances a minute
	c := tg.open(t, catalog.Options{Now: func() time.Time {
		if ticking {
			clock = clock.Add(time.Minute)
		}
		return clock
	}})
	ticking = true
	ctx := context.Background()
	j1, err := c.StartJob(ctx, catalog.JobBackup)
	if err != nil {
		t.Fatal(err)
	}
	j2, err := c.StartJob(ctx, catalog.JobVerify)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartJob(ctx, "dance"); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("bad kind: %v", err)
	}
	recs := []catalog.JobVM{
		{JobID: j1.ID, VMName: "web", VMUUID: "u1", State: "Running", Attempts: 1},
		{JobID: j1.ID, VMName: "ghost", State: "Failed", Attempts: 1, Error: "no such vm"},
		{JobID: j1.ID, VMName: "web", VMUUID: "u1", State: "Completed", Attempts: 2, PointID: "p9"},
	}
	for _, r := range recs {
		if err := c.RecordJobVM(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.RecordJobVM(ctx, catalog.JobVM{JobID: "nope", VMName: "x"}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("job vm of unknown job: %v", err)
	}
	summary := map[string]int{"vms": 2, "failed": 1}
	if err := c.FinishJob(ctx, j1.ID, phase.PartiallyFailed, summary); err != nil {
		t.Fatal(err)
	}
	if err := c.FinishJob(ctx, j2.ID, phase.Running, nil); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("non-final state: %v", err)
	}
	if err := c.FinishJob(ctx, "nope", phase.Failed, nil); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}
	jobs, err := c.Jobs(ctx, 0)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("Jobs: %d, %v", len(jobs), err)
	}
	if jobs[0].ID != j2.ID || jobs[1].ID != j1.ID {
		t.Errorf("order: %s %s, want newest first", jobs[0].ID, jobs[1].ID)
	}
	if jobs[0].State != phase.Running || !jobs[0].Finished.IsZero() || !jobs[0].Started.Equal(j2.Started) {
		t.Errorf("running job %+v", jobs[0])
	}
	got := jobs[1]
	var sum map[string]int
	if err := json.Unmarshal(got.Summary, &sum); err != nil || !reflect.DeepEqual(sum, summary) {
		t.Errorf("summary %s, %v", got.Summary, err)
	}
	if got.State != phase.PartiallyFailed || got.Kind != catalog.JobBackup || !got.Finished.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("finished job %+v", got)
	}
	wantVMs := []catalog.JobVM{
		{JobID: j1.ID, VMName: "ghost", State: "Failed", Attempts: 1, Error: "no such vm"},
		{JobID: j1.ID, VMName: "web", VMUUID: "u1", State: "Completed", Attempts: 2, PointID: "p9"},
	}
	if !reflect.DeepEqual(got.VMs, wantVMs) {
		t.Errorf("job vms:\n got %+v\nwant %+v", got.VMs, wantVMs)
	}
	one, err := c.Jobs(ctx, 1)
	if err != nil || len(one) != 1 || one[0].ID != j2.ID || len(one[0].VMs) != 0 {
		t.Errorf("Jobs(1) = %+v, %v", one, err)
	}
	j, err := c.Job(ctx, j1.ID)
	if err != nil || !reflect.DeepEqual(j, got) {
		t.Errorf("Job = %+v, %v", j, err)
	}
	if _, err := c.Job(ctx, "nope"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Job(nope): %v", err)
	}
}

func testMarkInterrupted(t *testing.T, tg Target) {
	ctx := context.Background()
	clock := t0
	open := tg.New(t)
	as := func(host string, pid int) catalog.Catalog {
		c := open(catalog.Options{Now: func() time.Time { return clock }, Host: host, PID: pid})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	c := as("here", 999)
	start := func(host string, pid int) catalog.Job {
		t.Helper()
		j, err := as(host, pid).StartJob(ctx, catalog.JobBackup)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	dead := start("here", 111)  // its process died on this host
	alive := start("here", 222) // still running
	if err := c.RecordJobVM(ctx, catalog.JobVM{JobID: dead.ID, VMName: "web", VMUUID: "u1", State: phase.VMRunning, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordJobVM(ctx, catalog.JobVM{JobID: dead.ID, VMName: "db", VMUUID: "u2", State: phase.Succeeded, Attempts: 1, PointID: "p1"}); err != nil {
		t.Fatal(err)
	}
	clock = t0.Add(10 * time.Minute)
	if err := c.Heartbeat(ctx, dead.ID); err != nil {
		t.Fatal(err)
	}
	quiet := start("elsewhere", 333) // another host, silent since t0+10m
	clock = t0.Add(50 * time.Minute)
	fresh := start("elsewhere", 444) // another host, just started

	marked, err := c.MarkInterrupted(ctx, func(pid int) bool { return pid == 222 })
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, j := range marked {
		ids[j.ID] = true
	}
	if len(marked) != 2 || !ids[dead.ID] || !ids[quiet.ID] {
		t.Fatalf("marked %+v", marked)
	}
	got, _ := c.Job(ctx, dead.ID)
	if got.State != phase.Failed || !got.Finished.Equal(t0.Add(10*time.Minute)) ||
		!strings.Contains(got.Error, "interrupted: process 111 on here is gone") {
		t.Errorf("dead job: %+v", got)
	}
	for _, v := range got.VMs {
		want := map[string]phase.VM{"web": phase.VMFailed, "db": phase.Succeeded}[v.VMName]
		if v.State != want {
			t.Errorf("vm %s of the dead job: %s, want %s", v.VMName, v.State, want)
		}
	}
	for _, id := range []string{alive.ID, fresh.ID} {
		if j, _ := c.Job(ctx, id); j.State != phase.Running {
			t.Errorf("live job %s: %+v", id, j)
		}
	}
	if again, err := c.MarkInterrupted(ctx, func(int) bool { return true }); err != nil || len(again) != 0 {
		t.Errorf("second pass: %+v, %v", again, err)
	}
}

func testRebuild(t *testing.T, tg Target) {
	c := tg.open(t, catalog.Options{})
	ctx := context.Background()
	for i, id := range []string{"old1", "old2"} {
		if err := c.AddPoint(ctx, samplePoint(id, "r1", "u1", "web", t0.Add(time.Duration(i)*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddPoint(ctx, samplePoint("other", "r2", "u1", "web", t0)); err != nil {
		t.Fatal(err)
	}
	fresh := []catalog.Point{
		samplePoint("old2", "r1", "u1", "web", t0.Add(5*time.Hour)),
		samplePoint("new1", "r1", "u2", "db", t0.Add(6*time.Hour)),
	}
	vms := []catalog.VM{{UUID: "u1", Name: "web", FirstSeen: t0, LastSeen: t0}, {UUID: "u2", Name: "db", FirstSeen: t0, LastSeen: t0}}
	// Verification and damage are the catalog's own state: a rebuild
	// (which replaces the points) keeps them.
	if err := c.MarkPointsVerified(ctx, []string{"old2"}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkDamaged(ctx, "r1", []catalog.Damage{{Object: "chunks/aa/aa", Kind: "corrupt", Points: []string{"old2"}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rebuild(ctx, "r1", fresh, vms); err != nil {
		t.Fatal(err)
	}
	if p, err := c.Point(ctx, "old2"); err != nil || !p.Damaged || !p.Verified.Equal(t0.Add(time.Hour)) {
		t.Errorf("old2 after rebuild: damaged %v verified %v, %v", p.Damaged, p.Verified, err)
	}
	ps, err := c.Points(ctx, catalog.PointFilter{RepoID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].ID != "old2" || !ps[0].Started.Equal(t0.Add(5*time.Hour)) || ps[1].ID != "new1" {
		t.Fatalf("after rebuild: %+v", ps)
	}
	if _, err := c.Point(ctx, "old1"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("old1 survived rebuild: %v", err)
	}
	if _, err := c.Point(ctx, "other"); err != nil {
		t.Errorf("point of another repository lost: %v", err)
	}
	got, _ := c.VMs(ctx)
	if len(got) != 2 {
		t.Errorf("vms after rebuild: %+v", got)
	}

	// A failing rebuild leaves everything as it was.
	bad := []catalog.Point{samplePoint("x1", "r1", "u1", "web", t0), {ID: "x2", RepoID: "r1", VMUUID: "u1", Kind: "bogus"}}
	if err := c.Rebuild(ctx, "r1", bad, nil); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("bad rebuild: %v", err)
	}
	wrongRepo := []catalog.Point{samplePoint("y1", "r9", "u1", "web", t0)}
	if err := c.Rebuild(ctx, "r1", wrongRepo, nil); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("rebuild with foreign point: %v", err)
	}
	ps, _ = c.Points(ctx, catalog.PointFilter{RepoID: "r1"})
	if len(ps) != 2 || ps[0].ID != "old2" || ps[1].ID != "new1" {
		t.Fatalf("failed rebuild changed the catalog: %+v", ps)
	}
}

func testQueue(t *testing.T, tg Target) {
	ctx := context.Background()
	open := tg.New(t)
	a := open(catalog.Options{Host: "h", PID: 1})
	b := open(catalog.Options{Host: "h", PID: 2})
	defer a.Close()
	defer b.Close()
	j, err := a.EnqueueJob(ctx, catalog.JobSpec{Kind: catalog.JobBackup, Group: "web", Trigger: "schedule:web/0",
		Params: json.RawMessage(`{"full":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	if j.State != phase.New || j.Queued.IsZero() || !j.Started.IsZero() {
		t.Fatalf("queued job %+v", j)
	}
	if _, err := a.EnqueueJob(ctx, catalog.JobSpec{Kind: "dance"}); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("bad kind: %v", err)
	}
	queued, err := b.FindJobs(ctx, catalog.JobFilter{State: phase.New})
	if err != nil || len(queued) != 1 || queued[0].ID != j.ID || queued[0].Group != "web" ||
		string(queued[0].Params) != `{"full":true}` || queued[0].Trigger != "schedule:web/0" {
		t.Fatalf("queued jobs %+v, %v", queued, err)
	}
	// Two runners race: exactly one claims it.
	got, errA := a.ClaimJob(ctx, j.ID)
	_, errB := b.ClaimJob(ctx, j.ID)
	if errA != nil || !errors.Is(errB, catalog.ErrNotFound) || got.State != phase.Running || got.PID != 1 || got.Started.IsZero() {
		t.Fatalf("claims: %+v %v / %v", got, errA, errB)
	}
	// Cancelling a running job flags it; its runner sees the flag.
	if err := b.RequestCancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Job(ctx, j.ID); !got.CancelRequested || got.State != phase.Running {
		t.Fatalf("after cancel request: %+v", got)
	}
	if err := a.FinishJob(ctx, j.ID, phase.Cancelled, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.RequestCancel(ctx, j.ID); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("cancel of a finished job: %v", err)
	}
	// A queued job cancelled before it starts never runs.
	k, _ := a.EnqueueJob(ctx, catalog.JobSpec{Kind: catalog.JobVerify, Group: "db"})
	if err := a.RequestCancel(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ClaimJob(ctx, k.ID); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("claim of a cancelled job: %v", err)
	}
	if got, _ := a.Job(ctx, k.ID); got.State != phase.Cancelled {
		t.Errorf("cancelled queued job: %+v", got)
	}
	if err := a.RequestCancel(ctx, "nope"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("cancel unknown: %v", err)
	}
	byGroup, _ := a.FindJobs(ctx, catalog.JobFilter{Group: "db"})
	byKind, _ := a.FindJobs(ctx, catalog.JobFilter{Kind: catalog.JobBackup})
	if len(byGroup) != 1 || byGroup[0].ID != k.ID || len(byKind) != 1 || byKind[0].ID != j.ID {
		t.Errorf("filters: group %+v kind %+v", byGroup, byKind)
	}
}

func testJobLog(t *testing.T, tg Target) {
	ctx := context.Background()
	c := tg.open(t, catalog.Options{})
	j, err := c.StartJob(ctx, catalog.JobBackup)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := c.AppendJobLog(ctx, j.ID, []catalog.LogLine{
			{Time: t0, Level: "INFO", Message: "line a" + string(rune('0'+i)), Attrs: json.RawMessage(`{"vm":"web"}`)},
			{Time: t0, Level: "WARN", Message: "line b" + string(rune('0'+i))},
		}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := c.JobLog(ctx, j.ID, 0, 0)
	if err != nil || len(all) != 6 {
		t.Fatalf("log: %d lines, %v", len(all), err)
	}
	for i, l := range all {
		if l.Seq != int64(i+1) {
			t.Errorf("line %d has seq %d", i, l.Seq)
		}
	}
	if all[0].Message != "line a0" || string(all[0].Attrs) != `{"vm":"web"}` || all[1].Attrs != nil || !all[0].Time.Equal(t0) {
		t.Errorf("lines %+v", all[:2])
	}
	tail, _ := c.JobLog(ctx, j.ID, 4, 1)
	if len(tail) != 1 || tail[0].Seq != 5 {
		t.Errorf("after 4, limit 1: %+v", tail)
	}
	if err := c.AppendJobLog(ctx, "nope", []catalog.LogLine{{Message: "x"}}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("log of an unknown job: %v", err)
	}
}

func testDamage(t *testing.T, tg Target) {
	ctx := context.Background()
	c := tg.open(t, catalog.Options{Now: func() time.Time { return t0 }})
	for i, id := range []string{"p1", "p2", "p3"} {
		if err := c.AddPoint(ctx, samplePoint(id, "r1", "u1", "web", t0.Add(time.Duration(i)*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	dmg := []catalog.Damage{
		{Object: "chunks/ab/ab01", Kind: "corrupt", Detail: "authentication failed", Points: []string{"p1", "p2"}},
		{Object: "indexes/cd02", Kind: "missing", Points: []string{"p2"}},
	}
	if err := c.MarkDamaged(ctx, "r1", dmg); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkDamaged(ctx, "r1", dmg[:1]); err != nil { // idempotent
		t.Fatal(err)
	}
	got, err := c.Damaged(ctx, "r1")
	if err != nil || len(got) != 2 || got[0].Object != "chunks/ab/ab01" || !reflect.DeepEqual(got[0].Points, []string{"p1", "p2"}) ||
		!got[0].Found.Equal(t0) || got[1].Kind != "missing" {
		t.Fatalf("damage %+v, %v", got, err)
	}
	ps, _ := c.Points(ctx, catalog.PointFilter{})
	if !ps[0].Damaged || !ps[1].Damaged || ps[2].Damaged {
		t.Errorf("damaged flags %v %v %v", ps[0].Damaged, ps[1].Damaged, ps[2].Damaged)
	}
	if err := c.ClearDamage(ctx, "r1", []string{"chunks/ab/ab01"}); err != nil {
		t.Fatal(err)
	}
	if p, _ := c.Point(ctx, "p1"); p.Damaged {
		t.Error("p1 still damaged after its only problem was cleared")
	}
	if p, _ := c.Point(ctx, "p2"); !p.Damaged {
		t.Error("p2 no longer damaged though its index is missing")
	}
	if err := c.ClearDamage(ctx, "r1", nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Damaged(ctx, "r1"); len(got) != 0 {
		t.Errorf("after clearing all: %+v", got)
	}
}

func testVerifiedChunks(t *testing.T, tg Target) {
	ctx := context.Background()
	c := tg.open(t, catalog.Options{})
	if err := c.MarkChunksVerified(ctx, "r1", []string{"a1", "a2"}, t0); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkChunksVerified(ctx, "r1", []string{"a2", "a3"}, t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkChunksVerified(ctx, "r2", []string{"a1"}, t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := c.ChunksVerifiedSince(ctx, "r1", t0.Add(24*time.Hour), func(d string) error {
		got = append(got, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(sorted(got), ",") != "a2,a3" {
		t.Errorf("verified since a day after: %v", got)
	}
	stop := errors.New("stop")
	if err := c.ChunksVerifiedSince(ctx, "r1", time.Time{}, func(string) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("callback error: %v", err)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func testVMStatuses(t *testing.T, tg Target) {
	ctx := context.Background()
	c := tg.open(t, catalog.Options{})
	for _, v := range []catalog.VM{{UUID: "u1", Name: "web"}, {UUID: "u2", Name: "db"}, {UUID: "u3", Name: "idle"}} {
		if err := c.UpsertVM(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	add := func(id, repo, uuid string, h int) {
		t.Helper()
		if err := c.AddPoint(ctx, samplePoint(id, repo, uuid, "x", t0.Add(time.Duration(h)*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	add("w1", "r1", "u1", 1)
	add("w2", "r1", "u1", 2)
	add("w3", "r1", "u1", 3)
	add("d1", "r1", "u2", 1)
	add("o1", "r2", "u2", 9)
	if err := c.MarkDamaged(ctx, "r1", []catalog.Damage{{Object: "chunks/x", Kind: "corrupt", Points: []string{"w3"}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkPointsVerified(ctx, []string{"w1", "w2"}, t0.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	st, err := c.VMStatuses(ctx, "r1")
	if err != nil || len(st) != 2 {
		t.Fatalf("statuses %+v, %v", st, err)
	}
	db, web := st[0], st[1]
	if web.Name != "web" || web.Points != 3 || web.Damaged != 1 || web.NewestID != "w3" || web.NewestGoodID != "w2" ||
		!web.NewestGood.Equal(t0.Add(2*time.Hour)) || web.BytesStored != 3<<19 || web.LastBytesNew != 1<<20 ||
		!web.NewestVerified.Equal(t0.Add(5*time.Hour)) {
		t.Errorf("web status %+v", web)
	}
	if db.Name != "db" || db.Points != 1 || db.NewestID != "d1" || db.NewestGoodID != "d1" {
		t.Errorf("db status in r1 %+v", db)
	}
	all, _ := c.VMStatuses(ctx, "")
	if len(all) != 2 || all[0].Points != 2 || all[0].NewestID != "o1" {
		t.Errorf("statuses across repositories %+v", all)
	}
}

func testScheduleRuns(t *testing.T, tg Target) {
	ctx := context.Background()
	c := tg.open(t, catalog.Options{})
	if err := c.RecordScheduleRun(ctx, catalog.ScheduleRun{ID: "web/backup/0", Last: t0, Job: "j1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordScheduleRun(ctx, catalog.ScheduleRun{ID: "web/backup/0", Last: t0.Add(time.Hour), Job: "j2"}); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordScheduleRun(ctx, catalog.ScheduleRun{ID: "db/verify/0", Last: t0}); err != nil {
		t.Fatal(err)
	}
	runs, err := c.ScheduleRuns(ctx)
	if err != nil || len(runs) != 2 || !runs["web/backup/0"].Last.Equal(t0.Add(time.Hour)) || runs["web/backup/0"].Job != "j2" {
		t.Fatalf("runs %+v, %v", runs, err)
	}
	if err := c.RecordScheduleRun(ctx, catalog.ScheduleRun{ID: "x"}); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("run without time: %v", err)
	}
}

func testAudit(t *testing.T, tg Target) {
	ctx := context.Background()
	c := tg.open(t, catalog.Options{Now: func() time.Time { return t0 }})
	for i, e := range []catalog.AuditEntry{
		{Actor: "alice", Action: "group.update", Target: "web", Outcome: "ok", Remote: "127.0.0.1", Detail: json.RawMessage(`{"rpo":"26h"}`)},
		{Actor: "bob", Action: "restore", Target: "20261121T233000Z-0a1b2c3d", Outcome: "denied"},
		{Actor: "alice", Action: "restore", Target: "20261121T233000Z-0a1b2c3d", Outcome: "ok", Time: t0.Add(time.Hour)},
	} {
		if err := c.AppendAudit(ctx, e); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	all, err := c.Audit(ctx, catalog.AuditFilter{})
	if err != nil || len(all) != 3 || all[0].Actor != "alice" || all[0].Action != "restore" || all[2].Action != "group.update" ||
		string(all[2].Detail) != `{"rpo":"26h"}` || !all[2].Time.Equal(t0) || all[0].Seq <= all[1].Seq {
		t.Fatalf("audit %+v, %v", all, err)
	}
	restores, _ := c.Audit(ctx, catalog.AuditFilter{Action: "restore", Actor: "alice"})
	recent, _ := c.Audit(ctx, catalog.AuditFilter{Since: t0.Add(time.Minute), Limit: 5})
	if len(restores) != 1 || len(recent) != 1 || recent[0].Outcome != "ok" {
		t.Errorf("filtered: %+v / %+v", restores, recent)
	}
	if err := c.AppendAudit(ctx, catalog.AuditEntry{Action: "x"}); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("entry without actor: %v", err)
	}
}

// testSnapshot: a snapshot holds everything, and the catalog goes on.
func testSnapshot(t *testing.T, tg Target) {
	ctx := context.Background()
	c := tg.open(t, catalog.Options{})
	if err := c.AddPoint(ctx, samplePoint("p1", "r1", "u1", "web", t0)); err != nil {
		t.Fatal(err)
	}
	if err := c.AppendAudit(ctx, catalog.AuditEntry{Actor: "a", Action: "x"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "snap.db")
	if err := c.Snapshot(ctx, path); err != nil {
		t.Fatal(err)
	}
	if err := c.Snapshot(ctx, path); err == nil {
		t.Error("snapshot over an existing file")
	}
	snap, err := catalog.OpenWith(ctx, path, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if p, err := snap.Point(ctx, "p1"); err != nil || len(p.Disks) != 2 {
		t.Errorf("point in the snapshot: %+v %v", p, err)
	}
	if es, _ := snap.Audit(ctx, catalog.AuditFilter{}); len(es) != 1 {
		t.Errorf("audit in the snapshot: %+v", es)
	}
}

// testCopies: a point copied to another repository (same id) is one point
// listed with its copies; deleting it from its home repository moves it
// to a copy, from the last one removes it; rebuilds keep both sides.
func testCopies(t *testing.T, tg Target) {
	ctx := context.Background()
	c := tg.open(t, catalog.Options{})
	p := samplePoint("cp1", "home", "u1", "web", t0)
	if err := c.AddPoint(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := c.AddCopy(ctx, "offsite", "missing"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("AddCopy of an unknown point: %v", err)
	}
	if err := c.AddCopy(ctx, "offsite", "cp1"); err != nil {
		t.Fatal(err)
	}
	if err := c.AddCopy(ctx, "offsite", "cp1"); err != nil {
		t.Fatalf("AddCopy again: %v", err)
	}
	// The copy repository's own record of the point (its catalog rebuilt,
	// or a CLI run on it) adds to the copies, replacing nothing.
	other := p
	other.RepoID, other.VMName = "vault", "renamed"
	if err := c.AddPoint(ctx, other); err != nil {
		t.Fatal(err)
	}
	got, err := c.Point(ctx, "cp1")
	if err != nil || got.RepoID != "home" || got.VMName != "web" || !slices.Equal(got.Copies, []string{"offsite", "vault"}) {
		t.Fatalf("point with copies: %+v %v", got, err)
	}
	for _, repo := range []string{"home", "offsite", "vault"} {
		ps, err := c.Points(ctx, catalog.PointFilter{RepoID: repo})
		if err != nil || len(ps) != 1 || !slices.Equal(ps[0].Copies, []string{"offsite", "vault"}) {
			t.Errorf("points of %s: %+v %v", repo, ps, err)
		}
		if lp, err := c.LatestPoint(ctx, repo, "u1"); err != nil || lp.ID != "cp1" {
			t.Errorf("latest point of %s: %v %v", repo, lp.ID, err)
		}
	}
	if st, _ := c.VMStatuses(ctx, ""); len(st) != 1 || st[0].Points != 1 {
		t.Errorf("statuses count the point once: %+v", st)
	}
	if err := c.DeletePoint(ctx, "vault", "cp1"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeletePoint(ctx, "vault", "cp1"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("deleting from a repository that no longer holds it: %v", err)
	}
	// The home repository prunes it: the off-site copy keeps it listed.
	if err := c.DeletePoint(ctx, "home", "cp1"); err != nil {
		t.Fatal(err)
	}
	got, err = c.Point(ctx, "cp1")
	if err != nil || got.RepoID != "offsite" || len(got.Copies) != 0 || len(got.Disks) != 2 {
		t.Fatalf("after the home deleted it: %+v %v", got, err)
	}
	if st, _ := c.VMStatuses(ctx, "offsite"); len(st) != 1 || st[0].Points != 1 {
		t.Errorf("offsite status: %+v", st)
	}
	if st, _ := c.VMStatuses(ctx, "home"); len(st) != 0 {
		t.Errorf("home status after the move: %+v", st)
	}
	// Rebuilds: home gets it back (a copy again, offsite stays its home);
	// offsite rebuilt without it hands it to home.
	if err := c.Rebuild(ctx, "home", []catalog.Point{p}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ = c.Point(ctx, "cp1"); got.RepoID != "offsite" || !slices.Equal(got.Copies, []string{"home"}) {
		t.Fatalf("after rebuilding home: %+v", got)
	}
	if err := c.Rebuild(ctx, "offsite", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ = c.Point(ctx, "cp1"); got.RepoID != "home" || len(got.Copies) != 0 {
		t.Fatalf("after rebuilding offsite without it: %+v", got)
	}
	if st, _ := c.VMStatuses(ctx, "home"); len(st) != 1 || st[0].Points != 1 {
		t.Errorf("home status after the rebuilds: %+v", st)
	}
	if err := c.DeletePoint(ctx, "home", "cp1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Point(ctx, "cp1"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("after the last repository deleted it: %v", err)
	}
}
