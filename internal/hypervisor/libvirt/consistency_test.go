package libvirt

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/testenv"
)

func begin(t *testing.T, c *Connector, vm hypervisor.VM, mode hypervisor.ConsistencyMode, base, next string) (hypervisor.BackupSession, error) {
	t.Helper()
	s, err := c.BeginBackup(testCtx(t, 2*time.Minute), vm, hypervisor.BackupOptions{
		Consistency: mode, BaseCheckpoint: base, NewCheckpoint: next})
	if err == nil {
		t.Cleanup(func() { _ = s.Close(testCtx(t, time.Minute), false) })
	}
	return s, err
}

func TestQuiesceWithAgent(t *testing.T) {
	env, c := connect(t)
	g := env.NewGuest(t, testenv.GuestOptions{Agent: true, Start: true,
		Disks: []testenv.DiskSpec{{Target: "vda", SizeMiB: 32, Files: map[string][]byte{"hello.txt": []byte("hello")}}}})
	ctx := testCtx(t, 6*time.Minute)
	if err := g.WaitAgent(ctx); err != nil {
		t.Fatalf("agent: %v", err)
	}
	vm := guestVM(t, c, g)
	if !vm.HasAgent {
		t.Fatalf("HasAgent false with a running agent")
	}
	start := time.Now()
	s, err := begin(t, c, vm, hypervisor.ModeApplication, "", "kura-q1")
	if err != nil {
		t.Fatalf("BeginBackup: %v", err)
	}
	t.Logf("application-consistent begin took %v", time.Since(start))
	if s.Consistency() != hypervisor.ConsistencyApplication {
		t.Errorf("consistency %s, want application (notes %v)", s.Consistency(), s.Notes())
	}
	if st, err := g.FSFreezeStatus(ctx); err != nil || st != "thawed" {
		t.Errorf("guest after begin: %q, %v; want thawed", st, err)
	}
	log, err := g.ReadFile(ctx, "/run/fsfreeze.log")
	if err != nil {
		t.Fatalf("read hook log: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "freeze") || !strings.HasPrefix(lines[1], "thaw") {
		t.Errorf("fsfreeze hook log %q, want a freeze then a thaw", log)
	}
	if err := s.Close(ctx, true); err != nil {
		t.Fatal(err)
	}

	// A freeze that takes longer than freezeTimeout (a slow hook): the
	// backup gives up on it, thaws what it froze once it is done, and goes
	// on crash-consistent.
	defer func(d time.Duration) { freezeTimeout = d }(freezeTimeout)
	freezeTimeout = 2 * time.Second
	if err := g.WriteFile(ctx, "/run/fsfreeze-delay", []byte("6")); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	s, err = begin(t, c, vm, hypervisor.ModeAuto, "kura-q1", "kura-q2")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("BeginBackup with a freeze slower than the limit: %v", err)
	}
	t.Logf("begin with a slow freeze took %v, notes %q", took, s.Notes())
	if s.Consistency() != hypervisor.ConsistencyCrash || !hasNote(s.Notes(), "fsfreeze failed") {
		t.Errorf("consistency %s, notes %q; want crash and a note on the freeze", s.Consistency(), s.Notes())
	}
	if took > 30*time.Second {
		t.Errorf("begin took %v with a 2 s freeze limit", took)
	}
	if st, err := g.FSFreezeStatus(ctx); err != nil || st != "thawed" {
		t.Errorf("guest after the slow freeze: %q, %v; want thawed", st, err)
	}
	if log, err = g.ReadFile(ctx, "/run/fsfreeze.log"); err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(string(log)), "\n")
	if n := len(lines); n != 4 || !strings.HasPrefix(lines[2], "freeze") || !strings.HasPrefix(lines[3], "thaw") {
		t.Errorf("fsfreeze hook log %q, want a second freeze then a thaw", log)
	}
	if err := s.Close(ctx, true); err != nil {
		t.Fatal(err)
	}
}

func TestNoAgent(t *testing.T) {
	env, c := connect(t)
	g := env.NewGuest(t, testenv.GuestOptions{Start: true, Disks: []testenv.DiskSpec{{Target: "vda", SizeMiB: 16}}})
	vm := guestVM(t, c, g)
	if _, err := begin(t, c, vm, hypervisor.ModeApplication, "", "kura-n1"); !errors.Is(err, hypervisor.ErrNoAgent) {
		t.Fatalf("application mode without agent: %v, want ErrNoAgent", err)
	}
	s, err := begin(t, c, vm, hypervisor.ModeAuto, "", "kura-n1")
	if err != nil {
		t.Fatalf("auto mode without agent (after the failed attempt): %v", err)
	}
	if s.Consistency() != hypervisor.ConsistencyCrash || len(s.Notes()) == 0 {
		t.Errorf("auto without agent: consistency %s, notes %v; want crash and a note", s.Consistency(), s.Notes())
	}
	// A second session while the job runs is refused as busy.
	if _, err := begin(t, c, vm, hypervisor.ModeCrash, "", "kura-n2"); !errors.Is(err, hypervisor.ErrBusy) {
		t.Errorf("second concurrent session: %v, want ErrBusy", err)
	}
	cfg, format := s.Config()
	if format != "libvirt-domain-xml" || !bytes.Contains(cfg, []byte("<name>"+vm.Name+"</name>")) || bytes.Contains(cfg, []byte("<alias")) {
		t.Errorf("Config() = %s (%d bytes), want the inactive domain definition", format, len(cfg))
	}
	if err := s.Close(testCtx(t, time.Minute), true); err != nil {
		t.Fatal(err)
	}
}

func TestPauseMode(t *testing.T) {
	env, c := connect(t)
	g := env.NewGuest(t, testenv.GuestOptions{Start: true, Disks: []testenv.DiskSpec{{Target: "vda", SizeMiB: 16}}})
	vm := guestVM(t, c, g)
	s, err := begin(t, c, vm, hypervisor.ModePause, "", "kura-p1")
	if err != nil {
		t.Fatalf("BeginBackup: %v", err)
	}
	if s.Consistency() != hypervisor.ConsistencyPause {
		t.Errorf("consistency %s, want pause", s.Consistency())
	}
	if now := guestVM(t, c, g); now.State != hypervisor.PowerOn {
		t.Errorf("vm state after pause-mode begin: %s, want on", now.State)
	}
	if err := s.Close(testCtx(t, time.Minute), true); err != nil {
		t.Fatal(err)
	}
}
