package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/testenv"
)

// TestBackupOfflineNoAgentPartial backs up, through the kura command line:
// a running guest without an agent (crash-consistent with auto; refused
// with --consistency application), two powered-off VMs (full then
// incremental through qcow2 bitmaps, every disk equal to its image), and a
// job where one of them lost its disk image (partial failure, retried).
func TestBackupOfflineNoAgentPartial(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	testenv.NeedTool(t, "qemu-io")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const chunk = 4 << 20

	// 5. No agent: auto gives crash consistency; application fails the VM
	// with an error naming the agent. The guest need not have booted.
	noAgent := env.NewGuest(t, testenv.GuestOptions{Start: true, MemoryMiB: 128, Disks: []testenv.DiskSpec{{SizeMiB: 16}}})
	c := newCLIRepo(t)
	rep := c.backup(t, 0, noAgent.Name(), "--retries", "0")
	p := vmResult(t, rep, noAgent.Name()).Point
	if p.Consistency != "crash" || !strings.Contains(strings.Join(p.Notes, "\n"), "agent") {
		t.Fatalf("no-agent point: consistency %q notes %q", p.Consistency, p.Notes)
	}
	rep = c.backup(t, 4, noAgent.Name(), "--consistency", "application", "--retries", "0")
	if rep.State != engine.StateFailed {
		t.Fatalf("application backup without agent: state %s", rep.State)
	}
	if r := vmResult(t, rep, noAgent.Name()); r.Point != nil || !strings.Contains(r.Error, "guest agent") ||
		!strings.Contains(r.Error, "application") {
		t.Fatalf("application backup without agent: %+v", r)
	}
	out, _, code := c.run("backup", noAgent.Name(), "--consistency", "application", "--retries", "0")
	if code != 4 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "agent") {
		t.Fatalf("text report (exit %d):\n%s", code, out)
	}
	t.Logf("no agent: auto → %s (notes %q); application → %q", p.Consistency, p.Notes, vmResult(t, rep, noAgent.Name()).Error)

	// 4. Powered-off VMs: full, then incremental from the images' bitmaps.
	files := map[string][]byte{"a.txt": []byte("offline\n")}
	good := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{SizeMiB: 64, Files: files}, {SizeMiB: 48}}})
	bad := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{SizeMiB: 16}}})
	qemuIO(t, good.DiskPath("vdb"), "write -P 0x11 0 3M")
	qemuIO(t, bad.DiskPath("vda"), "write -P 0x22 1M 1M")
	start := time.Now()
	rep = c.backup(t, 0, good.Name(), bad.Name(), "--retries", "0")
	t.Logf("two offline full backups in %v", time.Since(start).Round(time.Millisecond))
	r := c.open(t, ctx)
	g1 := vmResult(t, rep, good.Name()).Point
	b1 := vmResult(t, rep, bad.Name()).Point
	for _, x := range []struct {
		g       *testenv.Guest
		targets []string
	}{{good, []string{"vda", "vdb"}}, {bad, []string{"vda"}}} {
		m := vmResult(t, rep, x.g.Name()).Point
		if m.Kind != "full" || m.Consistency != "off" || m.Checkpoint == "" || len(m.Disks) != len(x.targets) {
			t.Fatalf("offline full of %s: %+v", x.g.Name(), m)
		}
		for _, tg := range x.targets {
			sameBytes(t, fmt.Sprintf("%s full %s", x.g.Name(), tg), pointDisk(t, ctx, r, m, tg), rawImage(t, x.g.DiskPath(tg), "qcow2"))
		}
	}

	// 6. One VM loses its image; the other changes. The job is partial
	// (exit 3), the failed VM was tried twice and its error names the
	// cause, the other VM's incremental point is complete.
	qemuIO(t, good.DiskPath("vdb"), "write -P 0x44 8M 1M")
	qemuIO(t, good.DiskPath("vdb"), "write -P 0x55 40M 64k")
	if err := os.Remove(bad.DiskPath("vda")); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	rep = c.backup(t, 3, good.Name(), bad.Name(), "--retries", "1", "--retry-delay", "1s")
	took := time.Since(start)
	if rep.State != engine.StatePartiallyFailed {
		t.Fatalf("job state %s", rep.State)
	}
	br := vmResult(t, rep, bad.Name())
	if br.State != phase.VMFailed || br.Attempts != 2 || br.Point != nil || !strings.Contains(br.Error, bad.DiskPath("vda")) {
		t.Fatalf("failed vm: %+v", br)
	}
	gr := vmResult(t, rep, good.Name())
	g2 := gr.Point
	if gr.State != phase.Succeeded || gr.Attempts != 1 || g2.Kind != "incremental" || g2.Parent != g1.ID || g2.Consistency != "off" {
		t.Fatalf("good vm: %+v (point %+v)", gr, g2)
	}
	va, vb := diskStats(g2, "vda"), diskStats(g2, "vdb")
	t.Logf("partial job in %v: %s failed after %d attempts: %s", took.Round(time.Millisecond), bad.Name(), br.Attempts, br.Error)
	t.Logf("offline incremental: vda unchanged, read %s; vdb 1 MiB + 64 KiB changed in 2 chunks, read %s (full read %s)",
		mib(va.BytesRead), mib(vb.BytesRead), mib(diskStats(g1, "vdb").BytesRead))
	// A chunk holding both unchanged data and zeros is read again (the
	// extent map cannot say whether its zeros are new), so an unchanged
	// disk may cost up to a chunk per such chunk; here vda has one.
	if va.BytesRead > chunk || vb.BytesRead < 1<<20+64<<10 || vb.BytesRead > 2*chunk+3<<20 {
		t.Errorf("offline incremental read vda %d, vdb %d bytes", va.BytesRead, vb.BytesRead)
	}
	if took < time.Second {
		t.Errorf("the partial job took %v: no retry delay of 1s", took)
	}
	for _, tg := range []string{"vda", "vdb"} {
		sameBytes(t, "good incremental "+tg, pointDisk(t, ctx, r, g2, tg), rawImage(t, good.DiskPath(tg), "qcow2"))
	}
	// The earlier full point of the good VM still reads as the image was.
	full := rawImage(t, good.DiskPath("vdb"), "qcow2")
	copy(full[8<<20:9<<20], make([]byte, 1<<20))
	copy(full[40<<20:40<<20+64<<10], make([]byte, 64<<10))
	sameBytes(t, "good full vdb after the incremental", pointDisk(t, ctx, r, g1, "vdb"), full)

	ps := c.points(t)
	if len(ps) != 4 { // no agent, good full, bad full, good incremental
		t.Fatalf("%d points, want 4", len(ps))
	}
	for _, m := range ps {
		if m.VM.UUID == bad.UUID() && m.ID != b1.ID {
			t.Fatalf("a point of the failed vm was committed: %s", m.ID)
		}
	}
	c.ok(t, "verify", "--read-data")
}

// qemuIO runs a qemu-io command on an image of a shut-off VM.
func qemuIO(t *testing.T, path, cmd string) {
	t.Helper()
	if b, err := exec.Command("qemu-io", "-f", "qcow2", "-c", cmd, path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io %s %q: %v: %s", path, cmd, err, b)
	}
}
