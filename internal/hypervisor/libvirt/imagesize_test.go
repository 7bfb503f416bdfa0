package libvirt

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kurabackup/kura/internal/testenv"
)

// TestImageVirtualSize reads the virtual size of qcow2 and raw images made
// by qemu-img from their headers, as qemu-img itself reports it.
func TestImageVirtualSize(t *testing.T) {
	qemuImg := testenv.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	for _, tc := range []struct {
		format string
		size   string
		want   int64
	}{
		{"qcow2", "1G", 1 << 30},
		{"qcow2", "100G", 100 << 30},
		{"qcow2", "12345k", 12345 << 10},
		{"raw", "64M", 64 << 20},
	} {
		p := filepath.Join(dir, tc.size+"."+tc.format)
		if out, err := exec.Command(qemuImg, "create", "-q", "-f", tc.format, p, tc.size).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img create: %v: %s", err, out)
		}
		got, err := imageVirtualSize(p, tc.format)
		if err != nil || got != tc.want {
			t.Errorf("%s %s: size %d, %v; want %d", tc.format, tc.size, got, err, tc.want)
		}
	}
	// A raw file is not a qcow2 image, and an unknown format is refused.
	raw := filepath.Join(dir, "64M.raw")
	if _, err := imageVirtualSize(raw, "qcow2"); err == nil {
		t.Error("raw file read as qcow2")
	}
	if _, err := imageVirtualSize(raw, "vmdk"); err == nil {
		t.Error("vmdk accepted")
	}
	if _, err := imageVirtualSize(filepath.Join(dir, "absent"), "raw"); !os.IsNotExist(err) {
		t.Errorf("missing image: %v", err)
	}
}
