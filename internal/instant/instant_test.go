package instant

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/libvirt"
	"github.com/kurabackup/kura/internal/lock"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/testenv"
)

func connect(t testing.TB) (*testenv.Env, *libvirt.Connector) {
	t.Helper()
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := libvirt.Connect(ctx, "", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return env, c
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// imageDir is a directory QEMU can reach, removed at cleanup.
func imageDir(t testing.TB, env *testenv.Env) string {
	dir := filepath.Join(env.ImageDir, "instant-"+randHex(4))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// backup backs the (shut off) guest up and returns its new point.
func backup(t testing.TB, ctx context.Context, r *repo.Repository, c *libvirt.Connector, g *testenv.Guest) *repo.Manifest {
	t.Helper()
	vm, err := c.LookupVM(ctx, g.Name())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := (&engine.Engine{Repo: r, Conn: c}).Backup(ctx, []hypervisor.VM{vm}, engine.BackupOptions{})
	if err != nil || len(rep.VMs) != 1 || rep.VMs[0].Point == nil {
		t.Fatalf("backup of %s: %v %+v", g.Name(), err, rep)
	}
	return rep.VMs[0].Point
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// sh runs a shell command in the VM through its agent and returns its
// output; it fails the test unless the command exits 0.
func sh(t *testing.T, ctx context.Context, c *libvirt.Connector, vm, cmd string) string {
	t.Helper()
	r, err := c.GuestExec(ctx, vm, "/bin/sh", "-c", cmd)
	if err != nil || r.Exit != 0 {
		t.Fatalf("%s in %s: exit %d %v: %s%s", cmd, vm, r.Exit, err, r.Stdout, r.Stderr)
	}
	return string(r.Stdout)
}

// spawn starts a shell command in the guest without waiting for it (the
// VM may pause before it ends).
func spawn(t *testing.T, env *testenv.Env, vm, cmd string) {
	t.Helper()
	d, err := env.Conn.DomainLookupByName(vm)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(map[string]any{"execute": "guest-exec", "arguments": map[string]any{"path": "/bin/sh", "arg": []string{"-c", cmd}}})
	if _, err := env.Conn.QEMUDomainAgentCommand(d, string(req), 30, 0); err != nil {
		t.Fatalf("start %q in %s: %v", cmd, vm, err)
	}
}

func waitAgent(t testing.TB, ctx context.Context, c *libvirt.Connector, vm string) time.Duration {
	t.Helper()
	start := time.Now()
	wait(t, ctx, "the agent of "+vm, func() bool { return c.GuestPing(ctx, vm) == nil })
	return time.Since(start)
}

func wait(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func vmState(ctx context.Context, c *libvirt.Connector, vm string) hypervisor.PowerState {
	v, err := c.LookupVM(ctx, vm)
	if err != nil {
		return "missing"
	}
	return v.State
}

// TestInstantRecoverMigrateReboot: a point becomes a running VM whose
// files match; a file written in the guest survives a restart of the
// server (the guest's I/O pauses and resumes), a cancelled copy and a copy
// left by a killed run, the migration to local disks and a reboot from
// them.
func TestInstantRecoverMigrateReboot(t *testing.T) {
	env, c := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	big := make([]byte, 6<<20+4321)
	_, _ = rand.Read(big)
	hello := []byte("hello from a backup\n")
	g := env.NewGuest(t, testenv.GuestOptions{Agent: true, MemoryMiB: 192, Disks: []testenv.DiskSpec{{SizeMiB: 64,
		Files: map[string][]byte{"hello.txt": hello, "big.bin": big}}}})
	r := memRepo(t)
	point := backup(t, ctx, r, c, g)

	m := &Manager{Repo: r, Conn: c, StateDir: t.TempDir(), Logger: testLogger(t)}
	storage := imageDir(t, env)
	name := "kura-t-inst-" + randHex(4)
	t.Cleanup(func() {
		_, _ = m.Stop(context.Background(), name, StopOptions{Force: true, Discard: true})
		_ = c.UndefineVM(context.Background(), name)
	})
	rep, err := m.Start(ctx, point.ID[:12], StartOptions{Name: name, Storage: storage, Start: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	boot := waitAgent(t, ctx, c, name)
	t.Logf("instant vm defined and started in %.2f s (disks served after %.2f s); agent answered %.1f s later",
		rep.Seconds, rep.ServingSeconds, boot.Seconds())
	if rep.Point != point.ID || len(rep.Disks) != 1 || rep.Disks[0].Overlay != filepath.Join(storage, name+"-vda.instant.qcow2") {
		t.Fatalf("report %+v", rep)
	}
	want := sum(hello) + "  /mnt/data/hello.txt\n" + sum(big) + "  /mnt/data/big.bin\n"
	if got := sh(t, ctx, c, name, "sha256sum /mnt/data/hello.txt /mnt/data/big.bin"); got != want {
		t.Fatalf("files in the instant vm:\n%s\nwant\n%s", got, want)
	}
	sh(t, ctx, c, name, "echo written while instant > /mnt/data/instant.txt && sync")
	if _, err := m.Start(ctx, point.ID, StartOptions{Name: name, Storage: storage}); !errors.Is(err, ErrExists) {
		t.Fatalf("a second Start of %s = %v, want ErrExists", name, err)
	}

	// Restart the server: the guest's reads pause the VM, and it goes on
	// once the server is back.
	if err := m.StopServing(ctx, name); err != nil {
		t.Fatal(err)
	}
	spawn(t, env, name, "dd if=/mnt/data/big.bin iflag=direct bs=64k 2>/dev/null | sha256sum > /tmp/after.txt")
	wait(t, ctx, "the vm to pause while nobody serves its disks", func() bool { return vmState(ctx, c, name) == hypervisor.PowerPaused })
	paused := time.Now()
	if err := m.ResumeServing(ctx, name); err != nil {
		t.Fatal(err)
	}
	wait(t, ctx, "the vm to resume", func() bool { return vmState(ctx, c, name) == hypervisor.PowerOn })
	t.Logf("guest I/O paused for %.1f s across the server restart", time.Since(paused).Seconds())
	wait(t, ctx, "the read started before the restart", func() bool {
		b, err := c.GuestReadFile(ctx, name, "/tmp/after.txt", 1024)
		return err == nil && len(b) > 0
	})
	if b, _ := c.GuestReadFile(ctx, name, "/tmp/after.txt", 1024); !strings.HasPrefix(string(b), sum(big)) {
		t.Fatalf("read across the restart: %q, want %s", b, sum(big))
	}
	list, err := m.List(ctx)
	if err != nil || len(list) != 1 || list[0].Phase != PhaseServing || list[0].VMState != hypervisor.PowerOn || list[0].OverlayBytes == 0 {
		t.Fatalf("List = %+v, %v", list, err)
	}

	// A copy cancelled midway: the VM runs on, its writes kept.
	mctx, mcancel := context.WithCancel(ctx)
	_, err = m.Migrate(mctx, name, MigrateOptions{Bandwidth: 1 << 20, Progress: func(_ string, done, total int64) {
		if total > 0 {
			mcancel() // the copy has started
		}
	}})
	mcancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Migrate = %v", err)
	}
	st, _ := m.load(name)
	if st.Phase != PhaseServing || st.Disks[0].Migrated || st.Error == "" || vmState(ctx, c, name) != hypervisor.PowerOn {
		t.Fatalf("after a cancelled copy: %+v, vm %s", st, vmState(ctx, c, name))
	}
	if _, err := os.Stat(st.Disks[0].Dest); !os.IsNotExist(err) {
		t.Fatalf("the partial copy %s is still there: %v", st.Disks[0].Dest, err)
	}
	sh(t, ctx, c, name, "echo written after a failed copy > /mnt/data/during.txt && sync")
	// A copy job left by a killed kura: the next attempt replaces it.
	dom, err := env.Conn.DomainLookupByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Conn.DomainBlockCopy(dom, "vda", fmt.Sprintf("<disk type='file'><source file='%s'/><driver type='qcow2'/></disk>",
		st.Disks[0].Dest), nil, golibvirt.DomainBlockCopyTransientJob); err != nil {
		t.Fatal(err)
	}
	mrep, err := m.Migrate(ctx, name, MigrateOptions{})
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	t.Logf("migrated to local disks in %.1f s", mrep.Seconds)
	vm, err := c.LookupVM(ctx, name)
	if err != nil || vm.State != hypervisor.PowerOn || vm.Disks[0].Source != filepath.Join(storage, name+"-vda.qcow2") {
		t.Fatalf("after Migrate: %+v %v", vm, err)
	}
	if list, _ := m.List(ctx); len(list) != 0 {
		t.Fatalf("a migrated vm is still listed: %+v", list)
	}
	if _, err := os.Stat(rep.Disks[0].Overlay); !os.IsNotExist(err) {
		t.Fatalf("overlay left after migration: %v", err)
	}
	infos, err := lock.List(ctx, r.Backend())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if !in.Stale {
			t.Fatalf("lock or lease left after migration: %+v", in)
		}
	}

	// Reboot from the local disks: the restored files and both writes.
	sh(t, ctx, c, name, "sync")
	if err := c.StopVM(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := c.StartVM(ctx, name); err != nil {
		t.Fatal(err)
	}
	waitAgent(t, ctx, c, name)
	want += "written while instant\nwritten after a failed copy\n"
	if got := sh(t, ctx, c, name, "sha256sum /mnt/data/hello.txt /mnt/data/big.bin; cat /mnt/data/instant.txt /mnt/data/during.txt"); got != want {
		t.Fatalf("after the reboot from local disks:\n%s\nwant\n%s", got, want)
	}
}
