package server

import (
	"archive/tar"
	"archive/zip"
	"context"
	"errors"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/fsread"
)

// archiveFiles streams a directory (or one file) of a point's guest
// filesystem as a tar or zip archive: regular files, directories and
// symlinks with their modes and times; other entries are left out. The
// archive is written as it is read, so a directory of any size costs no
// memory or scratch space on the server.
func (s *Server) archiveFiles(rc *reqCtx) error {
	format := rc.r.URL.Query().Get("format")
	if format == "" {
		format = "tar"
	}
	if format != "tar" && format != "zip" {
		return badRequest("format %q: use tar or zip", format)
	}
	b, p, err := s.browser(rc)
	if err != nil {
		return err
	}
	defer b.Close()
	if _, err := b.FS.Stat(rc.ctx, p); err != nil {
		return notFound("%s: %v", p, err)
	}
	top := path.Base(p)
	if p == "/" {
		top = "root"
	}
	s.audit(rc, "ok", "files.archive", b.Point.ID+":"+p, map[string]string{"format": format})
	h := rc.w.Header()
	h.Set("Content-Type", map[string]string{"tar": "application/x-tar", "zip": "application/zip"}[format])
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": top + "." + format}))
	rc.w.WriteHeader(http.StatusOK)
	var a archiver = &tarArchive{w: tar.NewWriter(rc.w)}
	if format == "zip" {
		a = &zipArchive{w: zip.NewWriter(rc.w)}
	}
	err = writeArchive(rc.ctx, b, p, top, a)
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// The status is sent: the client sees a truncated archive.
		s.log.Warn("archive download interrupted", "point", b.Point.ID, "path", p, "err", err)
	}
	return nil
}

// writeArchive adds p and everything below it to a, named under top.
func writeArchive(ctx context.Context, b *engine.FileBrowser, p, top string, a archiver) error {
	buf := make([]byte, 4<<20) // each read goes down to the repository's disk reader
	return b.Walk(ctx, p, func(e fsread.Entry) error {
		name := path.Join(top, strings.TrimPrefix(e.Path, p))
		if !fs.ValidPath(name) {
			return nil
		}
		switch e.Type {
		case "dir", "symlink":
			return a.add(e, name, nil, nil)
		case "file":
			f, err := b.FS.Open(ctx, e.Path)
			if err != nil {
				return err
			}
			defer f.Close()
			return a.add(e, name, io.NewSectionReader(f, 0, e.Size), buf)
		}
		return nil
	})
}

// archiver writes entries of one archive format.
type archiver interface {
	// add writes an entry; r is the content of a regular file.
	add(e fsread.Entry, name string, r io.Reader, buf []byte) error
	Close() error
}

type tarArchive struct{ w *tar.Writer }

func (t *tarArchive) add(e fsread.Entry, name string, r io.Reader, buf []byte) error {
	hd := &tar.Header{Name: name, Mode: int64(e.Mode.Perm()), ModTime: e.ModTime, Format: tar.FormatPAX}
	switch e.Type {
	case "dir":
		hd.Typeflag, hd.Name = tar.TypeDir, name+"/"
	case "symlink":
		hd.Typeflag, hd.Linkname = tar.TypeSymlink, e.Target
	default:
		hd.Typeflag, hd.Size = tar.TypeReg, e.Size
	}
	if err := t.w.WriteHeader(hd); err != nil {
		return err
	}
	if r == nil {
		return nil
	}
	_, err := io.CopyBuffer(struct{ io.Writer }{t.w}, r, buf)
	return err
}

func (t *tarArchive) Close() error { return t.w.Close() }

type zipArchive struct{ w *zip.Writer }

func (z *zipArchive) add(e fsread.Entry, name string, r io.Reader, buf []byte) error {
	hd := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: e.ModTime}
	mode := e.Mode.Perm()
	switch e.Type {
	case "dir":
		hd.Name, hd.Method, mode = name+"/", zip.Store, mode|fs.ModeDir
	case "symlink":
		hd.Method, mode, r = zip.Store, mode|fs.ModeSymlink, strings.NewReader(e.Target)
	}
	hd.SetMode(mode)
	w, err := z.w.CreateHeader(hd)
	if err != nil {
		return err
	}
	if r == nil {
		return nil
	}
	_, err = io.CopyBuffer(struct{ io.Writer }{w}, r, buf)
	return err
}

func (z *zipArchive) Close() error { return z.w.Close() }

// errEnough stops a search walk once it has found enough.
var errEnough = errors.New("enough")
