package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// hostExtract reads a file out of the ext4 filesystem in a (qcow2) image
// with qemu-img and debugfs, independently of the guest.
func hostExtract(t *testing.T, image, name string) []byte {
	t.Helper()
	debugfs := NeedTool(t, "debugfs")
	raw := filepath.Join(t.TempDir(), "disk.raw")
	if err := run("qemu-img", "convert", "-q", "-O", "raw", image, raw); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(debugfs, "-R", "cat "+name, raw).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", name, err)
	}
	return out
}

func TestGuestWithAgent(t *testing.T) {
	t.Parallel()
	env := RequireLibvirt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	hello := []byte("hello from kura\n")
	blob := randBytes(t, 100<<10)
	g := env.NewGuest(t, GuestOptions{Agent: true, Disks: []DiskSpec{{
		SizeMiB: 32, Files: map[string][]byte{"hello.txt": hello, "sub/blob.bin": blob},
	}}})
	if !strings.HasPrefix(g.Name(), "kura-t-") || len(g.UUID()) != 36 {
		t.Fatalf("name %q uuid %q", g.Name(), g.UUID())
	}
	start := time.Now()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitAgent(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("boot to agent: %v", time.Since(start).Round(10*time.Millisecond))

	got, err := g.ReadFile(ctx, "/mnt/data/hello.txt")
	if err != nil || !bytes.Equal(got, hello) {
		t.Fatalf("ReadFile hello.txt = %q, %v", got, err)
	}
	out, code, err := g.Exec(ctx, "sha256sum /mnt/data/sub/blob.bin")
	sum := sha256.Sum256(blob)
	if err != nil || code != 0 || !strings.HasPrefix(string(out), hex.EncodeToString(sum[:])) {
		t.Fatalf("sha256sum in guest = %q exit %d, %v; want %x", out, code, err, sum)
	}
	r, err := g.Run(ctx, "echo oops >&2; exit 3")
	if err != nil || r.Exit != 3 || string(r.Stderr) != "oops\n" {
		t.Fatalf("Run exit/stderr = %d %q, %v", r.Exit, r.Stderr, err)
	}

	data := randBytes(t, 600<<10) // several agent chunks
	if err := g.WriteFile(ctx, "/mnt/data/new.bin", data); err != nil {
		t.Fatal(err)
	}
	if got, err := g.ReadFile(ctx, "/mnt/data/new.bin"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadFile new.bin: %d bytes, equal=%v, %v", len(got), bytes.Equal(got, data), err)
	}
	if _, code, err := g.Exec(ctx, "sync"); err != nil || code != 0 {
		t.Fatalf("sync: exit %d, %v", code, err)
	}

	n, err := g.FSFreeze(ctx)
	if err != nil || n < 1 {
		t.Fatalf("freeze: %d, %v", n, err)
	}
	if st, err := g.FSFreezeStatus(ctx); err != nil || st != "frozen" {
		t.Fatalf("status after freeze: %q, %v", st, err)
	}
	if n, err := g.FSThaw(ctx); err != nil || n < 1 {
		t.Fatalf("thaw: %d, %v", n, err)
	}
	if st, err := g.FSFreezeStatus(ctx); err != nil || st != "thawed" {
		t.Fatalf("status after thaw: %q, %v", st, err)
	}
	hook, err := g.ReadFile(ctx, "/run/fsfreeze.log")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(hook)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "freeze ") || !strings.HasPrefix(lines[1], "thaw ") {
		t.Fatalf("fsfreeze hook log = %q", hook)
	}

	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if on, err := g.Running(ctx); err != nil || on {
		t.Fatalf("running after shutdown: %v, %v", on, err)
	}
	if got := hostExtract(t, g.DiskPath("vda"), "/new.bin"); !bytes.Equal(got, data) {
		t.Fatalf("new.bin on the host image: %d bytes, differs", len(got))
	}

	start = time.Now()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitAgent(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("second boot to agent: %v", time.Since(start).Round(10*time.Millisecond))
	if got, err := g.ReadFile(ctx, "/mnt/data/new.bin"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("new.bin after reboot: equal=%v, %v", bytes.Equal(got, data), err)
	}
	if err := g.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Destroy(ctx); err != nil {
		t.Fatalf("second destroy: %v", err)
	}
}

func TestGuestWithoutAgent(t *testing.T) {
	t.Parallel()
	env := RequireLibvirt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	g := env.NewGuest(t, GuestOptions{Start: true, Disks: []DiskSpec{
		{Format: "raw", SizeMiB: 16},
		{Format: "qcow2", SizeMiB: 16},
		{Format: "raw", SizeMiB: 8, Files: map[string][]byte{"a/b.txt": []byte("raw ext4\n")}},
	}})
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
	err := g.WaitAgent(wctx)
	wcancel()
	if !errors.Is(err, ErrAgent) {
		t.Fatalf("WaitAgent without agent = %v, want ErrAgent", err)
	}
	if err := g.WriteDiskPattern(ctx, "vda", 0x5a, 4<<20, 4096); err != nil {
		t.Fatal(err)
	}
	if err := g.WriteDiskPattern(ctx, "vdb", 0xee, 1<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := g.WriteDiskPattern(ctx, "vdz", 1, 0, 512); !errors.Is(err, ErrNoDisk) {
		t.Fatalf("unknown target: %v, want ErrNoDisk", err)
	}
	if err := g.WriteDiskPattern(ctx, "vdb", 1, 16<<20-512, 1024); !errors.Is(err, ErrNoDisk) {
		t.Fatalf("write past the end: %v, want ErrNoDisk", err)
	}
	// Wait for init so that the power button is handled, then shut down.
	deadline := time.Now().Add(120 * time.Second)
	for !strings.Contains(g.Console(), "kura-guest: ready") {
		if time.Now().After(deadline) {
			t.Fatalf("guest not ready; console: %q", g.Console())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("boot to init ready: %v", time.Since(start).Round(10*time.Millisecond))
	sd := time.Now()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("acpi shutdown: %v", time.Since(sd).Round(10*time.Millisecond))

	check := func(image string, want func(off int) byte) {
		t.Helper()
		raw := image
		if strings.HasSuffix(image, ".qcow2") {
			raw = filepath.Join(t.TempDir(), "vdb.raw")
			if err := run("qemu-img", "convert", "-q", "-O", "raw", image, raw); err != nil {
				t.Fatal(err)
			}
		}
		b, err := os.ReadFile(raw)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range b {
			if c != want(i) {
				t.Fatalf("%s: byte %d = %#x, want %#x", filepath.Base(image), i, c, want(i))
			}
		}
	}
	if got := hostExtract(t, g.DiskPath("vdc"), "/a/b.txt"); string(got) != "raw ext4\n" {
		t.Fatalf("file in raw ext4 disk = %q", got)
	}
	check(g.DiskPath("vda"), func(off int) byte {
		if off >= 4<<20 && off < 4<<20+4096 {
			return 0x5a
		}
		return 0
	})
	check(g.DiskPath("vdb"), func(off int) byte {
		if off >= 1<<20 && off < 2<<20 {
			return 0xee
		}
		return 0
	})
}

func TestDomainXML(t *testing.T) {
	x, err := domainXML(domainSpec{Name: "a<b", MemoryMiB: 128, Kernel: "/k", Initrd: "/i",
		Console: "/c.log", Agent: true, Disks: []domainDisk{{Path: "/d'1.qcow2", Format: "qcow2", Target: "vda"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<domain type='qemu'>", "<name>a&lt;b</name>", "/d&#39;1.qcow2",
		"org.qemu.guest_agent.0", "<memory unit='MiB'>128</memory>"} {
		if !strings.Contains(x, want) {
			t.Errorf("domain XML lacks %q:\n%s", want, x)
		}
	}
	x, _ = domainXML(domainSpec{Name: "n", MemoryMiB: 256})
	if strings.Contains(x, "guest_agent") {
		t.Errorf("agent channel without Agent:\n%s", x)
	}
}

func TestUniqueName(t *testing.T) {
	a, b := uniqueName("TestX/sub case#1"), uniqueName("TestX/sub case#1")
	if a == b || !strings.HasPrefix(a, "kura-t-testx-sub-case-1-") {
		t.Fatalf("names %q %q", a, b)
	}
	if n := uniqueName(strings.Repeat("x", 200)); len(n) > 60 {
		t.Fatalf("name too long: %d", len(n))
	}
}

func TestOwnerPID(t *testing.T) {
	x, err := domainXML(domainSpec{Name: "n", Owner: ownerTag + "4242", MemoryMiB: 256})
	if err != nil {
		t.Fatal(err)
	}
	if pid, ok := ownerPID(x); !ok || pid != 4242 {
		t.Fatalf("ownerPID = %d, %v", pid, ok)
	}
	for _, bad := range []string{"<domain><description>other</description></domain>",
		"<domain><description>" + ownerTag + "x</description></domain>", "<domain>", ""} {
		if _, ok := ownerPID(bad); ok {
			t.Errorf("ownerPID(%q) accepted", bad)
		}
	}
	if !processAlive(os.Getpid()) {
		t.Error("own process reported dead")
	}
}

func TestSweepOrphans(t *testing.T) {
	env := RequireLibvirt(t)
	// A guest "owned" by a process that cannot exist (above pid_max).
	g := env.NewGuest(t, GuestOptions{Disks: []DiskSpec{{SizeMiB: 1}}})
	desc, err := env.Conn.DomainGetXMLDesc(g.Domain(), 0)
	if err != nil {
		t.Fatal(err)
	}
	orphan := strings.Replace(desc, ownerTag+strconv.Itoa(os.Getpid()), ownerTag+"99999999", 1)
	if _, err := env.Conn.DomainDefineXML(orphan); err != nil {
		t.Fatal(err)
	}
	live := env.NewGuest(t, GuestOptions{})
	if err := sweepOrphans(env.Conn, env.ImageDir); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Conn.DomainLookupByName(g.Name()); err == nil {
		t.Fatal("orphan guest still defined")
	}
	if _, err := os.Stat(filepath.Dir(g.DiskPath("vda"))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan image dir: %v", err)
	}
	if _, err := env.Conn.DomainLookupByName(live.Name()); err != nil {
		t.Fatalf("live guest swept: %v", err)
	}
}

// recTB records how Need ended a test instead of ending it.
type recTB struct {
	testing.TB
	skipped, failed bool
}

func (r *recTB) Helper()                        {}
func (r *recTB) Skipf(format string, a ...any)  { r.skipped = true }
func (r *recTB) Fatalf(format string, a ...any) { r.failed = true }

func TestNeedStrict(t *testing.T) {
	for _, tc := range []struct {
		env             string
		ok              bool
		skipped, failed bool
	}{
		{"", false, true, false},
		{"1", false, false, true},
		{"1", true, false, false},
		{"0", false, true, false},
	} {
		t.Setenv("KURA_TEST_STRICT", tc.env)
		r := &recTB{TB: t}
		Need(r, "thing", tc.ok)
		if r.skipped != tc.skipped || r.failed != tc.failed || Strict() != (tc.env == "1") {
			t.Errorf("strict=%q ok=%v: skipped=%v failed=%v", tc.env, tc.ok, r.skipped, r.failed)
		}
	}
}

func TestBootDiskGuest(t *testing.T) {
	t.Parallel()
	env := RequireLibvirt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g := env.NewGuest(t, GuestOptions{Agent: true, Start: true, Disks: []DiskSpec{{Boot: true, Format: "raw", SizeMiB: 40},
		{SizeMiB: 16, Files: map[string][]byte{"x.txt": []byte("x\n")}}}})
	start := time.Now()
	if err := g.WaitAgent(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("boot from disk to agent: %v", time.Since(start).Round(10*time.Millisecond))
	out, code, err := g.Exec(ctx, "cat /proc/cmdline /mnt/vdb/x.txt")
	if err != nil || code != 0 || !strings.Contains(string(out), BootCmdlineTag) || !strings.HasSuffix(string(out), "x\n") {
		t.Fatalf("cmdline and data disk: %q %d %v", out, code, err)
	}
}
