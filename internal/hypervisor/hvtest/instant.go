package hvtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/nbd"
)

// InstantTarget describes a connector under the instant recovery suite.
// The connector must implement hypervisor.InstantHost, GuestAgent and
// Console.
type InstantTarget struct {
	Connector hypervisor.Connector
	// NewConfig returns a bootable configuration for a VM of that name
	// and UUID with one disk, target vda, that the guest reads at boot but
	// never writes unless it holds a filesystem, a guest agent, and one
	// network interface whose network does not exist.
	NewConfig func(t *testing.T, name, uuid string) []byte
	// Timeout bounds each sub-test (4 minutes when zero).
	Timeout time.Duration
}

// RunInstant runs the instant recovery suite: a VM on an overlay backed by
// an NBD export boots from it and answers its agent; its disk is copied to
// a local image while it runs and it becomes an ordinary VM; a transient
// isolated VM shows its console and is reported as a leftover once its
// owner is gone.
func RunInstant(t *testing.T, tg InstantTarget) {
	if tg.Timeout == 0 {
		tg.Timeout = 4 * time.Minute
	}
	t.Run("RunCopyFinish", func(t *testing.T) { testInstantRun(t, tg) })
	t.Run("VerifyVM", func(t *testing.T) { testInstantVerify(t, tg) })
}

type instantCaps interface {
	hypervisor.InstantHost
	hypervisor.GuestAgent
	hypervisor.Console
}

func (tg InstantTarget) caps(t *testing.T) instantCaps {
	h, ok := tg.Connector.(instantCaps)
	if !ok {
		t.Fatalf("connector %T lacks InstantHost, GuestAgent or Console", tg.Connector)
	}
	return h
}

// memExport is a 32 MiB export: a pattern in its first 2 MiB and at
// 9 MiB, zeros (holes) elsewhere.
type memExport struct{ data []byte }

func newMemExport() *memExport {
	m := &memExport{data: make([]byte, 32*mib)}
	for i := range 2 * mib {
		m.data[i] = byte(i*7 + i/4096)
	}
	copy(m.data[9*mib:], bytes.Repeat([]byte("kura instant "), mib/13))
	return m
}

func (m *memExport) Size() int64 { return int64(len(m.data)) }

func (m *memExport) ReadAt(_ context.Context, p []byte, off int64) error {
	copy(p, m.data[off:])
	return nil
}

func (m *memExport) Allocation(_ context.Context, off, length int64) ([]nbd.Extent, error) {
	var out []nbd.Extent
	for pos := off; pos < off+length && pos < m.Size(); {
		end := min(pos/mib*mib+mib, m.Size())
		var fl uint32
		if bytes.Count(m.data[pos/mib*mib:end], []byte{0}) == int(end-pos/mib*mib) {
			fl = nbd.StateHole | nbd.StateZero
		}
		out = append(out, nbd.Extent{Offset: pos, Length: end - pos, Flags: fl})
		pos = end
	}
	return out, nil
}

// serveInstant serves export vda in a fresh instant directory.
func serveInstant(t *testing.T, ctx context.Context, h instantCaps, name string, tag hypervisor.InstantTag, m *memExport) (string, *nbd.Server, func()) {
	dir, err := h.InstantDir(ctx, name, tag)
	if err != nil {
		t.Fatalf("InstantDir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "nbd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	srv := nbd.NewServer(nbd.ServerOptions{})
	if err := srv.AddExport("vda", "hvtest", m); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(sctx, ln); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return dir, srv, stop
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func testInstantRun(t *testing.T, tg InstantTarget) {
	ctx := tg.ctx4(t)
	h := tg.caps(t)
	id := randomUUID()[:8]
	m := newMemExport()
	tag := hypervisor.InstantTag{Role: hypervisor.RoleInstant, Point: "p-" + id, Source: randomUUID()}
	dir, srv, _ := serveInstant(t, ctx, h, "kura-instant-hvt"+id, tag, m)
	tag.Dir = dir
	name, uuid := "kura-hvt-i-"+id, randomUUID()
	if err := h.CreateIsolatedNetwork(ctx, name); err != nil {
		t.Fatalf("CreateIsolatedNetwork: %v", err)
	}
	t.Cleanup(func() { _ = h.RemoveNetwork(context.Background(), name) })
	disk := hypervisor.InstantDisk{Target: "vda", Overlay: filepath.Join(dir, "vda.qcow2"), Size: m.Size(),
		Socket: filepath.Join(dir, "nbd.sock"), Export: "vda"}
	if err := h.CreateOverlay(ctx, disk); err != nil {
		t.Fatalf("CreateOverlay: %v", err)
	}
	if err := h.CreateOverlay(ctx, disk); !errors.Is(err, hypervisor.ErrExists) {
		t.Fatalf("CreateOverlay over an existing file = %v, want ErrExists", err)
	}
	spec := hypervisor.InstantSpec{Config: tg.NewConfig(t, "kura-hvt-src-"+id, randomUUID()), Name: name, UUID: uuid,
		Disks: []hypervisor.InstantDisk{disk}, IsolatedNetwork: name,
		Tag: tag}
	t.Cleanup(func() { _ = tg.Connector.UndefineVM(context.Background(), uuid) })
	if _, err := h.DefineInstant(ctx, spec); err != nil {
		t.Fatalf("DefineInstant: %v", err)
	}
	other := spec
	other.UUID = randomUUID()
	if _, err := h.DefineInstant(ctx, other); !errors.Is(err, hypervisor.ErrExists) {
		t.Fatalf("DefineInstant of a taken name = %v, want ErrExists", err)
	}
	ivms, err := h.InstantVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ivms, func(v hypervisor.InstantVM) bool { return v.Name == name })
	if i < 0 || ivms[i].Tag != spec.Tag {
		t.Fatalf("InstantVMs does not list %s with its tag %+v: %+v", name, spec.Tag, ivms)
	}
	if err := tg.Connector.StartVM(ctx, name); err != nil {
		t.Fatalf("StartVM: %v", err)
	}
	waitFor(t, ctx, "the guest agent", func() bool { return h.GuestPing(ctx, name) == nil })
	// The guest reads its disk from the export.
	r, err := h.GuestExec(ctx, name, "/bin/sh", "-c", "dd if=/dev/vda bs=1M count=10 2>/dev/null | sha256sum; echo oops >&2; exit 3")
	sum := sha256.Sum256(m.data[:10*mib])
	if err != nil || r.Exit != 3 || !strings.HasPrefix(string(r.Stdout), hex.EncodeToString(sum[:])) || string(r.Stderr) != "oops\n" {
		t.Fatalf("GuestExec = %+v (stdout %q), %v; want exit 3 and the export's checksum", r, r.Stdout, err)
	}
	if st := srv.Stats()["vda"]; st.BytesRead < 2*mib || st.BytesHoles == 0 {
		t.Fatalf("server stats %+v: the guest did not read its disk through the export", st)
	}
	if b, err := h.GuestReadFile(ctx, name, "/proc/version", 1<<20); err != nil || !bytes.Contains(b, []byte("Linux")) {
		t.Fatalf("GuestReadFile(/proc/version) = %q, %v", b, err)
	}
	if _, err := h.GuestReadFile(ctx, name, "/proc/version", 4); err == nil {
		t.Fatal("GuestReadFile beyond its limit succeeded")
	}
	if paused, err := h.ResumeIOPaused(ctx, name); err != nil || paused {
		t.Fatalf("ResumeIOPaused of a running vm = %v, %v", paused, err)
	}
	// Copy to a raw image while the VM runs, then switch to it.
	dest := filepath.Join(dir, "vda.raw")
	var progressed bool
	err = h.CopyDisks(ctx, name, []hypervisor.DiskCopy{{Target: "vda", Dest: dest, Format: "raw"}},
		hypervisor.CopyOptions{Progress: func(target string, done, total int64) { progressed = progressed || total > 0 }})
	if err != nil {
		t.Fatalf("CopyDisks: %v", err)
	}
	if !progressed {
		t.Error("CopyDisks reported no progress")
	}
	vm, err := tg.Connector.LookupVM(ctx, name)
	if err != nil || vm.State != hypervisor.PowerOn || len(vm.Disks) == 0 || vm.Disks[0].Source != dest {
		t.Fatalf("after CopyDisks: %+v, %v; want vda on %s", vm, err, dest)
	}
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, m.data) {
		t.Fatalf("copied image differs from the export (%v)", err)
	}
	waitFor(t, ctx, "the vm to let go of the export", func() bool { return srv.Stats()["vda"].Connections == 0 })
	if err := h.FinishInstant(ctx, name); err != nil {
		t.Fatalf("FinishInstant: %v", err)
	}
	ivms, _ = h.InstantVMs(ctx)
	if slices.ContainsFunc(ivms, func(v hypervisor.InstantVM) bool { return v.Name == name }) {
		t.Fatal("a finished vm is still listed by InstantVMs")
	}
	if err := h.FinishInstant(ctx, name); !errors.Is(err, hypervisor.ErrNotInstant) {
		t.Fatalf("FinishInstant twice = %v, want ErrNotInstant", err)
	}
	r, err = h.GuestExec(ctx, name, "/bin/sh", "-c", "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=1M count=10 2>/dev/null | sha256sum")
	if err != nil || !strings.HasPrefix(string(r.Stdout), hex.EncodeToString(sum[:])) {
		t.Fatalf("guest reads after the switch: %q, %v", r.Stdout, err)
	}
}

func (tg InstantTarget) ctx4(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), tg.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func testInstantVerify(t *testing.T, tg InstantTarget) {
	ctx := tg.ctx4(t)
	h := tg.caps(t)
	id := randomUUID()[:8]
	name := "kura-verify-hvt" + id
	m := newMemExport()
	host, _ := os.Hostname()
	source := randomUUID()
	tag := hypervisor.InstantTag{Role: hypervisor.RoleVerify, Point: "p-" + id, Source: source, Owner: deadPID(t), Host: host}
	dir, _, _ := serveInstant(t, ctx, h, name, tag, m)
	tag.Dir = dir
	if err := h.CreateIsolatedNetwork(ctx, name); err != nil {
		t.Fatalf("CreateIsolatedNetwork: %v", err)
	}
	t.Cleanup(func() { _ = h.RemoveNetwork(context.Background(), name) })
	disk := hypervisor.InstantDisk{Target: "vda", Overlay: filepath.Join(dir, "vda.qcow2"), Size: m.Size(),
		Socket: filepath.Join(dir, "nbd.sock"), Export: "vda"}
	if err := h.CreateOverlay(ctx, disk); err != nil {
		t.Fatalf("CreateOverlay: %v", err)
	}
	spec := hypervisor.InstantSpec{Config: tg.NewConfig(t, "kura-hvt-src-"+id, randomUUID()), Name: name,
		Disks: []hypervisor.InstantDisk{disk}, IsolatedNetwork: name, Console: true, Transient: true, Tag: tag}
	vm, err := h.DefineInstant(ctx, spec)
	if err != nil {
		t.Fatalf("DefineInstant (transient, isolated): %v", err)
	}
	t.Cleanup(func() { _ = tg.Connector.StopVM(context.Background(), vm.UUID) })
	if vm.State != hypervisor.PowerOn {
		t.Fatalf("a transient instant vm is %s, want on", vm.State)
	}
	waitFor(t, ctx, "the guest agent", func() bool { return h.GuestPing(ctx, name) == nil })
	shot, err := h.Screenshot(ctx, name)
	if err != nil {
		t.Fatalf("Screenshot: %v", err)
	}
	if img, err := png.Decode(bytes.NewReader(shot)); err != nil || img.Bounds().Dx() < 100 {
		t.Fatalf("screenshot is not a PNG of a screen: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.Screenshot(cctx, name); !errors.Is(err, context.Canceled) {
		t.Fatalf("Screenshot with a cancelled context: %v, want context.Canceled", err)
	}
	// Its owner is gone: a leftover of the VM the point was taken of.
	lo, err := tg.Connector.Leftovers(ctx, hypervisor.LeftoverQuery{VMs: []string{source}})
	if err != nil {
		t.Fatal(err)
	}
	if len(lo) != 1 || lo[0].VM != name || lo[0].Kind == "" {
		t.Fatalf("Leftovers = %+v, want the verification vm", lo)
	}
	if err := tg.Connector.RemoveLeftover(ctx, lo[0]); err != nil {
		t.Fatalf("RemoveLeftover: %v", err)
	}
	if _, err := tg.Connector.LookupVM(ctx, name); !errors.Is(err, hypervisor.ErrVMNotFound) {
		t.Fatalf("after RemoveLeftover the vm is still there: %v", err)
	}
	if err := h.RemoveNetwork(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := h.RemoveNetwork(ctx, name); err != nil {
		t.Fatalf("RemoveNetwork of a removed network: %v", err)
	}
}
