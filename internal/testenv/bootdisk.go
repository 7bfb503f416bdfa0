package testenv

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BootPartitionOffset is where the FAT partition of a boot disk starts.
const BootPartitionOffset = 1 << 20

// BootKernelName is the kernel's file name in a boot disk's partition
// (mtools: "::vmlinuz"); tests corrupt it to make a guest unbootable.
const BootKernelName = "vmlinuz"

// BootCmdlineTag is on the kernel command line of guests booted from a
// boot disk.
const BootCmdlineTag = "kura-boot"

const syslinuxCfg = `DEFAULT linux
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL linux
  LINUX /` + BootKernelName + `
  INITRD /initrd.img
  APPEND console=tty0 console=ttyS0 quiet panic=-1 mitigations=off ` + BootCmdlineTag + `
`

// needBootTools checks the tools that make boot disks.
func needBootTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"mkfs.vfat", "mcopy", "syslinux"} {
		NeedTool(t, tool)
	}
	_, err := os.Stat(mbrPath)
	Need(t, "syslinux MBR "+mbrPath+" (package syslinux-common)", err == nil)
}

const mbrPath = "/usr/lib/syslinux/mbr/mbr.bin"

// makeBootDisk writes a raw BIOS-bootable image at path: SYSLINUX's MBR,
// one active FAT partition at BootPartitionOffset holding SYSLINUX, the
// guest's bzImage kernel and initramfs.
func makeBootDisk(t testing.TB, e *Env, path string, sizeMiB int) error {
	needBootTools(t)
	if sizeMiB < 34 {
		return fmt.Errorf("a boot disk needs at least 34 MiB, not %d", sizeMiB)
	}
	tmp := t.TempDir()
	part := filepath.Join(tmp, "part.img")
	partKiB := (sizeMiB<<10 - BootPartitionOffset>>10)
	if err := run("mkfs.vfat", "-C", part, fmt.Sprint(partKiB)); err != nil {
		return err
	}
	cfg := filepath.Join(tmp, "syslinux.cfg")
	if err := os.WriteFile(cfg, []byte(syslinuxCfg), 0o644); err != nil {
		return err
	}
	kernel := filepath.Join(filepath.Dir(e.Initrd), "vmlinuz")
	for src, dst := range map[string]string{kernel: BootKernelName, e.Initrd: "initrd.img", cfg: "syslinux.cfg"} {
		if err := run("mcopy", "-i", part, src, "::"+dst); err != nil {
			return err
		}
	}
	if err := run("syslinux", "--install", part); err != nil {
		return err
	}
	pb, err := os.ReadFile(part)
	if err != nil {
		return err
	}
	mbr, err := os.ReadFile(mbrPath)
	if err != nil {
		return err
	}
	disk := make([]byte, BootPartitionOffset, BootPartitionOffset+len(pb))
	copy(disk, mbr[:min(len(mbr), 440)])
	// One primary partition: active, FAT32 (LBA), from sector 2048.
	e0 := disk[446:462]
	e0[0], e0[4] = 0x80, 0x0c
	binary.LittleEndian.PutUint32(e0[8:], BootPartitionOffset/512)
	binary.LittleEndian.PutUint32(e0[12:], uint32(len(pb)/512))
	disk[510], disk[511] = 0x55, 0xaa
	disk = append(disk, pb...)
	return os.WriteFile(path, disk, 0o644)
}
