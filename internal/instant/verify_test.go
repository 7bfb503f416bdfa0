package instant

import (
	"bytes"
	"context"
	"image/png"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/libvirt"
	"github.com/kurabackup/kura/internal/testenv"
)

// corruptKernel overwrites the middle of the kernel on a boot disk (raw).
func corruptKernel(t *testing.T, env *testenv.Env, img string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(env.Initrd), "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := len(b) / 4; i < len(b)/2; i++ {
		b[i] = byte(rng.Uint32())
	}
	bad := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mcopy", "-o", "-i", img+"@@"+"1M", bad, "::"+testenv.BootKernelName).CombinedOutput()
	if err != nil {
		t.Fatalf("mcopy: %v %s", err, out)
	}
}

// TestVerifyBoot boots a good point, a point of the same VM taken after
// its kernel was corrupted, and the good point again with a probe that
// does not match; each result is recorded and nothing is left behind.
func TestVerifyBoot(t *testing.T) {
	env, c := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	hello := []byte("boot me\n")
	g := env.NewGuest(t, testenv.GuestOptions{Agent: true, Disks: []testenv.DiskSpec{{Boot: true, Format: "raw", SizeMiB: 40},
		{Target: "vdb", SizeMiB: 16, Files: map[string][]byte{"hello.txt": hello}}}})
	r := memRepo(t)
	good := backup(t, ctx, r, c, g)
	corruptKernel(t, env, g.DiskPath("vda"))
	bad := backup(t, ctx, r, c, g)

	cat, err := catalog.Open(ctx, filepath.Join(t.TempDir(), "catalog.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	shots := t.TempDir()
	m := &Manager{Repo: r, Conn: c, Catalog: cat, Logger: testLogger(t)}
	var probes []Probe
	for _, s := range []string{"exec:grep -c " + testenv.BootCmdlineTag + " /proc/cmdline => 1", "file:/mnt/vdb/hello.txt=" + sum(hello),
		"exec:httpd -p 8080 -h /tmp >/dev/null 2>&1 </dev/null", "tcp:8080", "exec[1]:test -e /nonexistent"} {
		p, err := ParseProbe(s)
		if err != nil {
			t.Fatal(err)
		}
		probes = append(probes, p)
	}
	// Under TCG on a loaded two-core machine a boot can take minutes: the
	// good point gets time; the bad one fails whatever the timeout.
	opts := VerifyOptions{Probes: probes, Timeout: 5 * time.Minute, ScreenshotDir: shots,
		Progress: func(p, msg string) { t.Logf("verify %s: %s", p, msg) }}
	var res []BootResult
	badDone := make(chan []BootResult, 1)
	go func() {
		bopts := opts
		bopts.Timeout = 40 * time.Second
		r, err := m.VerifyBoot(ctx, []string{bad.ID}, bopts)
		if err != nil {
			t.Error(err)
		}
		badDone <- r
	}()
	res, err = m.VerifyBoot(ctx, []string{good.ID}, opts)
	if err != nil || len(res) != 1 {
		t.Fatalf("VerifyBoot: %v %+v", err, res)
	}
	res = append(res, <-badDone...)
	if len(res) != 2 {
		t.Fatalf("VerifyBoot of the bad point: %+v", res)
	}
	ok, failed := res[0], res[1]
	if !ok.OK || len(ok.Probes) != len(probes)+1 || ok.BootSeconds <= 0 {
		t.Fatalf("good point: %+v", ok)
	}
	t.Logf("good point booted to its agent in %.1f s, verified in %.1f s", ok.BootSeconds, ok.Seconds)
	if failed.OK || !strings.Contains(failed.Reason, "did not answer within") {
		t.Fatalf("point with a corrupted kernel: %+v", failed)
	}
	t.Logf("corrupted point: %s", failed.Reason)
	for _, r := range res {
		b, err := os.ReadFile(r.Screenshot)
		if err != nil {
			t.Fatalf("screenshot of %s: %v", r.Point, err)
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Fatalf("screenshot of %s is not a PNG: %v", r.Point, err)
		}
	}

	// A probe that does not match fails the point, saying why.
	wrong, _ := ParseProbe("file:/mnt/vdb/hello.txt=" + sum([]byte("something else\n")))
	opts.Probes = []Probe{wrong}
	res, err = m.VerifyBoot(ctx, []string{good.ID}, opts)
	if err != nil || len(res) != 1 || res[0].OK || !strings.Contains(res[0].Reason, "probe file:/mnt/vdb/hello.txt") ||
		!strings.Contains(res[0].Reason, "want "+sum([]byte("something else\n"))) {
		t.Fatalf("mismatching probe: %+v, %v", res, err)
	}

	checks, err := cat.BootChecks(ctx, good.ID)
	if err != nil || len(checks) != 2 || checks[0].OK || !checks[1].OK || checks[1].Screenshot == "" {
		t.Fatalf("catalog boot checks of the good point: %+v %v", checks, err)
	}
	if checks, _ := cat.BootChecks(ctx, bad.ID); len(checks) != 1 || checks[0].OK || checks[0].Reason == "" {
		t.Fatalf("catalog boot checks of the bad point: %+v", checks)
	}
	lo, err := c.Leftovers(ctx, hypervisor.LeftoverQuery{VMs: []string{g.UUID()}})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lo {
		switch l.Kind {
		case libvirt.KindInstantVM, libvirt.KindNetwork, libvirt.KindInstantDir:
			t.Errorf("left after verification: %+v", l)
		}
	}
	if vms, _ := c.InstantVMs(ctx); len(vms) != 0 {
		for _, v := range vms {
			if v.Tag.Source == g.UUID() {
				t.Fatalf("verification vm left: %+v", v)
			}
		}
	}
}
