package extract

import (
	"archive/zip"
	"context"
	"encoding/binary"
	"io"
	"io/fs"
	"unicode/utf8"

	"github.com/klauspost/compress/flate"

	"github.com/kurabackup/kura/internal/fsread"
)

// ZipSink writes a zip archive (zip64 when needed): files deflated,
// unix modes and owners (Info-ZIP "ux" field), modification times,
// symlinks as Info-ZIP stores them. Zip has no hard links (every name is
// a copy), no special files, no xattrs and no sparse files (holes are
// stored as deflated zeros); what it cannot hold is reported.
type ZipSink struct {
	z      *zip.Writer
	owners bool
	notes  []Note
}

// NewZipSink writes a zip archive to w.
func NewZipSink(w io.Writer, opt Options) *ZipSink {
	z := zip.NewWriter(w)
	z.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(out, flate.BestSpeed)
	})
	return &ZipSink{z: z, owners: !opt.NoOwner}
}

// HardLinks reports that zip stores every name of a file as a copy.
func (s *ZipSink) HardLinks() bool { return false }

func (s *ZipSink) header(it *Item, name string, mode fs.FileMode, method uint16) *zip.FileHeader {
	h := &zip.FileHeader{Name: name, Method: method, Modified: it.ModTime, NonUTF8: !utf8.ValidString(name)}
	h.SetMode(mode)
	if s.owners && !it.NoOwner {
		// Info-ZIP new unix extra field: version 1, 4-byte uid and gid.
		ux := []byte{0x75, 0x78, 11, 0, 1, 4, 0, 0, 0, 0, 4, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(ux[6:], it.UID)
		binary.LittleEndian.PutUint32(ux[11:], it.GID)
		h.Extra = ux
	}
	if len(it.Xattrs) > 0 {
		s.notes = append(s.notes, Note{fsread.Escape(it.Path), "xattrs not stored (zip holds none)"})
	}
	if it.Nlink > 1 && it.Type != fsread.TypeDir {
		s.notes = append(s.notes, Note{fsread.Escape(it.Path), "hard link stored as a copy (zip holds none)"})
	}
	return h
}

func zipMode(it *Item) fs.FileMode {
	return it.Mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

func (s *ZipSink) Dir(_ context.Context, it *Item) error {
	if it.Name == "" {
		return nil
	}
	_, err := s.z.CreateHeader(s.header(it, it.Name+"/", fs.ModeDir|zipMode(it), zip.Store))
	return err
}

func (s *ZipSink) File(_ context.Context, it *Item, data *Data) error {
	w, err := s.z.CreateHeader(s.header(it, it.Name, zipMode(it), zip.Deflate))
	if err != nil {
		return err
	}
	return data.WriteDense(w)
}

func (s *ZipSink) Symlink(_ context.Context, it *Item) error {
	w, err := s.z.CreateHeader(s.header(it, it.Name, fs.ModeSymlink|0o777, zip.Store))
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, it.Target)
	return err
}

func (s *ZipSink) Special(context.Context, *Item) (string, error) {
	return "special files cannot be stored in zip", nil
}

func (s *ZipSink) Link(context.Context, *Item) (string, error) {
	return "hard links cannot be stored in zip", nil // not reached: HardLinks is false
}

// Close writes the central directory.
func (s *ZipSink) Close(_ context.Context, rep *Report) error {
	rep.NotKept = append(rep.NotKept, s.notes...)
	return s.z.Close()
}
