package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/libvirt"
	"github.com/kurabackup/kura/internal/testenv"
)

// libvirtOverTCP serves the local libvirt daemon's socket on a loopback TCP
// port, so that kura talks to it as to a remote host (qemu+tcp): every
// file then goes through libvirt, none through the local filesystem.
func libvirtOverTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("unix", "/var/run/libvirt/libvirt-sock")
			if err != nil {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return "qemu+tcp://" + ln.Addr().String() + "/system"
}

// A point restored to "another host" lands in that host's storage pool
// through libvirt (volume upload) and is defined there.
func TestRestoreToRemoteHost(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	local, err := libvirt.Connect(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	r := memRepo(t)

	g := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{SizeMiB: 32,
		Files: map[string][]byte{"remote.txt": []byte("restored on another host\n")}}}})
	vm, err := local.LookupVM(ctx, g.Name())
	if err != nil {
		t.Fatal(err)
	}
	brep, err := (&engine.Engine{Repo: r, Conn: local}).Backup(ctx, []hypervisor.VM{vm}, engine.BackupOptions{})
	if err != nil || brep.State != engine.StateCompleted {
		t.Fatalf("backup: %v %+v", err, brep)
	}
	m := brep.VMs[0].Point

	remote, err := libvirt.Connect(ctx, libvirtOverTCP(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	if !remote.Remote() {
		t.Fatal("a qemu+tcp connection is not remote")
	}
	if _, err := remote.BeginBackup(ctx, vm, hypervisor.BackupOptions{NewCheckpoint: "kura-x"}); !errors.Is(err, hypervisor.ErrUnsupported) {
		t.Fatalf("backup through a remote connection: %v, want ErrUnsupported", err)
	}

	// The "remote" host's storage pool.
	dir := imageDir(t, env)
	pool := "kura-t-remote-" + randHex(4)
	virsh(t, "pool-create-as", pool, "dir", "--target", dir)
	t.Cleanup(func() { _ = exec.Command("virsh", "-q", "-c", "qemu:///system", "pool-destroy", pool).Run() })

	name := g.Name() + "-r"
	dropVM(t, env, name)
	eng := &engine.Engine{Repo: r, Conn: remote}
	// A plain directory that is no pool of the remote host is refused
	// before anything is written.
	if _, err := eng.Restore(ctx, m, engine.RestoreOptions{Name: name, Storage: t.TempDir()}); err == nil ||
		!strings.Contains(err.Error(), "storage pool") {
		t.Fatalf("restore to a non-pool directory: %v", err)
	}
	rep, err := eng.Restore(ctx, m, engine.RestoreOptions{Name: name, Storage: pool})
	if err != nil {
		t.Fatalf("restore to the remote host: %v", err)
	}
	if !rep.Defined || len(rep.Disks) != 1 || filepath.Dir(rep.Disks[0].Path) != dir {
		t.Fatalf("report %+v", rep)
	}
	if _, err := env.Conn.DomainLookupByName(name); err != nil {
		t.Fatalf("restored vm not defined on the remote host: %v", err)
	}
	// The guest never ran: the uploaded image equals the original.
	if out, err := exec.Command("qemu-img", "compare", "-U", g.DiskPath("vda"), rep.Disks[0].Path).CombinedOutput(); err != nil {
		t.Fatalf("uploaded image differs from the original: %v %s", err, out)
	}
	// Again: the VM and the volume now exist on the remote host.
	_, err = eng.Restore(ctx, m, engine.RestoreOptions{Name: name, Storage: pool})
	if !errors.Is(err, engine.ErrConflict) || !strings.Contains(err.Error(), rep.Disks[0].Path) {
		t.Fatalf("second restore: %v, want a conflict naming the volume", err)
	}
}

func virsh(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("virsh", append([]string{"-q", "-c", "qemu:///system"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh %s: %v %s", strings.Join(args, " "), err, out)
	}
}
