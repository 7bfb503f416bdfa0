package fidelity

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// kitVersion changes whenever images would be built differently, so old
// cached images are not reused.
const kitVersion = 3

// CacheRoot holds built images, one directory per content key.
var CacheRoot = "/var/tmp/kura-fidelity"

// Kind is one filesystem variant of the kit.
type Kind struct {
	Name string // e.g. "ext4-inline"
	FS   string // the type fsread reports
	mkfs []string
	feat features
}

// Kinds are the variants the kit builds: ext2 with 1 KiB blocks and
// 128-byte inodes (block maps, second-precision times, xattrs in blocks),
// ext3 (htree, journal), ext4 (extents, metadata_csum), ext4 with inline
// data, XFS v5 and NTFS (through ntfs-3g: streams, compression).
var Kinds = []Kind{
	{Name: "ext2", FS: "ext2", mkfs: []string{"mkfs.ext4", "-q", "-F", "-t", "ext2", "-b", "1024", "-I", "128"}, feat: features{unix: true}},
	{Name: "ext3", FS: "ext3", mkfs: []string{"mkfs.ext4", "-q", "-F", "-t", "ext3"}, feat: features{unix: true}},
	{Name: "ext4", FS: "ext4", mkfs: []string{"mkfs.ext4", "-q", "-F", "-t", "ext4"}, feat: features{unix: true}},
	{Name: "ext4-inline", FS: "ext4", mkfs: []string{"mkfs.ext4", "-q", "-F", "-t", "ext4", "-O", "inline_data"}, feat: features{unix: true}},
	{Name: "xfs", FS: "xfs", mkfs: []string{"mkfs.xfs", "-q", "-f"}, feat: features{unix: true}},
	{Name: "ntfs", FS: "ntfs", mkfs: []string{"mkntfs", "-q", "-F", "-f"}, feat: features{ntfs: true}},
}

// KindByName returns a kit variant.
func KindByName(name string) (Kind, bool) {
	for _, k := range Kinds {
		if k.Name == name {
			return k, true
		}
	}
	return Kind{}, false
}

// Tools lists the programs the kit runs.
func Tools() []string {
	return []string{"mkfs.ext4", "mkfs.xfs", "mkntfs", "ntfs-3g", "fusermount", "mount", "umount", "losetup",
		"parted", "pvcreate", "vgcreate", "lvcreate", "lvextend", "lvs", "pvs", "cp"}
}

// Kit is a set of built images holding one source tree.
type Kit struct {
	Dir    string            // cache directory of this content
	Images map[string]string // kind name -> image
	Files  int               // regular files picked from the host
}

// Build builds the images of kinds holding src (size bytes each), or
// reuses them from the cache when the source and the kit are unchanged.
func Build(ctx context.Context, src Source, kinds []Kind, size int64, logf func(string, ...any)) (*Kit, error) {
	ps, err := src.pick()
	if err != nil {
		return nil, err
	}
	key := manifest(ps, fmt.Sprintf("%d", size))
	if err := os.MkdirAll(CacheRoot, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockDir(CacheRoot)
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := filepath.Join(CacheRoot, key)
	if err := pruneCache(key); err != nil {
		return nil, err
	}
	kit := &Kit{Dir: dir, Images: map[string]string{}}
	for _, p := range ps {
		if p.info.Mode().IsRegular() {
			kit.Files++
		}
	}
	stageDir := filepath.Join(dir, "stage")
	for _, k := range kinds {
		img := filepath.Join(dir, k.Name+".img")
		kit.Images[k.Name] = img
		if _, err := os.Stat(img); err == nil {
			continue
		}
		if _, err := os.Stat(stageDir + ".ok"); err != nil {
			start := time.Now()
			os.RemoveAll(stageDir)
			if err := stage(ctx, ps, stageDir); err != nil {
				return nil, fmt.Errorf("stage source tree: %w", err)
			}
			if err := addExtras(stageDir, features{unix: true}); err != nil {
				return nil, err
			}
			if err := os.WriteFile(stageDir+".ok", nil, 0o644); err != nil {
				return nil, err
			}
			logf("fidelity: staged %d entries (%d files) in %v", len(ps), kit.Files, time.Since(start).Round(time.Millisecond))
		}
		start := time.Now()
		if err := buildImage(ctx, k, stageDir, img, size); err != nil {
			return nil, fmt.Errorf("build %s image: %w", k.Name, err)
		}
		logf("fidelity: built %s image in %v", k.Name, time.Since(start).Round(time.Millisecond))
	}
	return kit, nil
}

// lockDir takes an exclusive lock on dir (concurrent test packages build
// the same images).
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// pruneCache removes images of other content keys.
func pruneCache(keep string) error {
	ents, err := os.ReadDir(CacheRoot)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() && e.Name() != keep {
			if err := os.RemoveAll(filepath.Join(CacheRoot, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func buildImage(ctx context.Context, k Kind, stageDir, img string, size int64) error {
	tmp := img + ".tmp"
	os.Remove(tmp)
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := Run(ctx, k.mkfs[0], append(k.mkfs[1:], tmp)...); err != nil {
		return err
	}
	mnt, unmount, err := mount(ctx, k, tmp, false)
	if err != nil {
		return err
	}
	if k.feat.ntfs {
		// The host's files without owners and modes (NTFS keeps neither),
		// then extras made for NTFS.
		ents, rerr := os.ReadDir(stageDir)
		err = rerr
		for _, e := range ents {
			if err == nil && "/"+e.Name() != ExtrasDir {
				err = Run(ctx, "cp", "-r", "--preserve=timestamps,links", "--sparse=always", filepath.Join(stageDir, e.Name()), mnt+"/")
			}
		}
		if err == nil {
			err = addExtras(mnt, k.feat)
		}
	} else {
		err = Run(ctx, "cp", "-a", stageDir+"/.", mnt+"/")
	}
	if uerr := unmount(); err == nil {
		err = uerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, img)
}

// Mount mounts img read-only (a loop mount, or ntfs-3g) and returns the
// mount point and how to unmount it.
func Mount(ctx context.Context, k Kind, img string) (string, func() error, error) {
	return mount(ctx, k, img, true)
}

func mount(ctx context.Context, k Kind, img string, ro bool) (string, func() error, error) {
	dir, err := os.MkdirTemp("", "kura-fidelity-mnt-")
	if err != nil {
		return "", nil, err
	}
	opts := "loop"
	if ro {
		opts += ",ro"
	}
	if k.feat.ntfs {
		args := []string{img, dir}
		if ro {
			args = []string{"-o", "ro", img, dir}
		}
		err = Run(ctx, "ntfs-3g", args...)
	} else {
		err = Run(ctx, "mount", "-o", opts, img, dir)
	}
	if err != nil {
		os.Remove(dir)
		return "", nil, err
	}
	unmount := func() error {
		var err error
		for i := 0; i < 50; i++ { // a FUSE or loop mount can be briefly busy
			if k.feat.ntfs {
				err = Run(context.Background(), "fusermount", "-u", dir)
			} else {
				err = Run(context.Background(), "umount", dir)
			}
			if err == nil {
				return os.Remove(dir)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return err
	}
	return dir, unmount, nil
}

// Run runs a command, returning its output in the error.
func Run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1", "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// output runs a command and returns its standard output.
func output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1", "LC_ALL=C")
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return string(out), nil
}

// Placement says where a kind's image sits on the kit's test disks.
type Placement struct {
	Disk   string // mbr, gpt, whole, lvm
	Volume string // partition number or vg/lv, as kura names volumes
	Scheme string // as fsread reports it
	Kind   string
}

// LVMGroup is the volume group name of the kit's LVM disk.
const LVMGroup = "kurakit"

// Placements of the kit's disks: MBR (primary and logical partitions),
// GPT, a whole unpartitioned disk, and an LVM physical volume whose
// logical volume is made of two segments.
var Placements = []Placement{
	{Disk: "mbr", Volume: "1", Scheme: "mbr", Kind: "ext2"},
	{Disk: "mbr", Volume: "2", Scheme: "mbr", Kind: "ext3"},
	{Disk: "mbr", Volume: "5", Scheme: "mbr", Kind: "ntfs"},
	{Disk: "gpt", Volume: "1", Scheme: "gpt", Kind: "ext4"},
	{Disk: "gpt", Volume: "2", Scheme: "gpt", Kind: "xfs"},
	{Disk: "whole", Volume: "0", Scheme: "none", Kind: "ext4-inline"},
	{Disk: "lvm", Volume: LVMGroup + "/root", Scheme: "lvm", Kind: "ext4"},
}

// Disks builds (or reuses) the kit's disk images and returns them by name.
func (k *Kit) Disks(ctx context.Context) (map[string]string, error) {
	unlock, err := lockDir(CacheRoot)
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := map[string]string{"whole": k.Images["ext4-inline"]}
	build := map[string]func(string) error{
		"mbr": func(p string) error {
			_, err := PartitionedDisk(ctx, p, "msdos", []Part{{Image: k.Images["ext2"]}, {Image: k.Images["ext3"]},
				{Image: k.Images["ntfs"], Logical: true}})
			return err
		},
		"gpt": func(p string) error {
			_, err := PartitionedDisk(ctx, p, "gpt", []Part{{Image: k.Images["ext4"]}, {Image: k.Images["xfs"]}})
			return err
		},
		"lvm": func(p string) error {
			return LVMDisk(ctx, p, LVMGroup, []LV{{Name: "root", Image: k.Images["ext4"]}})
		},
	}
	for _, name := range []string{"mbr", "gpt", "lvm"} {
		p := filepath.Join(k.Dir, "disk-"+name+".raw")
		out[name] = p
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := build[name](p + ".tmp"); err != nil {
			os.Remove(p + ".tmp")
			return nil, fmt.Errorf("%s disk: %w", name, err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			return nil, err
		}
	}
	return out, nil
}
