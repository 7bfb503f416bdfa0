package fidelity

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Part is one partition of a test disk.
type Part struct {
	Image   string // filesystem image copied into the partition
	Logical bool   // MBR: a logical partition in the extended one
}

const mib = 1 << 20

// PartitionedDisk writes a disk image at out with an MBR ("msdos") or
// "gpt" table whose partitions hold parts' images, and returns the
// partition number of each part.
func PartitionedDisk(ctx context.Context, out, label string, parts []Part) ([]int, error) {
	sizes := make([]int64, len(parts))
	total := int64(2 * mib)
	for i, p := range parts {
		st, err := os.Stat(p.Image)
		if err != nil {
			return nil, err
		}
		sizes[i] = (st.Size() + mib - 1) / mib * mib
		total += sizes[i] + mib
	}
	if err := sparse(out, total+mib); err != nil {
		return nil, err
	}
	args := []string{"-s", out, "unit", "s", "mklabel", label}
	pos := int64(mib)
	nums := make([]int, len(parts))
	primary, logical := 0, 4
	extended := false
	for i, p := range parts {
		if p.Logical && !extended {
			args = append(args, "mkpart", "extended", sec(pos), sec(total-1))
			primary++
			extended = true
			pos += mib
		}
		kind := "primary"
		if p.Logical {
			kind = "logical"
			logical++
			nums[i] = logical
		} else {
			primary++
			nums[i] = primary
		}
		args = append(args, "mkpart", kind, sec(pos), sec(pos+sizes[i]-1))
		pos += sizes[i] + mib
	}
	if err := Run(ctx, "parted", args...); err != nil {
		return nil, err
	}
	starts, err := partStarts(ctx, out)
	if err != nil {
		return nil, err
	}
	for i, p := range parts {
		start, ok := starts[nums[i]]
		if !ok {
			return nil, fmt.Errorf("parted made no partition %d", nums[i])
		}
		if err := copyInto(out, p.Image, []span{{0, sizes[i], start}}); err != nil {
			return nil, err
		}
	}
	return nums, nil
}

func sec(b int64) string { return strconv.FormatInt(b/512, 10) }

func sparse(p string, size int64) error {
	os.Remove(p)
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// partStarts reads partition start offsets as parted reports them.
func partStarts(ctx context.Context, disk string) (map[int]int64, error) {
	out, err := output(ctx, "parted", "-s", "-m", disk, "unit", "B", "print")
	if err != nil {
		return nil, err
	}
	starts := map[int]int64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ":")
		if len(f) < 4 {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		s, err := strconv.ParseInt(strings.TrimSuffix(f[1], "B"), 10, 64)
		if err != nil {
			return nil, err
		}
		starts[n] = s
	}
	return starts, nil
}

// span maps size bytes of an image at off to disk bytes at disk.
type span struct{ off, size, disk int64 }

// copyInto writes the non-zero MiB chunks of img into disk through spans.
func copyInto(disk, img string, spans []span) error {
	in, err := os.Open(img)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	buf := make([]byte, mib)
	zero := make([]byte, mib)
	for _, s := range spans {
		for pos := int64(0); pos < s.size; pos += mib {
			n, err := in.ReadAt(buf[:min(mib, s.size-pos)], s.off+pos)
			if err != nil && err != io.EOF {
				out.Close()
				return err
			}
			if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
				if _, err := out.WriteAt(buf[:n], s.disk+pos); err != nil {
					out.Close()
					return err
				}
			}
		}
	}
	return out.Close()
}

// LV is one logical volume of a test volume group.
type LV struct {
	Name  string
	Image string
}

const lvmExtent = 4 * mib

// lvmConfig keeps the LVM tools away from device-mapper, udev and the
// host's own volumes and metadata backups: the test only writes metadata.
const lvmConfig = `devices{obtain_device_list_from_udev=0 filter=["a|^/dev/loop|","r|.*|"]} ` +
	`activation{udev_sync=0 udev_rules=0} backup{backup=0 archive=0}`

// LVMDisk writes a whole-disk LVM physical volume at out holding volume
// group vg with one linear logical volume per image. The first volume is
// made of two segments (a spacer volume sits between them), as after an
// lvextend.
func LVMDisk(ctx context.Context, out, vg string, lvs []LV) error {
	sizes := make([]int64, len(lvs))
	total := int64(64 * mib)
	for i, lv := range lvs {
		st, err := os.Stat(lv.Image)
		if err != nil {
			return err
		}
		sizes[i] = (st.Size() + lvmExtent - 1) / lvmExtent * lvmExtent
		total += sizes[i]
	}
	if err := sparse(out, total); err != nil {
		return err
	}
	dev, err := output(ctx, "losetup", "--find", "--show", out)
	if err != nil {
		return err
	}
	dev = strings.TrimSpace(dev)
	defer Run(context.Background(), "losetup", "-d", dev)
	lvm := func(cmd string, args ...string) error {
		return Run(ctx, cmd, append([]string{"--driverloaded", "n", "--config", lvmConfig}, args...)...)
	}
	if err := lvm("pvcreate", "-q", dev); err != nil {
		return err
	}
	if err := lvm("vgcreate", "-q", "-s", "4m", vg, dev); err != nil {
		return err
	}
	for i, lv := range lvs {
		size := sizes[i]
		if i == 0 {
			size = sizes[0] / 2 / lvmExtent * lvmExtent
		}
		if err := lvm("lvcreate", "-q", "-an", "-Zn", "-L", fmt.Sprintf("%db", size), "-n", lv.Name, vg); err != nil {
			return err
		}
		if i == 0 {
			if err := lvm("lvcreate", "-q", "-an", "-Zn", "-L", "16m", "-n", "spacer", vg); err != nil {
				return err
			}
			if err := lvm("lvextend", "-q", "-L", fmt.Sprintf("%db", sizes[0]), vg+"/"+lv.Name); err != nil {
				return err
			}
		}
	}
	pe, err := output(ctx, "pvs", "--driverloaded", "n", "--config", lvmConfig, "--noheadings", "--units", "b", "--nosuffix", "-o", "pe_start", dev)
	if err != nil {
		return err
	}
	peStart, err := strconv.ParseInt(strings.TrimSpace(pe), 10, 64)
	if err != nil {
		return fmt.Errorf("pvs pe_start %q: %w", pe, err)
	}
	segs, err := output(ctx, "lvs", "--driverloaded", "n", "--config", lvmConfig, "--noheadings", "--segments",
		"--separator", ",", "-o", "lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges", vg)
	if err != nil {
		return err
	}
	spans := map[string][]span{}
	for _, line := range strings.Split(segs, "\n") {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) != 4 {
			continue
		}
		start, _ := strconv.ParseInt(f[1], 10, 64)
		count, _ := strconv.ParseInt(f[2], 10, 64)
		rng := f[3][strings.LastIndexByte(f[3], ':')+1:]
		first, _ := strconv.ParseInt(strings.SplitN(rng, "-", 2)[0], 10, 64)
		spans[f[0]] = append(spans[f[0]], span{off: start * lvmExtent, size: count * lvmExtent, disk: peStart + first*lvmExtent})
	}
	if len(spans[lvs[0].Name]) != 2 {
		return fmt.Errorf("logical volume %s has segments %v, want 2:\n%s", lvs[0].Name, spans[lvs[0].Name], segs)
	}
	for _, lv := range lvs {
		if err := copyInto(out, lv.Image, spans[lv.Name]); err != nil {
			return err
		}
	}
	return nil
}
