package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/service"
	"github.com/kurabackup/kura/internal/testenv"
)

// killKuraAt runs the kura command line args in a child process and
// SIGKILLs it after delay. It reports whether the kill landed (false: the
// command had finished, successfully, before).
func killKuraAt(t *testing.T, c *cliRepo, delay time.Duration, args ...string) bool {
	t.Helper()
	enc, _ := json.Marshal(c.args(args...))
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperKuraProcess$")
	cmd.Env = append(os.Environ(), helperArgsEnv+"="+string(enc))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("kura %s ended by itself with %v: %s", strings.Join(args, " "), err, tail(out.String(), 2000))
		}
		return false
	case <-time.After(delay):
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	err := <-done
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return true
	}
	if err != nil {
		t.Fatalf("kura %s: %v: %s", strings.Join(args, " "), err, tail(out.String(), 2000))
	}
	return false
}

// qemuIOPattern writes a pattern into a shut-off VM's image and its model.
func qemuIOPattern(t *testing.T, img string, model []byte, p byte, off, n int64) {
	t.Helper()
	cmd := exec.Command("qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -P 0x%02x %d %d", p, off, n), img)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v: %s", err, out)
	}
	for i := off; i < off+n; i++ {
		model[i] = p
	}
}

// TestKillAtRandom kills kura backups of a running and a shut-off VM, and
// kura restores, at random moments; after every kill the next backup runs
// without kura cleanup and succeeds, incrementally; every recovery point
// reads back byte for byte as its disk was; a restore after all that gives
// the disk back, and cleanup finds the partial images the killed restores
// left.
func TestKillAtRandom(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	testenv.NeedTool(t, "qemu-io")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	const size = 64 << 20
	dir := imageDir(t, env)
	onPath, onModel := randomQcow2(t, dir, "on-vdb", size)
	offPath, offModel := randomQcow2(t, dir, "off-vdb", size)
	on := env.NewGuest(t, testenv.GuestOptions{Start: true, MemoryMiB: 128, Disks: []testenv.DiskSpec{
		{SizeMiB: 16}, {Target: "vdb", Path: onPath}}})
	off := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{SizeMiB: 16}, {Target: "vdb", Path: offPath}}})
	c := newCLIRepo(t)
	r := c.open(t, ctx)
	names := []string{on.Name(), off.Name()}

	latest := map[string]*repo.Manifest{}
	models := map[string][]byte{on.Name(): onModel, off.Name(): offModel}
	check := func(rep *engine.BackupReport, round int) {
		t.Helper()
		for _, name := range names {
			p := vmResult(t, rep, name).Point
			if prev := latest[name]; prev != nil && (p.Kind != "incremental" || p.Parent != prev.ID) {
				t.Errorf("round %d: %s point %s is %s from %q, want incremental from %s (notes %q)",
					round, name, p.ID, p.Kind, p.Parent, prev.ID, p.Notes)
			}
			sameBytes(t, fmt.Sprintf("round %d %s vdb", round, name), pointDisk(t, ctx, r, p, "vdb"), models[name])
			latest[name] = p
		}
	}
	// committed checks the points a killed run committed before it died:
	// they are as good as any, and the next backup's parents.
	committed := func(round int) {
		t.Helper()
		for _, p := range c.points(t) {
			if l := latest[p.VM.Name]; l != nil && p.Started.After(l.Started) {
				sameBytes(t, fmt.Sprintf("round %d %s vdb (killed run)", round, p.VM.Name), pointDisk(t, ctx, r, &p, "vdb"), models[p.VM.Name])
				latest[p.VM.Name] = &p
			}
		}
	}
	check(c.backup(t, 0, append(names, "--retries", "0")...), 0)

	kills := 0
	for round := 1; round <= 4; round++ {
		off1 := rng.Int64N(size/(1<<20)-2) << 20
		patternWrite(t, ctx, on, "vdb", onModel, byte(0x10+round), off1, 1<<20)
		qemuIOPattern(t, offPath, offModel, byte(0x20+round), rng.Int64N(size/(1<<20)-2)<<20, 1<<20)
		delay := time.Duration(rng.Int64N(int64(1500 * time.Millisecond)))
		killed := killKuraAt(t, c, delay, append([]string{"backup", "--full", "--retries", "0"}, names...)...)
		t.Logf("round %d: backup killed after %v: %v", round, delay.Round(time.Millisecond), killed)
		if killed {
			kills++
		}
		committed(round)
		check(c.backup(t, 0, append(names, "--retries", "0")...), round)
	}

	// Restores killed at random moments, beside the original (its disks go
	// next to the original's): the next backup does not mind what they left.
	point := latest[off.Name()]
	restored := off.Name() + "-r"
	dropVM(t, env, restored)
	for round := 1; round <= 2; round++ {
		delay := time.Duration(rng.Int64N(int64(800 * time.Millisecond)))
		killed := killKuraAt(t, c, delay, "restore", point.ID, "--name", restored, "--on-conflict", "overwrite")
		t.Logf("restore round %d: killed after %v: %v", round, delay.Round(time.Millisecond), killed)
		qemuIOPattern(t, offPath, offModel, byte(0x40+round), 0, 1<<20)
		check(c.backup(t, 0, append(names, "--retries", "0")...), 10+round)
	}
	var found service.CleanupReport
	if err := json.Unmarshal([]byte(c.ok(t, "cleanup", "--dry-run", "--json")), &found); err != nil {
		t.Fatal(err)
	}
	for _, l := range found.Leftovers {
		t.Logf("left behind: %s %s", l.Kind, l.Name)
		if l.Kind != service.KindPartialImage && l.Kind != service.KindRepositoryLock {
			t.Errorf("after the reclaiming backups, cleanup still finds %s %s (%s)", l.Kind, l.Name, l.Detail)
		}
	}
	var rep engine.RestoreReport
	if err := lastJSON(c.ok(t, "restore", point.ID, "--name", restored, "--on-conflict", "overwrite", "--json"), &rep); err != nil {
		t.Fatal(err)
	}
	var vdb string
	for _, d := range rep.Disks {
		t.Cleanup(func() { os.Remove(d.Path) })
		if d.Target == "vdb" {
			vdb = d.Path
		}
	}
	sameBytes(t, "restored vdb", rawImage(t, vdb, "qcow2"), pointDisk(t, ctx, r, point, "vdb"))
	c.ok(t, "cleanup", "--yes")
	for _, d := range rep.Disks {
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(d.Path), "*.kura-partial")); len(left) != 0 {
			t.Errorf("partial images after cleanup: %v", left)
		}
	}
	t.Logf("%d of 4 backups killed mid-run", kills)
}
