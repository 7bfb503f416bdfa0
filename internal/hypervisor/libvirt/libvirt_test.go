package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/hvtest"
	"github.com/kurabackup/kura/internal/testenv"
)

func connect(t *testing.T) (*testenv.Env, *Connector) {
	t.Helper()
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, "", slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return env, c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func guestVM(t *testing.T, c *Connector, g *testenv.Guest) hypervisor.VM {
	t.Helper()
	vm, err := c.LookupVM(testCtx(t, time.Minute), g.Name())
	if err != nil {
		t.Fatalf("LookupVM(%s): %v", g.Name(), err)
	}
	return vm
}

func TestConnectURIs(t *testing.T) {
	for _, uri := range []string{"xen:///system", "qemu:///session", "qemu+tcp:///system", "qemu+tcp://host/session"} {
		if _, err := Connect(context.Background(), uri, nil); !errors.Is(err, ErrBadURI) {
			t.Errorf("Connect(%q) = %v, want ErrBadURI", uri, err)
		}
	}
	// A remote host that does not answer: a connection error, not a hang.
	if _, err := Connect(context.Background(), "qemu+tcp://127.0.0.1:1/system", nil); err == nil || errors.Is(err, ErrBadURI) {
		t.Errorf("Connect to a closed port = %v, want a connection error", err)
	}
}

func TestConformanceRunning(t *testing.T) {
	env, c := connect(t)
	hvtest.Run(t, hvtest.Target{Connector: c, Consistency: hypervisor.ModeCrash, NewConfig: newConfigFunc(env), Abandon: abandon,
		Storage: func(t *testing.T) string { return t.TempDir() }, ReadDisk: hvtest.ReadLocalImage,
		MakeVM: func(t *testing.T) (hypervisor.VM, hvtest.WriteFunc) {
			g := env.NewGuest(t, testenv.GuestOptions{Start: true, MemoryMiB: 128,
				Disks: []testenv.DiskSpec{{Target: "vda", Format: "qcow2", SizeMiB: 32}}})
			return guestVM(t, c, g), func(off int64, data []byte) {
				hmpWrite(t, g, 0, data[0], off, int64(len(data)))
			}
		}})
}

// qemuIOWrite writes a pattern into a shut-off VM's image.
func qemuIOWrite(t *testing.T, img, format string, pattern byte, off, n int64) {
	t.Helper()
	cmd := exec.Command("qemu-io", "-f", format, "-c", fmt.Sprintf("write -P 0x%02x %d %d", pattern, off, n), img)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v: %s", err, out)
	}
}

func TestConformanceShutOff(t *testing.T) {
	env, c := connect(t)
	testenv.NeedTool(t, "qemu-io")
	hvtest.Run(t, hvtest.Target{Connector: c, NewConfig: newConfigFunc(env), Abandon: abandon,
		Storage: func(t *testing.T) string { return t.TempDir() }, ReadDisk: hvtest.ReadLocalImage,
		MakeVM: func(t *testing.T) (hypervisor.VM, hvtest.WriteFunc) {
			g := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{Target: "vda", Format: "qcow2", SizeMiB: 32}}})
			vm := guestVM(t, c, g)
			if vm.State != hypervisor.PowerOff {
				t.Fatalf("state %s, want off", vm.State)
			}
			return vm, func(off int64, data []byte) {
				qemuIOWrite(t, g.DiskPath("vda"), "qcow2", data[0], off, int64(len(data)))
			}
		}})
}

// hmpWrite writes a pattern into the running guest's vda through qemu-io in
// the monitor. (The HMP qemu-io output does not come back through libvirt
// here, so success is checked by the backup reading the pattern back.)
func hmpWrite(t *testing.T, g *testenv.Guest, disk int, pattern byte, off, n int64) {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	for _, cmd := range []string{fmt.Sprintf("write -P 0x%02x %d %d", pattern, off, n), "flush"} {
		out, err := g.HMP(ctx, fmt.Sprintf(`qemu-io -d /machine/peripheral/virtio-disk%d/virtio-backend "%s"`, disk, cmd))
		if err != nil || strings.Contains(out, "rror") {
			t.Fatalf("hmp qemu-io %s: %q, %v", cmd, out, err)
		}
	}
}
