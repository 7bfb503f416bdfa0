// Package extract copies files out of an fsread.FS into a directory or
// an archive stream (tar with pax headers, zip), keeping what the
// filesystem keeps: contents with their holes, hard links, symlinks,
// special files, modes, owners, times and extended attributes.
//
// One entry point, Extract, serves every destination through a Sink
// (DirSink, TarSink, ZipSink): the CLI writes to a directory or stdout,
// a server streams the same archive to an HTTP client. The work runs in
// three steps (docs/design/fsread.md, "Extraction"):
//
//  1. plan: walk the requested paths (metadata only), name every entry
//     relative to the destination, skip what cannot be represented (a
//     name holding "/", sockets in tar...) and report it by name;
//  2. data, in the order of the files' blocks on the volume: directories
//     first, then files sorted by their first block (so reads go through
//     the disk image once, front to back), then symlinks, special files
//     and hard links to files already written; a reader goroutine
//     fetches ahead of the writer and tells the disk reader what comes
//     next;
//  3. finish: directories' modes, owners, xattrs and times, deepest
//     first, after their contents.
package extract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/kurabackup/kura/internal/fsread"
)

// Sentinel errors.
var (
	// ErrExists means the destination already holds an entry the
	// extraction would write; nothing is overwritten.
	ErrExists = errors.New("already exists in the destination")
	// ErrNameClash means two requested paths would get the same name.
	ErrNameClash = errors.New("two requested paths have the same name")
)

// Options of an extraction; the same for every sink.
type Options struct {
	// NoHardlinks writes every name of a hard-linked file as its own copy.
	NoHardlinks bool
	// NoXattrs leaves extended attributes and ACLs out.
	NoXattrs bool
	// NoOwner leaves owners out (directories: not set; archives: 0:0).
	// Otherwise a directory sink sets them when running as root.
	NoOwner bool
	// UIDMap and GIDMap map numeric ids (unmapped ids stay).
	UIDMap, GIDMap map[uint32]uint32
	// Progress, when set, is called as data is written.
	Progress func(Progress)
	// WillNeed, when set, is told which byte ranges of the volume the
	// extraction reads next, in order, so a disk reader can fetch them
	// ahead.
	WillNeed func(off, n int64)
}

// Progress is the state of a running extraction.
type Progress struct {
	Files, TotalFiles int
	Bytes, TotalBytes int64 // data bytes (without holes)
	Path              string
}

// Note names an entry that was not extracted, or whose metadata was not
// all kept, and says why.
type Note struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Report says what an extraction wrote and what it could not.
type Report struct {
	Files     int   `json:"files"`
	Dirs      int   `json:"dirs"`
	Symlinks  int   `json:"symlinks"`
	Hardlinks int   `json:"hardlinks"`
	Specials  int   `json:"specials"`
	Bytes     int64 `json:"bytes"`      // apparent size of the files written
	DataBytes int64 `json:"data_bytes"` // bytes read and written (holes left out)
	// Skipped lists entries not extracted.
	Skipped []Note `json:"skipped"`
	// NotKept lists entries extracted without some of their metadata.
	NotKept []Note  `json:"not_kept"`
	Seconds float64 `json:"seconds"`
}

func (r *Report) skip(p, why string)    { r.Skipped = append(r.Skipped, Note{fsread.Escape(p), why}) }
func (r *Report) notKept(p, why string) { r.NotKept = append(r.NotKept, Note{fsread.Escape(p), why}) }

// Item is one entry to write.
type Item struct {
	fsread.Entry
	// Name is the destination path, relative, slash-separated ("etc/hosts");
	// "" is the destination itself (extracting "/").
	Name string
	// UID and GID are the (mapped) owner.
	UID, GID uint32
	// Xattrs are the entry's extended attributes (nil with NoXattrs).
	Xattrs []fsread.Xattr
	// LinkTo is, for a hard link, the Name of the item holding the data.
	LinkTo string
}

// Sink receives the items of an extraction, in the order of Extract's
// step 2, then Close. Optional methods: Abort is called instead of Close
// when the extraction fails; HardLinks returning false gets every name of
// a hard-linked file as a copy; DirAll(ctx, dirs) replaces the calls to
// Dir; CreateAll(ctx, files) is called, in walk order, before the files'
// data.
type Sink interface {
	Dir(ctx context.Context, it *Item) error
	File(ctx context.Context, it *Item, data *Data) error
	Symlink(ctx context.Context, it *Item) error
	// Special writes a FIFO, socket or device node. It returns a reason
	// (and no error) when the entry cannot be represented.
	Special(ctx context.Context, it *Item) (skipped string, err error)
	// Link writes a hard link to the item named LinkTo; like Special it
	// may return a reason instead.
	Link(ctx context.Context, it *Item) (skipped string, err error)
	// Close finishes the destination (directories' metadata, archive
	// trailer). The report collects what could not be kept.
	Close(ctx context.Context, r *Report) error
}

// Extract writes paths of fsys (files, directories, symlinks; NTFS
// "file:stream" paths as files) into sink. Entries that cannot be
// represented are skipped and listed in the report; an error stops the
// extraction (the sink is not closed then).
func Extract(ctx context.Context, fsys fsread.FS, paths []string, sink Sink, opt Options) (*Report, error) {
	start := time.Now()
	rep := &Report{Skipped: []Note{}, NotKept: []Note{}}
	abort := func() {
		if a, ok := sink.(interface{ Abort() }); ok {
			a.Abort()
		}
	}
	if c, ok := sink.(interface{ HardLinks() bool }); ok && !c.HardLinks() {
		opt.NoHardlinks = true
	}
	p, err := plan(ctx, fsys, paths, opt, rep)
	if err != nil {
		abort()
		return rep, err
	}
	if err := p.run(ctx, fsys, sink, opt, rep); err != nil {
		abort()
		return rep, err
	}
	err = sink.Close(ctx, rep)
	rep.Seconds = time.Since(start).Seconds()
	return rep, err
}

// perm returns the unix permission bits (with setuid, setgid, sticky).
func perm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

func wrap(it *Item, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", fsread.Escape(it.Path), err)
}

// Formats lists the archive formats NewArchiveSink writes.
var Formats = []string{"tar", "zip"}

// ErrFormat means an unknown archive format.
var ErrFormat = errors.New("unknown archive format (tar or zip)")

// NewArchiveSink returns a sink writing a "tar" or "zip" archive to w.
func NewArchiveSink(format string, w io.Writer, opt Options) (Sink, error) {
	switch format {
	case "tar":
		return NewTarSink(w, opt), nil
	case "zip":
		return NewZipSink(w, opt), nil
	}
	return nil, fmt.Errorf("%q: %w", format, ErrFormat)
}
