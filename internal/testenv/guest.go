package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// GuestOptions describes a test guest.
type GuestOptions struct {
	// Name of the domain; default a unique "kura-t-<test>-<random>".
	Name string
	// Agent adds the org.qemu.guest_agent.0 channel (qemu-ga runs on it).
	Agent bool
	// Disks, attached as virtio disks in order.
	Disks []DiskSpec
	// Start boots the guest after defining it.
	Start bool
	// MemoryMiB defaults to 256.
	MemoryMiB int
}

// DiskSpec describes one disk of a test guest.
type DiskSpec struct {
	// Target is the guest device name (vda, vdb, ...); default vda, vdb, ...
	// by position.
	Target string
	// Format is qcow2 (default) or raw.
	Format string
	// SizeMiB defaults to 64.
	SizeMiB int
	// Files, when not nil, are written into a fresh ext4 filesystem on the
	// disk (keys are slash-separated relative paths). Nil means a blank disk.
	Files map[string][]byte
	// Boot makes the disk BIOS-bootable (SYSLINUX, the guest kernel and
	// initramfs on a FAT partition, see makeBootDisk): the guest boots
	// from it rather than from the host's kernel files. Files must be nil.
	Boot bool
	// Path, when set, is an existing image used as is (never removed). It
	// must be reachable by libvirt's qemu user (not under a 0700 t.TempDir()):
	// Env.ImageDir is a good place.
	Path string
}

// Guest is a libvirt domain created for a test.
type Guest struct {
	env     *Env
	dom     libvirt.Domain
	agent   bool
	dir     string
	disks   map[string]string // target -> image path
	console string
}

// NewGuest creates the disk images, defines a TCG domain (and starts it when
// opts.Start) and registers a cleanup that destroys and undefines it and
// removes its images.
func (e *Env) NewGuest(t testing.TB, opts GuestOptions) *Guest {
	t.Helper()
	if opts.Name == "" {
		opts.Name = uniqueName(t.Name())
	}
	if opts.MemoryMiB <= 0 {
		opts.MemoryMiB = 256
	}
	dir := filepath.Join(e.ImageDir, opts.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	g := &Guest{env: e, agent: opts.Agent, dir: dir, disks: map[string]string{},
		console: filepath.Join(dir, "console.log")}
	t.Cleanup(func() { g.cleanup(t) })
	var disks []domainDisk
	boot := false
	for i, d := range opts.Disks {
		if d.Target == "" {
			d.Target = "vd" + string(rune('a'+i))
		}
		if d.Format == "" {
			d.Format = "qcow2"
		}
		if _, dup := g.disks[d.Target]; dup {
			t.Fatalf("testenv: duplicate disk target %s", d.Target)
		}
		path, err := e.makeDisk(t, dir, d)
		if err != nil {
			t.Fatalf("testenv: disk %s: %v", d.Target, err)
		}
		g.disks[d.Target] = path
		disks = append(disks, domainDisk{Path: path, Format: d.Format, Target: d.Target})
		boot = boot || d.Boot
	}
	xml, err := domainXML(domainSpec{Name: opts.Name, Owner: ownerTag + strconv.Itoa(os.Getpid()), MemoryMiB: opts.MemoryMiB,
		Kernel: e.Kernel, Initrd: e.Initrd, Console: g.console, Agent: opts.Agent, Disks: disks, BootDisk: boot})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dom, err := e.Conn.DomainDefineXML(xml)
	if err != nil {
		t.Fatalf("testenv: define %s: %v", opts.Name, err)
	}
	g.dom = dom
	if opts.Start {
		if err := g.Start(context.Background()); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	return g
}

func uniqueName(test string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > 40 {
		s = s[:40]
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return "kura-t-" + s + "-" + hex.EncodeToString(rnd[:])
}

// makeDisk creates the image for d in dir and returns its path.
func (e *Env) makeDisk(t testing.TB, dir string, d DiskSpec) (string, error) {
	if d.Path != "" {
		return d.Path, nil
	}
	if d.Format != "qcow2" && d.Format != "raw" {
		return "", fmt.Errorf("unsupported format %q", d.Format)
	}
	size := d.SizeMiB
	if size <= 0 {
		size = 64
	}
	path := filepath.Join(dir, d.Target+"."+d.Format)
	if d.Boot {
		if d.Files != nil {
			return "", fmt.Errorf("a boot disk takes no files")
		}
		raw := path
		if d.Format == "qcow2" {
			raw = filepath.Join(dir, d.Target+".build.raw")
			defer os.Remove(raw)
		}
		if err := makeBootDisk(t, e, raw, size); err != nil || d.Format == "raw" {
			return path, err
		}
		return path, run("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, path)
	}
	if d.Files == nil {
		return path, run("qemu-img", "create", "-q", "-f", d.Format, path, fmt.Sprintf("%dM", size))
	}
	src := t.TempDir()
	for name, data := range d.Files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return "", err
		}
	}
	raw := path
	if d.Format == "qcow2" {
		raw = filepath.Join(dir, d.Target+".build.raw")
	}
	f, err := os.Create(raw)
	if err != nil {
		return "", err
	}
	err = f.Truncate(int64(size) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if err := run("mkfs.ext4", "-q", "-F", "-T", "default", "-E", "root_owner=0:0", "-d", src, raw); err != nil {
		return "", err
	}
	if d.Format == "raw" {
		return path, nil
	}
	defer os.Remove(raw)
	return path, run("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, path)
}

func run(name string, args ...string) error {
	p, err := lookTool(name)
	if err != nil {
		return err
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Name of the domain.
func (g *Guest) Name() string { return g.dom.Name }

// UUID of the domain in canonical text form.
func (g *Guest) UUID() string {
	u := g.dom.UUID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Domain is the go-libvirt handle of the guest.
func (g *Guest) Domain() libvirt.Domain { return g.dom }

// DiskPath is the image file of the disk with the given target ("" if none).
func (g *Guest) DiskPath(target string) string { return g.disks[target] }

// Console returns what the guest wrote on its serial console so far.
func (g *Guest) Console() string {
	b, _ := os.ReadFile(g.console)
	return string(b)
}

// Start boots the guest.
func (g *Guest) Start(ctx context.Context) error {
	if err := g.env.Conn.DomainCreate(g.dom); err != nil {
		return fmt.Errorf("start %s: %w", g.dom.Name, err)
	}
	return nil
}

// Destroy powers the guest off at once (no error if already off).
func (g *Guest) Destroy(ctx context.Context) error {
	err := g.env.Conn.DomainDestroy(g.dom)
	if err != nil && !isNotRunning(err) {
		return fmt.Errorf("destroy %s: %w", g.dom.Name, err)
	}
	return nil
}

// Running reports whether the domain is running (or paused).
func (g *Guest) Running(ctx context.Context) (bool, error) {
	st, _, err := g.env.Conn.DomainGetState(g.dom, 0)
	if err != nil {
		return false, fmt.Errorf("state of %s: %w", g.dom.Name, err)
	}
	return libvirt.DomainState(st) != libvirt.DomainShutoff, nil
}

// Shutdown asks the guest to power off (through the agent when it has one,
// else with the ACPI power button, repeated because the guest ignores it
// until its acpid runs) and waits until it is off, at most 120 s or until ctx
// ends.
func (g *Guest) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	var lastSent time.Time
	for {
		on, err := g.Running(ctx)
		if err != nil {
			return err
		}
		if !on {
			return nil
		}
		if time.Since(lastSent) > 3*time.Second {
			mode := libvirt.DomainShutdownAcpiPowerBtn
			if g.agent {
				mode = libvirt.DomainShutdownGuestAgent
			}
			if err := g.env.Conn.DomainShutdownFlags(g.dom, mode); err != nil && !isNotRunning(err) {
				if !g.agent {
					return fmt.Errorf("shutdown %s: %w", g.dom.Name, err)
				}
				// The agent may not be up yet: fall back to ACPI.
				_ = g.env.Conn.DomainShutdownFlags(g.dom, libvirt.DomainShutdownAcpiPowerBtn)
			}
			lastSent = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("shutdown %s: %w", g.dom.Name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func isNotRunning(err error) bool {
	var le libvirt.Error
	if errors.As(err, &le) && le.Code == uint32(libvirt.ErrOperationInvalid) {
		return true
	}
	return strings.Contains(err.Error(), "not running")
}

func (g *Guest) cleanup(t testing.TB) {
	if t.Failed() {
		if c := g.Console(); c != "" {
			t.Logf("testenv: console of %s:\n%s", g.dom.Name, tail(c, 4000))
		}
	}
	if g.dom.Name != "" {
		_ = g.env.Conn.DomainDestroy(g.dom)
		flags := libvirt.DomainUndefineCheckpointsMetadata | libvirt.DomainUndefineSnapshotsMetadata |
			libvirt.DomainUndefineNvram | libvirt.DomainUndefineManagedSave
		if err := g.env.Conn.DomainUndefineFlags(g.dom, flags); err != nil && !libvirt.IsNotFound(err) {
			t.Errorf("testenv: undefine %s: %v", g.dom.Name, err)
		}
	}
	if err := os.RemoveAll(g.dir); err != nil {
		t.Errorf("testenv: remove %s: %v", g.dir, err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
