package fsread

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
)

// ext superblock feature bits used for naming the variant.
const (
	extCompatHasJournal = 0x4
	extIncompatExtents  = 0x40
	extIncompat64Bit    = 0x80
	extIncompatFlexBG   = 0x200
)

// DetectFS names the filesystem (or volume format) whose signature is at
// the start of r: "ext2", "ext3", "ext4", "xfs", "ntfs" (readable) or
// "swap", "vfat", "btrfs", "lvm2", "luks" (recognised, not readable).
// It returns "" when nothing is recognised.
func DetectFS(r io.ReaderAt) string {
	buf := make([]byte, 4096)
	n, _ := r.ReadAt(buf, 0)
	buf = buf[:n]
	at := func(off int, magic string) bool {
		return len(buf) >= off+len(magic) && string(buf[off:off+len(magic)]) == magic
	}
	switch {
	case at(0, "XFSB"):
		return "xfs"
	case at(3, "NTFS    "):
		return "ntfs"
	case at(0, "LUKS\xba\xbe"):
		return "luks"
	case len(buf) >= 2048 && binary.LittleEndian.Uint16(buf[1024+56:]) == 0xEF53:
		return extVariant(buf[1024:2048])
	case at(4086, "SWAPSPACE2"), at(4086, "SWAP-SPACE"):
		return "swap"
	case at(82, "FAT32   "), at(54, "FAT16   "), at(54, "FAT12   "):
		return "vfat"
	}
	for s := 0; s < 4; s++ {
		if at(s*512, "LABELONE") && at(s*512+24, "LVM2 001") {
			return "lvm2"
		}
	}
	magic := make([]byte, 8)
	if _, err := r.ReadAt(magic, 0x10040); err == nil && bytes.Equal(magic, []byte("_BHRfS_M")) {
		return "btrfs"
	}
	return ""
}

func extVariant(sb []byte) string {
	compat := binary.LittleEndian.Uint32(sb[92:])
	incompat := binary.LittleEndian.Uint32(sb[96:])
	switch {
	case incompat&(extIncompatExtents|extIncompat64Bit|extIncompatFlexBG) != 0:
		return "ext4"
	case compat&extCompatHasJournal != 0:
		return "ext3"
	default:
		return "ext2"
	}
}

// OpenFS opens the filesystem on volume v of the disk r. Volumes whose
// filesystem kura cannot read yield an error wrapping ErrUnknownFilesystem.
func OpenFS(ctx context.Context, r io.ReaderAt, v Volume) (FS, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if v.Note != "" {
		return nil, fmt.Errorf("logical volume %s cannot be read: %s: %w", v.LV, v.Note, ErrUnknownFilesystem)
	}
	sr := volumeReader(r, v)
	kind := v.FS
	if kind == "" {
		kind = DetectFS(sr)
	}
	switch kind {
	case "ext2", "ext3", "ext4":
		return openExt(ctx, sr, v.Size)
	case "xfs":
		return openXFS(ctx, sr, v.Size)
	case "ntfs":
		return openNTFS(ctx, sr, v.Size)
	case "":
		return nil, fmt.Errorf("volume %s holds no recognised filesystem, which kura cannot read: export the disk instead: %w",
			v.Name(), ErrUnknownFilesystem)
	case "lvm2":
		return nil, fmt.Errorf("volume %s is an LVM physical volume: open one of its logical volumes (kura files volumes): %w",
			v.Name(), ErrUnknownFilesystem)
	default:
		return nil, fmt.Errorf("volume %s holds %s, which kura cannot read: export the disk instead: %w",
			v.Name(), kind, ErrUnknownFilesystem)
	}
}

// volumeReader returns a reader over the volume's bytes.
func volumeReader(r io.ReaderAt, v Volume) *io.SectionReader {
	if v.segs != nil {
		return io.NewSectionReader(&segReader{r: r, segs: v.segs, size: v.Size}, 0, v.Size)
	}
	return io.NewSectionReader(r, v.Offset, v.Size)
}
