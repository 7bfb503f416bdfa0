package libvirt

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/testenv"
)

// TestHelperAbandon is not a test: run by abandon in a child process, it
// opens a backup session and exits without closing it, as a killed kura
// would.
func TestHelperAbandon(t *testing.T) {
	name := os.Getenv("KURA_HELPER_VM")
	if name == "" {
		t.Skip("helper process only")
	}
	c, err := Connect(context.Background(), "", nil)
	if err != nil {
		os.Exit(2)
	}
	vm, err := c.LookupVM(context.Background(), name)
	if err != nil {
		os.Exit(3)
	}
	if _, err := c.BeginBackup(context.Background(), vm, hypervisor.BackupOptions{Consistency: hypervisor.ModeCrash,
		BaseCheckpoint: os.Getenv("KURA_HELPER_BASE"), NewCheckpoint: os.Getenv("KURA_HELPER_NEXT")}); err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(4)
	}
	os.Exit(0)
}

// pidFiles lists the qemu-nbd pid files of a VM's sessions.
func pidFiles(uuid string) []string {
	p, _ := filepath.Glob(filepath.Join(DefaultQemuScratchDir, Prefix+uuid+"-*", "*.pid"))
	return p
}

// abandon is hvtest's Target.Abandon: a child process opens the session
// and exits without closing it.
func abandon(t *testing.T, vm hypervisor.VM, base, next string, _ map[string]string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAbandon$")
	cmd.Env = append(os.Environ(), "KURA_HELPER_VM="+vm.Name, "KURA_HELPER_BASE="+base, "KURA_HELPER_NEXT="+next)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
}

// TestKilledSession: what a killed session leaves is reported by
// Leftovers and reclaimed by the next backup of the VM, which is
// incremental from the last good checkpoint. A shut-off VM's qemu-nbd
// dies with its kura (parent-death signal).
func TestKilledSession(t *testing.T) {
	env, c := connect(t)
	for _, running := range []bool{true, false} {
		t.Run(map[bool]string{true: "Running", false: "ShutOff"}[running], func(t *testing.T) {
			g := env.NewGuest(t, testenv.GuestOptions{Start: running, Disks: []testenv.DiskSpec{{Target: "vda", SizeMiB: 16}}})
			vm := guestVM(t, c, g)
			s, err := begin(t, c, vm, hypervisor.ModeCrash, "", "kura-k1")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(testCtx(t, time.Minute), true); err != nil {
				t.Fatal(err)
			}
			abandon(t, vm, "kura-k1", "kura-k2", nil)
			keep := hypervisor.LeftoverQuery{VMs: []string{vm.Name}, Keep: map[string]bool{"kura-k1": true}}
			ctx := testCtx(t, 2*time.Minute)
			if !running {
				// The helper's qemu-nbd got SIGTERM when the helper died.
				for i := 0; i < 100 && len(livePids(vm.UUID)) > 0; i++ {
					time.Sleep(50 * time.Millisecond)
				}
				if p := livePids(vm.UUID); len(p) > 0 {
					t.Fatalf("qemu-nbd outlived its kura: %v", p)
				}
			}
			lo, err := c.Leftovers(ctx, keep)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, l := range lo {
				kinds = append(kinds, l.Kind)
			}
			want := []string{KindBackupJob, KindScratch, KindCheckpoint}
			if !running {
				want = []string{KindScratch, KindBitmap}
			}
			if !slices.Equal(kinds, want) {
				t.Fatalf("leftovers of a killed session: %v, want kinds %v", lo, want)
			}
			// The next backup clears them by itself and starts from kura-k1.
			s, err = begin(t, c, vm, hypervisor.ModeCrash, "kura-k1", "kura-k3")
			if err != nil {
				t.Fatalf("BeginBackup after a killed session: %v", err)
			}
			if d := s.Disks()[0]; !d.Incremental {
				t.Errorf("not incremental from the kept base")
			}
			if len(s.Notes()) == 0 || !strings.Contains(s.Notes()[0], "killed run") {
				t.Errorf("notes %q do not tell what was reclaimed", s.Notes())
			}
			if err := s.Close(ctx, true); err != nil {
				t.Fatal(err)
			}
			keep.Keep = map[string]bool{"kura-k3": true}
			if lo, err := c.Leftovers(ctx, keep); err != nil || len(lo) != 0 {
				t.Fatalf("after the reclaiming backup: %v, %v", lo, err)
			}
		})
	}
}

// TestOrphanNBDServer: a qemu-nbd left running by a killed kura (one
// started without a parent-death signal, by an older kura) holds the
// image's lock; the next backup stops it and proceeds.
func TestOrphanNBDServer(t *testing.T) {
	env, c := connect(t)
	g := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{Target: "vda", SizeMiB: 16}}})
	vm := guestVM(t, c, g)
	s, err := begin(t, c, vm, hypervisor.ModeCrash, "", "kura-n1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(testCtx(t, time.Minute), true); err != nil {
		t.Fatal(err)
	}
	abandon(t, vm, "kura-n1", "kura-n2", nil)
	dirs, _ := filepath.Glob(filepath.Join(DefaultQemuScratchDir, Prefix+vm.UUID+"-*"))
	if len(dirs) != 1 {
		t.Fatalf("scratch dirs of the killed session: %v", dirs)
	}
	// The orphan: persistent, in its own session, surviving its parent.
	pidFile := filepath.Join(dirs[0], "vda.pid")
	orphan := exec.Command("qemu-nbd", "--read-only", "--persistent", "--shared=8", "--fork",
		"--socket", filepath.Join(dirs[0], "vda.sock"), "--pid-file", pidFile, "--format", "qcow2", g.DiskPath("vda"))
	if out, err := orphan.CombinedOutput(); err != nil {
		t.Fatalf("start orphan qemu-nbd: %v: %s", err, out)
	}
	pid, ok := readPid(pidFile)
	if !ok {
		t.Fatal("orphan qemu-nbd not running")
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	ctx := testCtx(t, 2*time.Minute)
	s, err = begin(t, c, vm, hypervisor.ModeCrash, "kura-n1", "kura-n3")
	if err != nil {
		t.Fatalf("BeginBackup with an orphan qemu-nbd holding the image: %v", err)
	}
	if !slices.ContainsFunc(s.Notes(), func(n string) bool { return strings.Contains(n, KindNBDServer) }) {
		t.Errorf("notes %q do not tell the qemu-nbd was stopped", s.Notes())
	}
	if d := s.Disks()[0]; !d.Incremental {
		t.Errorf("not incremental from the kept base")
	}
	if err := s.Close(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, ok := readPid(pidFile); ok {
		t.Errorf("orphan qemu-nbd still running")
	}
}

// livePids lists the live qemu-nbd pid files of a VM's sessions.
func livePids(uuid string) []string {
	var out []string
	for _, p := range pidFiles(uuid) {
		if _, ok := readPid(p); ok {
			out = append(out, p)
		}
	}
	return out
}
