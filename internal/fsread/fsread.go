// Package fsread reads guest filesystems directly from a disk image (an
// io.ReaderAt over a recovery point's disk), without mounting, root or a
// helper VM: partition tables (MBR, GPT, none), then ext2/3/4, XFS and NTFS.
//
// Every filesystem implementation (and every fake) must pass the
// conformance suite in package fsread/fstest.
package fsread

import (
	"context"
	"errors"
	"io"
	"io/fs"
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

// Volume is one partition (or a whole unpartitioned disk).
type Volume struct {
	// Index is the 1-based partition number, 0 for an unpartitioned disk.
	Index  int    `json:"index"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	Scheme string `json:"scheme"` // mbr, gpt, none
	Type   string `json:"type"`   // partition type (GUID or MBR id) when known
	Label  string `json:"label,omitempty"`
	// FS is the detected filesystem: ext4, xfs, ntfs, or "" when unknown.
	FS string `json:"fs"`
}

// Entry describes a file, directory or symlink.
type Entry struct {
	Name    string      `json:"name"`
	Path    string      `json:"path"`
	Type    string      `json:"type"` // file, dir, symlink, other
	Size    int64       `json:"size"`
	Mode    fs.FileMode `json:"mode"`
	ModTime time.Time   `json:"mtime"`
	// Target is the symlink target.
	Target string `json:"target,omitempty"`
}

// FS is a read-only view of one filesystem. Paths are slash-separated and
// absolute within the filesystem ("/etc/hosts").
type FS interface {
	// Type returns "ext4", "xfs" or "ntfs".
	Type() string
	// Stat describes path without following a final symlink.
	Stat(ctx context.Context, path string) (Entry, error)
	// ReadDir lists a directory, sorted by name, without "." and "..".
	ReadDir(ctx context.Context, path string) ([]Entry, error)
	// Open opens a regular file for reading.
	Open(ctx context.Context, path string) (File, error)
}

// File is an open regular file.
type File interface {
	io.ReaderAt
	io.Reader
	Size() int64
	Close() error
}
