package fsread_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/fsread/fidelity"
)

// lvmConf keeps the LVM tools off device-mapper, udev and the host's own
// volumes and metadata backups.
const lvmConf = `devices{obtain_device_list_from_udev=0 filter=["a|^/dev/loop|","r|.*|"]} ` +
	`activation{udev_sync=0 udev_rules=0} backup{backup=0 archive=0}`

// TestLVMUnreadableVolumesNamed: a volume group over two disks holds a
// striped volume and a linear one on the second disk; listing the first
// disk names both with the reason kura cannot read them, and its own
// linear volume is readable.
func TestLVMUnreadableVolumesNamed(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("KURA_TEST_STRICT") == "1" {
			t.Fatal("needs root for loop devices (KURA_TEST_STRICT=1)")
		}
		t.Skip("needs root for loop devices")
	}
	needTools(t, "losetup", "pvcreate", "vgcreate", "lvcreate", "mkfs.ext4")
	dir := t.TempDir()
	ctx := context.Background()
	var devs []string
	for _, name := range []string{"a.raw", "b.raw"} {
		p := filepath.Join(dir, name)
		sparseFile(t, p, 96<<20)
		out, err := exec.Command("losetup", "--find", "--show", p).Output()
		if err != nil {
			t.Fatalf("losetup: %v", err)
		}
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
		devs = append(devs, dev)
	}
	lvm := func(args ...string) {
		t.Helper()
		if err := fidelity.Run(ctx, args[0], append([]string{"--driverloaded", "n", "--config", lvmConf}, args[1:]...)...); err != nil {
			t.Fatal(err)
		}
	}
	lvm("pvcreate", "-q", devs[0], devs[1])
	lvm("vgcreate", "-q", "-s", "4m", "kuratwo", devs[0], devs[1])
	lvm("lvcreate", "-q", "-an", "-Zn", "-L", "24m", "-n", "mine", "kuratwo", devs[0])
	lvm("lvcreate", "-q", "-an", "-Zn", "-L", "16m", "-i", "2", "-I", "64k", "-n", "striped", "kuratwo")
	lvm("lvcreate", "-q", "-an", "-Zn", "-L", "8m", "-n", "other", "kuratwo", devs[1])
	f, err := os.Open(filepath.Join(dir, "a.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vols, err := fsread.Volumes(ctx, f, 96<<20)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]fsread.Volume{}
	for _, v := range vols {
		byName[v.Name()] = v
	}
	if v := byName["kuratwo/mine"]; v.Note != "" || v.Size != 24<<20 {
		t.Errorf("kuratwo/mine = %+v", v)
	}
	if v := byName["kuratwo/striped"]; !strings.Contains(v.Note, "striped over 2") {
		t.Errorf("kuratwo/striped = %+v, want a note naming the stripes", v)
	}
	if v := byName["kuratwo/other"]; !strings.Contains(v.Note, "not on this disk") {
		t.Errorf("kuratwo/other = %+v, want a note naming the other disk", v)
	}
	if _, err := fsread.OpenFS(ctx, f, byName["kuratwo/striped"]); err == nil || !strings.Contains(err.Error(), "striped") {
		t.Errorf("OpenFS(striped) = %v", err)
	}
}
