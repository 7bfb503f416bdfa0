package server

import (
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/fsread"
)

// FileList is a page of a directory inside a point.
type FileList struct {
	Point  string         `json:"point"`
	Disk   string         `json:"disk"`
	Volume int            `json:"volume"`
	FS     string         `json:"fs"`
	Path   string         `json:"path"`
	Total  int            `json:"total"`
	Offset int            `json:"offset"`
	Items  []fsread.Entry `json:"items"`
}

// browser opens the filesystem a files request names (a restore right on
// the point's group is needed: file contents are the guest's data).
func (s *Server) browser(rc *reqCtx) (*engine.FileBrowser, string, error) {
	m, r, _, err := s.findPoint(rc.ctx, rc.p, rc.r.PathValue("id"), auth.Restore)
	if err != nil {
		return nil, "", err
	}
	q := rc.r.URL.Query()
	vol := 0
	if v := q.Get("volume"); v != "" {
		if vol, err = strconv.Atoi(v); err != nil {
			return nil, "", badRequest("volume %q is not a number", v)
		}
	}
	b, err := engine.OpenFiles(rc.ctx, r, m, q.Get("disk"), vol)
	if err != nil {
		return nil, "", badRequest("%v", err)
	}
	p := path.Clean("/" + q.Get("path"))
	return b, p, nil
}

// listFiles lists a directory, paged (offset, limit: default 1000) so that
// directories of tens of thousands of entries stay light.
func (s *Server) listFiles(rc *reqCtx) (any, error) {
	offset, err := rc.queryInt("offset", 0)
	if err != nil {
		return nil, err
	}
	limit, err := rc.queryInt("limit", 1000)
	if err != nil {
		return nil, err
	}
	b, p, err := s.browser(rc)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	ents, err := b.FS.ReadDir(rc.ctx, p)
	if err != nil {
		return nil, notFound("%s: %v", p, err)
	}
	out := FileList{Point: b.Point.ID, Disk: b.Disk, Volume: b.Volume.Index, FS: b.FS.Type(), Path: p, Total: len(ents), Offset: offset,
		Items: []fsread.Entry{}}
	if offset < len(ents) {
		out.Items = ents[offset:min(len(ents), offset+limit)]
	}
	return out, nil
}

// downloadFile streams one regular file.
func (s *Server) downloadFile(rc *reqCtx) error {
	b, p, err := s.browser(rc)
	if err != nil {
		return err
	}
	defer b.Close()
	e, err := b.FS.Stat(rc.ctx, p)
	if err != nil {
		return notFound("%s: %v", p, err)
	}
	if e.Type != "file" {
		return badRequest("%s is a %s, not a file", p, e.Type)
	}
	f, err := b.FS.Open(rc.ctx, p)
	if err != nil {
		return err
	}
	defer f.Close()
	s.audit(rc, "ok", "files.download", b.Point.ID+":"+p, map[string]any{"size": e.Size})
	h := rc.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(e.Size, 10))
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(p)}))
	h.Set("Last-Modified", e.ModTime.UTC().Format(http.TimeFormat))
	rc.w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(rc.w, io.NewSectionReader(f, 0, e.Size)); err != nil {
		s.log.Warn("file download interrupted", "point", b.Point.ID, "path", p, "err", err)
	}
	return nil
}
