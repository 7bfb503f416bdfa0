// Package fsread reads guest filesystems directly from a disk image (an
// io.ReaderAt over a recovery point's disk), without mounting, root or a
// helper VM: partition tables (MBR, GPT, none) and LVM2 linear logical
// volumes, then ext2/3/4, XFS and NTFS.
//
// Every filesystem implementation (and every fake) must pass the
// conformance suite in package fsread/fstest.
package fsread

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"strconv"
	"time"
)

// Sentinel errors.
var (
	// ErrUnknownFilesystem means no reader recognises the volume; export the
	// disk instead.
	ErrUnknownFilesystem = errors.New("unknown or unsupported filesystem")
	// ErrNotExist means the path does not exist in the filesystem.
	ErrNotExist = fs.ErrNotExist
	// ErrCorrupt means on-disk structures are inconsistent.
	ErrCorrupt = errors.New("filesystem structures corrupt")
)

// Volume is one partition, one LVM logical volume, or a whole
// unpartitioned disk.
type Volume struct {
	// Index is the 1-based partition number, 0 for an unpartitioned disk.
	// Logical volumes carry the index of the partition holding their
	// physical volume.
	Index  int    `json:"index"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	Scheme string `json:"scheme"` // mbr, gpt, none, lvm
	Type   string `json:"type"`   // partition type (GUID or MBR id) when known
	Label  string `json:"label,omitempty"`
	// FS is the detected filesystem: ext4, xfs, ntfs, lvm2, or "" when
	// unknown.
	FS string `json:"fs"`
	// LV names a logical volume ("vg/lv"); empty for partitions and disks.
	LV string `json:"lv,omitempty"`
	// Note says why a logical volume cannot be read (striped, spans other
	// disks...); empty when it can.
	Note string `json:"note,omitempty"`
	// segs maps a logical volume onto the disk (nil: Offset/Size).
	segs []segment
}

// Name returns how a volume is selected: its LV name, or its index.
func (v Volume) Name() string {
	if v.LV != "" {
		return v.LV
	}
	return strconv.Itoa(v.Index)
}

// Entry types.
const (
	TypeFile     = "file"
	TypeDir      = "dir"
	TypeSymlink  = "symlink"
	TypeFIFO     = "fifo"
	TypeSocket   = "socket"
	TypeCharDev  = "chardev"
	TypeBlockDev = "blockdev"
	// TypeStream is an NTFS alternate data stream, named "file:stream".
	TypeStream = "stream"
	TypeOther  = "other"
)

// Entry describes a file, directory, symlink, special file or NTFS
// alternate data stream. Name, Path, Target and Stream hold the on-disk
// bytes, which need not be UTF-8; their JSON form is escaped (see Escape).
type Entry struct {
	Name string
	Path string
	Type string
	// Size is the apparent size; Allocated the bytes the filesystem
	// allocated for it (as stat's st_blocks × 512).
	Size      int64
	Allocated int64
	Mode      fs.FileMode
	ModTime   time.Time
	ATime     time.Time
	CTime     time.Time
	BTime     time.Time // zero when the filesystem keeps no birth time
	UID, GID  uint32
	Nlink     uint32
	// Ino identifies the inode (ext, XFS) or MFT record (NTFS): entries of
	// one filesystem with equal Ino are hard links of one file.
	Ino uint64
	// Major and Minor are a device node's numbers.
	Major, Minor uint32
	// Target is the symlink target.
	Target string
	// Stream is the NTFS stream name of a TypeStream entry.
	Stream string
	// NoOwner means the filesystem keeps no unix owner or permissions
	// (NTFS): UID and GID are 0 and Mode is a default.
	NoOwner bool
}

// Xattr is one extended attribute, named as Linux names it ("user.x",
// "security.selinux", "system.posix_acl_access" in the kernel's xattr
// format for POSIX ACLs).
type Xattr struct {
	Name  string
	Value []byte
}

// Extent is a run of a file's data: Len bytes at file offset Off, stored
// at byte Phys of the volume, or Phys < 0 when the bytes are not stored
// as a plain copy (inline, resident, compressed). File offsets covered by
// no extent are holes.
type Extent struct {
	Off, Len, Phys int64
}

// FS is a read-only view of one filesystem. Paths are slash-separated and
// absolute within the filesystem ("/etc/hosts").
type FS interface {
	// Type returns "ext2", "ext3", "ext4", "xfs" or "ntfs".
	Type() string
	// Stat describes path without following a final symlink.
	Stat(ctx context.Context, path string) (Entry, error)
	// ReadDir lists a directory, sorted by name, without "." and "..".
	ReadDir(ctx context.Context, path string) ([]Entry, error)
	// Open opens a regular file (or an NTFS "file:stream") for reading.
	Open(ctx context.Context, path string) (File, error)
	// List lists the directory dir (an Entry this FS returned) like
	// ReadDir, without looking its path up again.
	List(ctx context.Context, dir Entry) ([]Entry, error)
	// OpenEntry opens the regular file or stream e (an Entry this FS
	// returned).
	OpenEntry(ctx context.Context, e Entry) (File, error)
	// Xattrs returns e's extended attributes sorted by name (NTFS:
	// alternate data streams up to 64 KiB, as "user.NAME").
	Xattrs(ctx context.Context, e Entry) ([]Xattr, error)
}

// File is an open regular file.
type File interface {
	io.ReaderAt
	io.Reader
	Size() int64
	// Extents lists the file's data in file order.
	Extents() []Extent
	Close() error
}

// DiskOffset maps a byte offset of the volume to the disk; -1 when off is
// outside the volume.
func (v Volume) DiskOffset(off int64) int64 {
	if off < 0 || off >= v.Size {
		return -1
	}
	if v.segs == nil {
		return v.Offset + off
	}
	for _, s := range v.segs {
		if off >= s.off && off < s.off+s.size {
			return s.disk + off - s.off
		}
	}
	return -1
}
