package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// Sentinel errors.
var (
	// ErrAgent means the guest agent did not answer or returned an error.
	ErrAgent = errors.New("guest agent error")
	// ErrMonitor means a QEMU monitor command failed.
	ErrMonitor = errors.New("qemu monitor command failed")
	// ErrNoDisk means the guest has no disk with the given target.
	ErrNoDisk = errors.New("no such disk")
)

// Default locations.
const (
	LibvirtSocket   = "/var/run/libvirt/libvirt-sock"
	DefaultCacheDir = "/var/tmp/kura-guest"
	DefaultImageDir = "/var/lib/libvirt/images/kura-test"
)

// Strict reports whether missing components must fail tests instead of
// skipping them (KURA_TEST_STRICT=1, set in CI).
func Strict() bool { return os.Getenv("KURA_TEST_STRICT") == "1" }

// Need skips the test when ok is false, or fails it when Strict is set.
func Need(t testing.TB, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if Strict() {
		t.Fatalf("required component unavailable (KURA_TEST_STRICT=1): %s", what)
		return
	}
	t.Skipf("skipping: %s unavailable", what)
}

// NeedTool is Need for an executable looked up in PATH (and the sbin dirs).
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := lookTool(name)
	Need(t, "tool "+name, err == nil)
	return p
}

func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}

// Env is a connection to the local libvirtd (qemu:///system) and the paths
// of the test guest's kernel and initramfs.
type Env struct {
	// Conn is the go-libvirt connection, closed when the test ends.
	Conn *libvirt.Libvirt
	// Kernel and Initrd are the guest's boot files.
	Kernel, Initrd string
	// ImageDir is where guests' disk images are created.
	ImageDir string
}

var (
	buildMu   sync.Mutex
	buildDone bool
)

// RequireLibvirt connects to libvirtd and makes sure the guest kernel and
// initramfs are built. It skips (or fails, when Strict) if libvirtd, qemu or
// the guest ingredients are missing. The connection is closed at cleanup.
func RequireLibvirt(t testing.TB) *Env {
	t.Helper()
	_, err := os.Stat(LibvirtSocket)
	Need(t, "libvirtd socket "+LibvirtSocket+" (run scripts/host-setup.sh)", err == nil)
	for _, tool := range []string{"qemu-img", "mkfs.ext4", "qemu-system-x86_64"} {
		NeedTool(t, tool)
	}
	kernel, initrd, err := buildGuest()
	if err != nil {
		Need(t, "test guest kernel/initramfs: "+err.Error(), false)
	}
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithLocalTimeout(10 * time.Second)))
	if err := l.ConnectToURI(libvirt.QEMUSystem); err != nil {
		Need(t, "libvirt connection: "+err.Error(), false)
	}
	t.Cleanup(func() { _ = l.Disconnect() })
	dir := os.Getenv("KURA_TEST_IMAGES")
	if dir == "" {
		dir = DefaultImageDir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testenv: create image dir: %v", err)
	}
	sweepOnce.Do(func() {
		if err := sweepOrphans(l, dir); err != nil {
			t.Logf("testenv: sweeping orphaned test guests: %v", err)
		}
	})
	return &Env{Conn: l, Kernel: kernel, Initrd: initrd, ImageDir: dir}
}

// CacheDir is where the guest kernel and initramfs are built.
func CacheDir() string {
	if d := os.Getenv("KURA_GUEST_CACHE"); d != "" {
		return d
	}
	return DefaultCacheDir
}

// buildGuest runs scripts/build-guest.sh once per process, under an flock so
// that concurrent test binaries do not build over each other.
func buildGuest() (kernel, initrd string, err error) {
	dir := CacheDir()
	initrd = filepath.Join(dir, "initrd.img")
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDone {
		return pickKernel(dir), initrd, nil
	}
	script, err := scriptPath("build-guest.sh")
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("create guest cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", "", fmt.Errorf("open build lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", "", fmt.Errorf("lock guest cache: %w", err)
	}
	out, err := exec.Command(script, dir).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("%s: %w: %s", script, err, out)
	}
	buildDone = true
	return pickKernel(dir), initrd, nil
}

// pickKernel prefers the uncompressed PVH kernel (boots about twice as fast
// under TCG) and falls back to the bzImage.
func pickKernel(dir string) string {
	if vmlinux := filepath.Join(dir, "vmlinux"); pvhBootable(vmlinux) {
		return vmlinux
	}
	return filepath.Join(dir, "vmlinuz")
}

// scriptPath finds a file in the repository's scripts directory, relative to
// this source file.
func scriptPath(name string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate testenv source")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "scripts", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("find %s: %w", name, err)
	}
	return p, nil
}
