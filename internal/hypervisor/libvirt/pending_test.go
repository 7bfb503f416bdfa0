package libvirt

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/testenv"
)

// killedMidCall leaves what a kura process killed while waiting in its
// backup begin leaves: a session directory of a dead owner (this process,
// with the session no longer open) holding a pending call made age ago.
func killedMidCall(t *testing.T, c *Connector, vm hypervisor.VM, checkpoint string, p pendingCall, age time.Duration) string {
	t.Helper()
	dir, err := c.sessionDir(vm.UUID, checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	liveDirs.Delete(dir)
	p.Since = time.Now().Add(-age).UTC()
	b, _ := json.Marshal(p)
	if err := os.WriteFile(filepath.Join(dir, pendingFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func hasNote(notes []string, s string) bool {
	for _, n := range notes {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// TestKilledMidBegin: the next backup waits for the libvirt calls a killed
// run had in flight before it removes that run's scratch directory (a
// begin finishing after the removal crashed libvirtd 9.0), stops early
// when the killed run's job shows up, and undoes the freeze or pause the
// killed run left on the guest.
func TestKilledMidBegin(t *testing.T) {
	env, c := connect(t)
	g := env.NewGuest(t, testenv.GuestOptions{Agent: true, Start: true,
		Disks: []testenv.DiskSpec{{Target: "vda", SizeMiB: 32, Files: map[string][]byte{"a.txt": []byte("a")}}}})
	ctx := testCtx(t, 8*time.Minute)
	if err := g.WaitAgent(ctx); err != nil {
		t.Fatalf("agent: %v", err)
	}
	vm := guestVM(t, c, g)
	d, err := c.lookup(vm.UUID)
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, next string) (hypervisor.BackupSession, time.Duration) {
		t.Helper()
		start := time.Now()
		s, err := begin(t, c, vm, hypervisor.ModeAuto, "", next)
		if err != nil {
			t.Fatalf("backup after a run killed mid-call: %v", err)
		}
		took := time.Since(start)
		if err := s.Close(ctx, false); err != nil {
			t.Fatal(err)
		}
		if dirs, _ := filepath.Glob(filepath.Join(c.QemuScratchDir, Prefix+vm.UUID+"-*")); len(dirs) != 0 {
			t.Errorf("scratch directories left: %v", dirs)
		}
		return s, took
	}

	t.Run("Frozen", func(t *testing.T) {
		const left = 3 * time.Second
		killedMidCall(t, c, vm, "kura-p1", pendingCall{Call: "backup begin", Quiesce: true}, settleTime-left)
		if _, err := c.lv.DomainFsfreeze(d, nil, 0); err != nil {
			t.Fatalf("freeze: %v", err)
		}
		s, took := run(t, "kura-p2")
		if took < left-time.Second {
			t.Errorf("backup began after %v: did not wait for the killed call to settle (%v left)", took, left)
		}
		if !hasNote(s.Notes(), "waited") || !hasNote(s.Notes(), "thawed") {
			t.Errorf("notes %q do not say it waited and thawed", s.Notes())
		}
		if st, err := g.FSFreezeStatus(ctx); err != nil || st != "thawed" {
			t.Errorf("guest after the backup: %q, %v; want thawed", st, err)
		}
		if s.Consistency() != hypervisor.ConsistencyApplication {
			t.Errorf("consistency %s, want application", s.Consistency())
		}
	})

	t.Run("Paused", func(t *testing.T) {
		killedMidCall(t, c, vm, "kura-p3", pendingCall{Call: "backup begin", Pause: true}, settleTime+time.Second)
		if err := c.lv.DomainSuspend(d); err != nil {
			t.Fatal(err)
		}
		s, took := run(t, "kura-p4")
		if took > 20*time.Second {
			t.Errorf("a settled call still made the backup wait %v", took)
		}
		if !hasNote(s.Notes(), "resumed") {
			t.Errorf("notes %q do not say it resumed the vm", s.Notes())
		}
		if st, _, err := c.lv.DomainGetState(d, 0); err != nil || golibvirt.DomainState(st) != golibvirt.DomainRunning {
			t.Errorf("vm state %d, %v; want running", st, err)
		}
		if s.Consistency() != hypervisor.ConsistencyApplication {
			t.Errorf("consistency %s, want application (the vm was resumed first)", s.Consistency())
		}
	})

	t.Run("Cleanup", func(t *testing.T) {
		// kura cleanup removes the same leftover: it waits too, and thaws.
		const left = 2 * time.Second
		dir := killedMidCall(t, c, vm, "kura-p7", pendingCall{Call: "backup begin", Quiesce: true}, settleTime-left)
		if _, err := c.lv.DomainFsfreeze(d, nil, 0); err != nil {
			t.Fatalf("freeze: %v", err)
		}
		lo, err := c.Leftovers(ctx, hypervisor.LeftoverQuery{VMs: []string{vm.Name}})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for _, l := range lo {
			if err := c.RemoveLeftover(ctx, l); err != nil {
				t.Fatalf("remove %s %s: %v", l.Kind, l.Name, err)
			}
		}
		if took := time.Since(start); took < left-time.Second {
			t.Errorf("cleanup took %v: did not wait for the killed call to settle (%v left)", took, left)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("scratch directory %s after cleanup: %v", dir, err)
		}
		if st, err := g.FSFreezeStatus(ctx); err != nil || st != "thawed" {
			t.Errorf("guest after cleanup: %q, %v; want thawed", st, err)
		}
	})

	t.Run("JobShowsUp", func(t *testing.T) {
		// The killed run's begin completes after it died: its job shows up
		// and the wait ends there, long before settleTime.
		dir := killedMidCall(t, c, vm, "kura-p5", pendingCall{Call: "backup begin"}, 0)
		x, _, err := c.domainXML(d, 0)
		if err != nil {
			t.Fatal(err)
		}
		bx, _ := c.jobXML(x, vm.Disks, hypervisor.BackupOptions{NewCheckpoint: "kura-p5"}, dir, filepath.Join(dir, "nbd.sock"))
		if err := c.lv.DomainBackupBegin(d, bx, golibvirt.OptString{}, 0); err != nil {
			t.Fatalf("the killed run's begin: %v", err)
		}
		s, took := run(t, "kura-p6")
		if took > settleTime/2 {
			t.Errorf("backup began after %v: the killed run's job did not end the wait", took)
		}
		if !hasNote(s.Notes(), "aborted the backup job") {
			t.Errorf("notes %q do not say the killed run's job was aborted", s.Notes())
		}
	})
}
