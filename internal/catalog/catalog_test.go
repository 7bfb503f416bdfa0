package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/phase"
)

func openTest(t *testing.T) (*Catalog, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "dir", "catalog.db")
	c, err := Open(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, path
}

var t0 = time.Date(2026, 11, 21, 22, 0, 0, 123456789, time.UTC)

func samplePoint(id, repo, vmUUID, vmName string, started time.Time) Point {
	return Point{
		ID: id, RepoID: repo, VMUUID: vmUUID, VMName: vmName, Kind: KindIncremental,
		Parent: "parent-" + id, Consistency: "filesystem", Checkpoint: "kura-" + id,
		Started: started, Finished: started.Add(90 * time.Second),
		BytesRead: 1 << 30, BytesNew: 1 << 20, BytesStored: 1 << 19,
		Tags: []string{"nightly", "gold"}, Notes: []string{"agent frozen 2 filesystems"},
		Disks: []PointDisk{
			{Target: "vdb", Source: "/var/lib/libvirt/images/b.qcow2", Format: "qcow2", IndexID: "idx-b-" + id,
				Size: 8 << 30, BytesRead: 1 << 29, BytesNew: 1 << 19, BytesStored: 1 << 18, Incremental: true},
			{Target: "vda", Source: "/var/lib/libvirt/images/a.raw", Format: "raw", IndexID: "idx-a-" + id,
				Size: 4 << 30, BytesRead: 1 << 29, BytesNew: 1 << 19, BytesStored: 1 << 18},
		},
	}
}

func TestOpenCreatesPrivateFileAndMigrates(t *testing.T) {
	c, path := openTest(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("catalog file mode %v, want 0600", fi.Mode().Perm())
	}
	ctx := context.Background()
	v, err := currentVersion(ctx, c.r)
	if err != nil || v != SchemaVersion() {
		t.Fatalf("schema version %d, %v; want %d", v, err, SchemaVersion())
	}
	var mode string
	if err := c.r.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q, %v; want wal", mode, err)
	}
	var fk int
	if err := c.w.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys %d, %v; want 1", fk, err)
	}
	if err := c.AddPoint(ctx, samplePoint("p1", "r1", "u1", "vm1", t0)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: no migration re-applied, data still there.
	c2, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer c2.Close()
	var n int
	if err := c2.r.QueryRowContext(ctx, `SELECT count(*) FROM schema_version`).Scan(&n); err != nil || n != SchemaVersion() {
		t.Errorf("schema_version rows %d, %v; want %d", n, err, SchemaVersion())
	}
	if _, err := c2.Point(ctx, "p1"); err != nil {
		t.Errorf("point after reopen: %v", err)
	}
}

func TestPointRoundTrip(t *testing.T) {
	c, _ := openTest(t)
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
	bare := Point{ID: "bare", RepoID: "repo-a", VMUUID: "uuid-2", VMName: "db", Kind: KindFull}
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
	if err := c.UpsertRepository(ctx, Repository{ID: "repo-a", Location: "/srv/kura"}); err != nil {
		t.Fatal(err)
	}
	repos, _ = c.Repositories(ctx)
	if repos[0].Location != "/srv/kura" {
		t.Errorf("location %q", repos[0].Location)
	}
}

func TestAddPointIdempotentAndInvalid(t *testing.T) {
	c, _ := openTest(t)
	ctx := context.Background()
	p := samplePoint("p1", "r", "u", "vm", t0)
	for i := 0; i < 3; i++ {
		if err := c.AddPoint(ctx, p); err != nil {
			t.Fatalf("add #%d: %v", i, err)
		}
	}
	ps, err := c.Points(ctx, PointFilter{})
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
	for _, bad := range []Point{
		{ID: "x", RepoID: "r", VMUUID: "u", Kind: "differential"},
		{ID: "", RepoID: "r", VMUUID: "u", Kind: KindFull},
		{ID: "x", RepoID: "r", VMUUID: "u", Kind: KindFull, Disks: []PointDisk{{Target: "vda"}, {Target: "vda"}}},
	} {
		if err := c.AddPoint(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddPoint(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestPointPrefixLookup(t *testing.T) {
	c, _ := openTest(t)
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
		{"ab", "", ErrAmbiguous},
		{"cd", "cd", nil}, // exact match wins over longer IDs sharing the prefix
		{"cd5", "cd56", nil},
		{"AB1", "", ErrNotFound}, // case-sensitive
		{"a_", "a_%x", nil},      // LIKE wildcards are literal
		{"a%", "", ErrNotFound},
		{"zz", "", ErrNotFound},
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

func TestPointsFilterAndLatest(t *testing.T) {
	c, _ := openTest(t)
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
	ids := func(f PointFilter) []string {
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
	check := func(f PointFilter, want ...string) {
		t.Helper()
		if got := ids(f); !reflect.DeepEqual(got, want) {
			t.Errorf("Points(%+v) = %v, want %v", f, got, want)
		}
	}
	check(PointFilter{}, "p1", "p2", "p3", "p4")
	check(PointFilter{VM: "web"}, "p1", "p3", "p4")
	check(PointFilter{VM: "u2"}, "p2")
	check(PointFilter{VM: "web", RepoID: "r1"}, "p1", "p3")
	check(PointFilter{Since: t0.Add(2 * time.Hour), Until: t0.Add(3 * time.Hour)}, "p2", "p3")
	check(PointFilter{VM: "nope"})

	p, err := c.LatestPoint(ctx, "r1", "u1")
	if err != nil || p.ID != "p3" || len(p.Disks) != 2 {
		t.Errorf("LatestPoint = %s, %v; want p3", p.ID, err)
	}
	if _, err := c.LatestPoint(ctx, "r2", "u2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LatestPoint none: %v", err)
	}
	if err := c.DeletePoint(ctx, "p3"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeletePoint(ctx, "p3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	var n int
	if err := c.r.QueryRowContext(ctx, `SELECT count(*) FROM point_disks WHERE point_id = 'p3'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("disks of deleted point: %d, %v", n, err)
	}
	p, _ = c.LatestPoint(ctx, "r1", "u1")
	if p.ID != "p1" {
		t.Errorf("LatestPoint after delete = %s, want p1", p.ID)
	}
}

func TestVMsUpsertAndMarkMissing(t *testing.T) {
	c, _ := openTest(t)
	ctx := context.Background()
	c.now = func() time.Time { return t0.Add(10 * time.Hour) }
	a := VM{UUID: "u1", Name: "web", Hypervisor: "libvirt", URI: "qemu:///system", Host: "h1",
		FirstSeen: t0, LastSeen: t0.Add(time.Hour)}
	if err := c.UpsertVM(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := c.UpsertVM(ctx, VM{UUID: "u2", Name: "db", URI: "qemu+ssh://h2/system"}); err != nil {
		t.Fatal(err)
	}
	// A later sighting renames and moves; first_seen stays the earliest.
	a2 := VM{UUID: "u1", Name: "web2", Hypervisor: "libvirt", URI: "qemu+ssh://h2/system", Host: "h2",
		FirstSeen: t0.Add(5 * time.Hour), LastSeen: t0.Add(6 * time.Hour)}
	if err := c.UpsertVM(ctx, a2); err != nil {
		t.Fatal(err)
	}
	vms, err := c.VMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []VM{
		{UUID: "u2", Name: "db", URI: "qemu+ssh://h2/system", FirstSeen: t0.Add(10 * time.Hour), LastSeen: t0.Add(10 * time.Hour)},
		{UUID: "u1", Name: "web2", Hypervisor: "libvirt", URI: "qemu+ssh://h2/system", Host: "h2",
			FirstSeen: t0, LastSeen: t0.Add(6 * time.Hour)},
	}
	if !reflect.DeepEqual(vms, want) {
		t.Fatalf("VMs:\n got %+v\nwant %+v", vms, want)
	}
	// Another host's inventory never marks h2's VMs missing.
	if newly, err := c.MarkMissing(ctx, Scope{Host: "h3", URI: "qemu:///system"}, nil); err != nil || len(newly) != 0 {
		t.Fatalf("MarkMissing of another host = %v, %v; want nothing", newly, err)
	}
	h2 := Scope{Host: "h2", URI: "qemu+ssh://h2/system"}
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
	if err := c.UpsertVM(ctx, VM{UUID: "u3"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("vm without name: %v", err)
	}
}

func TestJobs(t *testing.T) {
	c, _ := openTest(t)
	ctx := context.Background()
	clock := t0
	c.now = func() time.Time { clock = clock.Add(time.Minute); return clock }
	j1, err := c.StartJob(ctx, JobBackup)
	if err != nil {
		t.Fatal(err)
	}
	j2, err := c.StartJob(ctx, JobVerify)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartJob(ctx, "dance"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad kind: %v", err)
	}
	recs := []JobVM{
		{JobID: j1.ID, VMName: "web", VMUUID: "u1", State: "Running", Attempts: 1},
		{JobID: j1.ID, VMName: "ghost", State: "Failed", Attempts: 1, Error: "no such vm"},
		{JobID: j1.ID, VMName: "web", VMUUID: "u1", State: "Completed", Attempts: 2, PointID: "p9"},
	}
	for _, r := range recs {
		if err := c.RecordJobVM(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.RecordJobVM(ctx, JobVM{JobID: "nope", VMName: "x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("job vm of unknown job: %v", err)
	}
	summary := map[string]int{"vms": 2, "failed": 1}
	if err := c.FinishJob(ctx, j1.ID, phase.PartiallyFailed, summary); err != nil {
		t.Fatal(err)
	}
	if err := c.FinishJob(ctx, j2.ID, phase.Running, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("non-final state: %v", err)
	}
	if err := c.FinishJob(ctx, "nope", phase.Failed, nil); !errors.Is(err, ErrNotFound) {
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
	if got.State != phase.PartiallyFailed || got.Kind != JobBackup || !got.Finished.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("finished job %+v", got)
	}
	wantVMs := []JobVM{
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
	if _, err := c.Job(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Job(nope): %v", err)
	}
}

func TestMarkInterrupted(t *testing.T) {
	c, _ := openTest(t)
	ctx := context.Background()
	clock := t0
	c.now = func() time.Time { return clock }
	start := func(host string, pid int) Job {
		t.Helper()
		c.host, c.pid = host, pid
		j, err := c.StartJob(ctx, JobBackup)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	dead := start("here", 111)  // its process died on this host
	alive := start("here", 222) // still running
	if err := c.RecordJobVM(ctx, JobVM{JobID: dead.ID, VMName: "web", VMUUID: "u1", State: phase.VMRunning, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordJobVM(ctx, JobVM{JobID: dead.ID, VMName: "db", VMUUID: "u2", State: phase.Succeeded, Attempts: 1, PointID: "p1"}); err != nil {
		t.Fatal(err)
	}
	clock = t0.Add(10 * time.Minute)
	if err := c.Heartbeat(ctx, dead.ID); err != nil {
		t.Fatal(err)
	}
	quiet := start("elsewhere", 333) // another host, silent since t0+10m
	clock = t0.Add(50 * time.Minute)
	fresh := start("elsewhere", 444) // another host, just started
	c.host, c.pid = "here", 999

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
