package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/service"
	"github.com/kurabackup/kura/internal/testenv"
)

// TestBackupRunningGuest backs up a running guest with an agent through the
// kura command line: a quiesced full, an incremental holding files written
// in the guest, a backup killed in the middle and cleaned up, the
// incremental after it, an offline incremental after shutdown, and a
// catalog rebuilt from the repository.
//
// vdb is never mounted by the guest: it starts as 256 MiB of random data
// and changes only through qemu-io in the VM's monitor, so the test keeps
// an exact model of it and compares every point's vdb with it.
func TestBackupRunningGuest(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "virsh")
	testenv.NeedTool(t, "qemu-nbd")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const chunk = 4 << 20

	vdbPath, vdb := randomQcow2(t, imageDir(t, env), "vdb", 256<<20)
	g := env.NewGuest(t, testenv.GuestOptions{Agent: true, Start: true, MemoryMiB: 192, Disks: []testenv.DiskSpec{
		{SizeMiB: 64, Files: map[string][]byte{"hello.txt": []byte("hello\n")}},
		{Target: "vdb", Path: vdbPath},
	}})
	c := newCLIRepo(t)
	bootStart := time.Now()
	if err := g.WaitAgent(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("guest booted, agent up in %v", time.Since(bootStart).Round(time.Millisecond))

	// vm list shows the guest, its agent and both disks as protectable.
	var vms []hypervisor.VM
	if err := json.Unmarshal([]byte(c.ok(t, "vm", "list", "--json")), &vms); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(vms, func(v hypervisor.VM) bool { return v.Name == g.Name() })
	if i < 0 {
		t.Fatalf("vm list does not show %s", g.Name())
	}
	if v := vms[i]; v.UUID != g.UUID() || v.State != hypervisor.PowerOn || !v.HasAgent || len(v.Disks) != 2 ||
		!v.Disks[0].Protectable || !v.Disks[1].Protectable || v.Disks[1].Source != vdbPath || v.Disks[1].Size != 256<<20 {
		t.Fatalf("vm list: %+v", v)
	}

	// 1. Quiesced full backup: the guest's fsfreeze hook ran freeze then thaw.
	rep := c.backup(t, 0, g.Name(), "--retries", "0")
	p1 := vmResult(t, rep, g.Name()).Point
	if p1.Kind != "full" || p1.Consistency != "application" || len(p1.Disks) != 2 || p1.Checkpoint == "" {
		t.Fatalf("first point: %+v", p1)
	}
	t.Logf("P1 full, application: read %s in %v", mib(p1.Stats.BytesRead), p1.Finished.Sub(p1.Started).Round(time.Millisecond))
	checkFreezeLog(t, ctx, g, 1)
	r := c.open(t, ctx)
	sameBytes(t, "P1 vdb", pointDisk(t, ctx, r, p1, "vdb"), vdb)

	// 2. Files written in the guest and blocks written by QEMU end up in
	// the incremental, which reads about what changed.
	sh(t, ctx, g, "dd if=/dev/urandom of=/mnt/data/new.bin bs=1M count=8 2>/dev/null && "+
		"echo 'written between two backups' > /mnt/data/note.txt && sync")
	sums := sh(t, ctx, g, "cd /mnt/data && sha256sum new.bin note.txt")
	patternWrite(t, ctx, g, "vdb", vdb, 0x5a, 100<<20, 2<<20)
	patternWrite(t, ctx, g, "vdb", vdb, 0xa5, 200<<20+512<<10, 1<<20)
	rep = c.backup(t, 0, g.Name(), "--retries", "0")
	p2 := vmResult(t, rep, g.Name()).Point
	if p2.Kind != "incremental" || p2.Parent != p1.ID || p2.Consistency != "application" {
		t.Fatalf("second point: kind %s parent %s (want %s) consistency %s", p2.Kind, p2.Parent, p1.ID, p2.Consistency)
	}
	checkFreezeLog(t, ctx, g, 2)
	va, vb := diskStats(p2, "vda"), diskStats(p2, "vdb")
	t.Logf("P2 incremental: vda changed ~8 MiB + a small file, read %s (full read %s); vdb changed 3 MiB in 2 chunks, read %s; %v",
		mib(va.BytesRead), mib(diskStats(p1, "vda").BytesRead), mib(vb.BytesRead), p2.Finished.Sub(p2.Started).Round(time.Millisecond))
	if vb.BytesRead < 3<<20 || vb.BytesRead > 2*chunk {
		t.Errorf("P2 read %d bytes of vdb for 3 MiB changed in two chunks", vb.BytesRead)
	}
	if va.BytesRead < 8<<20 || va.BytesRead > 8<<20+4*chunk {
		t.Errorf("P2 read %d bytes of vda for about 8 MiB changed", va.BytesRead)
	}
	sameBytes(t, "P2 vdb", pointDisk(t, ctx, r, p2, "vdb"), vdb)
	out := t.TempDir()
	c.ok(t, "files", "get", p2.ID, "/new.bin", "/note.txt", "--out", out)
	if got := hostSums(t, out, "new.bin", "note.txt"); got != sums {
		t.Fatalf("files from the incremental point:\n%s\nguest:\n%s", got, sums)
	}

	// 7. A backup killed in the middle leaves no point, a sound repository
	// and a job that the next kura marks interrupted; the next backup
	// reclaims what it left on the VM by itself (no kura cleanup), says so,
	// and is incremental from the last committed point.
	kr := killKuraDuringBackup(t, c, "vdb", g.Name(), "--full", "--retries", "0")
	t.Logf("killed kura after %v, vdb at %s of %s", kr.After.Round(time.Millisecond), mib(kr.Done), mib(kr.Total))
	if n := len(c.points(t)); n != 2 {
		t.Fatalf("%d points after the killed backup, want 2", n)
	}
	c.ok(t, "verify")
	checkInterruptedJob(t, c)
	patternWrite(t, ctx, g, "vdb", vdb, 0x33, 10<<20, 1<<20)
	rep = c.backup(t, 0, g.Name(), "--retries", "0")
	p3 := vmResult(t, rep, g.Name()).Point
	if p3.Kind != "incremental" || p3.Parent != p2.ID {
		t.Fatalf("point after the kill: kind %s parent %s, want incremental from %s", p3.Kind, p3.Parent, p2.ID)
	}
	if !slices.ContainsFunc(p3.Notes, func(n string) bool { return strings.Contains(n, "killed run") }) {
		t.Errorf("point after the kill does not say what it reclaimed: notes %q", p3.Notes)
	}
	if br := diskStats(p3, "vdb").BytesRead; br > chunk {
		t.Errorf("P3 read %d bytes of vdb for 1 MiB changed", br)
	}
	t.Logf("P3 incremental after the kill: vdb read %s, vda read %s", mib(diskStats(p3, "vdb").BytesRead), mib(diskStats(p3, "vda").BytesRead))
	sameBytes(t, "P3 vdb", pointDisk(t, ctx, r, p3, "vdb"), vdb)

	// 7b. Killed again: kura cleanup finds what it left and removes it.
	killKuraDuringBackup(t, c, "vdb", g.Name(), "--full", "--retries", "0")
	cleanupLeftovers(t, c, g.Name(), []string{"backup-job", "checkpoint", "repository-lock", "scratch-file"})
	if b, err := exec.Command("virsh", "-c", "qemu:///system", "domjobinfo", g.Name()).CombinedOutput(); err != nil ||
		!strings.Contains(string(b), "None") {
		t.Fatalf("virsh domjobinfo after cleanup: %v: %s", err, b)
	}

	// A point taken while the guest's filesystems are frozen (by the test,
	// so nothing writes to vda) equals the live image read at that moment.
	if _, err := g.FSFreeze(ctx); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			if _, err := g.FSThaw(context.WithoutCancel(ctx)); err != nil {
				t.Errorf("thaw: %v", err)
			}
		}
	}
	defer thaw()
	rep = c.backup(t, 0, g.Name(), "--consistency", "crash", "--retries", "0")
	live := rawImage(t, g.DiskPath("vda"), "qcow2")
	thaw()
	pf := vmResult(t, rep, g.Name()).Point
	if pf.Kind != "incremental" || pf.Parent != p3.ID || pf.Consistency != "crash" {
		t.Fatalf("point of the frozen guest: kind %s parent %s consistency %s", pf.Kind, pf.Parent, pf.Consistency)
	}
	sameBytes(t, "frozen point vda", pointDisk(t, ctx, r, pf, "vda"), live)
	sameBytes(t, "frozen point vdb", pointDisk(t, ctx, r, pf, "vdb"), vdb)

	var shown repo.Manifest
	if err := json.Unmarshal([]byte(c.ok(t, "points", "show", p3.ID[:len(p3.ID)-4], "--json")), &shown); err != nil ||
		shown.ID != p3.ID || shown.Parent != p2.ID || len(shown.Disks) != 2 {
		t.Fatalf("points show --json: %v %+v", err, shown)
	}
	if text := c.ok(t, "points", "show", p3.ID); !strings.Contains(text, "parent       "+p2.ID) || !strings.Contains(text, "incremental") {
		t.Fatalf("points show:\n%s", text)
	}

	// 4 (running → off). After a clean shutdown the next point comes from
	// the images' bitmaps; every disk equals the image.
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rep = c.backup(t, 0, g.Name(), "--retries", "0")
	p4 := vmResult(t, rep, g.Name()).Point
	if p4.Kind != "incremental" || p4.Parent != pf.ID || p4.Consistency != "off" {
		t.Fatalf("offline point: kind %s parent %s consistency %s", p4.Kind, p4.Parent, p4.Consistency)
	}
	sameBytes(t, "P4 vda", pointDisk(t, ctx, r, p4, "vda"), rawImage(t, g.DiskPath("vda"), "qcow2"))
	sameBytes(t, "P4 vdb", pointDisk(t, ctx, r, p4, "vdb"), vdb)
	sameBytes(t, "vdb image", rawImage(t, vdbPath, "qcow2"), vdb)
	t.Logf("P4 offline incremental: read vda %s, vdb %s", mib(diskStats(p4, "vda").BytesRead), mib(diskStats(p4, "vdb").BytesRead))

	checkCatalogRebuild(t, ctx, c, []string{p1.ID, p2.ID, p3.ID, pf.ID, p4.ID})
}

// sh runs a shell command in the guest, failing the test unless it exits 0.
func sh(t *testing.T, ctx context.Context, g *testenv.Guest, cmd string) string {
	t.Helper()
	r, err := g.Run(ctx, cmd)
	if err != nil || r.Exit != 0 {
		t.Fatalf("%q in the guest: exit %d %v: %s", cmd, r.Exit, err, r.Stderr)
	}
	return string(r.Stdout)
}

// hostSums formats sha256sum lines for files in dir.
func hostSums(t *testing.T, dir string, names ...string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		b.WriteString(hex.EncodeToString(s[:]) + "  " + n + "\n")
	}
	return b.String()
}

// checkFreezeLog checks that the guest's fsfreeze hook log holds n freeze,
// thaw pairs, in that order.
func checkFreezeLog(t *testing.T, ctx context.Context, g *testenv.Guest, n int) {
	t.Helper()
	data, err := g.ReadFile(ctx, "/run/fsfreeze.log")
	if err != nil {
		t.Fatalf("read the fsfreeze log: %v", err)
	}
	var words []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		words = append(words, strings.Fields(l)[0])
	}
	var want []string
	for range n {
		want = append(want, "freeze", "thaw")
	}
	if !slices.Equal(words, want) {
		t.Fatalf("fsfreeze hook log %q, want %q", data, want)
	}
}

// cleanupLeftovers runs kura cleanup --yes --json for vm, checks the kinds
// of what it removed, and that a second run finds nothing.
func cleanupLeftovers(t *testing.T, c *cliRepo, vm string, kinds []string) {
	t.Helper()
	var res service.CleanupReport
	if err := json.Unmarshal([]byte(c.ok(t, "cleanup", vm, "--yes", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range res.Leftovers {
		got = append(got, l.Kind)
		t.Logf("cleanup removed %s %s (%s)", l.Kind, l.Name, l.Detail)
	}
	slices.Sort(got)
	if len(res.Failed) != 0 || res.Removed != len(res.Leftovers) || !slices.Equal(got, kinds) {
		t.Fatalf("cleanup removed %v (failed %v), want kinds %v", res.Leftovers, res.Failed, kinds)
	}
	var again service.CleanupReport
	if err := json.Unmarshal([]byte(c.ok(t, "cleanup", vm, "--yes", "--json")), &again); err != nil || len(again.Leftovers) != 0 {
		t.Fatalf("second cleanup: %v %+v", err, again)
	}
}

// checkInterruptedJob checks that the newest job, whose kura was killed,
// is shown Failed (interrupted) by the next kura.
func checkInterruptedJob(t *testing.T, c *cliRepo) {
	t.Helper()
	var jobs []catalog.Job
	if err := json.Unmarshal([]byte(c.ok(t, "jobs", "--json", "--limit", "1")), &jobs); err != nil || len(jobs) != 1 {
		t.Fatalf("kura jobs: %v %+v", err, jobs)
	}
	if j := jobs[0]; j.State != phase.Failed || !strings.Contains(j.Error, "interrupted") || j.Finished.IsZero() {
		t.Fatalf("killed job shown as %+v, want Failed (interrupted) with its time of death", j)
	}
}

// checkCatalogRebuild deletes the catalog and rebuilds it from the
// repository: the same points come back.
func checkCatalogRebuild(t *testing.T, ctx context.Context, c *cliRepo, ids []string) {
	t.Helper()
	before := catalogPoints(t, ctx, c.catalog)
	if got := pointIDs(before); !slices.Equal(got, ids) {
		t.Fatalf("catalog holds %v, want %v", got, ids)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(c.catalog + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	var res struct {
		Points int `json:"points"`
	}
	if err := json.Unmarshal([]byte(c.ok(t, "catalog", "rebuild", "--json")), &res); err != nil || res.Points != len(ids) {
		t.Fatalf("catalog rebuild: %v %+v", err, res)
	}
	after := catalogPoints(t, ctx, c.catalog)
	if len(after) != len(before) {
		t.Fatalf("rebuilt catalog has %d points, want %d", len(after), len(before))
	}
	for i := range after {
		a, b := after[i], before[i]
		if a.ID != b.ID || a.Kind != b.Kind || a.Parent != b.Parent || a.Consistency != b.Consistency ||
			a.Checkpoint != b.Checkpoint || a.VMUUID != b.VMUUID || len(a.Disks) != len(b.Disks) || a.BytesRead != b.BytesRead {
			t.Fatalf("rebuilt point %+v\nwas %+v", a, b)
		}
	}
}

func catalogPoints(t *testing.T, ctx context.Context, path string) []catalog.Point {
	t.Helper()
	cat, err := catalog.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	ps, err := cat.Points(ctx, catalog.PointFilter{})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ps, func(a, b catalog.Point) int { return a.Started.Compare(b.Started) })
	return ps
}

func pointIDs(ps []catalog.Point) []string {
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	return ids
}
