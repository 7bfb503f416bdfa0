package server

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"

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
// directories of tens of thousands of entries stay light; name keeps only
// the entries whose name matches (see nameMatcher).
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
	if name := rc.r.URL.Query().Get("name"); name != "" {
		match := nameMatcher(name)
		ents = slices.DeleteFunc(ents, func(e fsread.Entry) bool { return !match(e.Name) })
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

// nameMatcher matches file names: a pattern with *, ? or [ is a glob
// (path.Match), anything else a case-insensitive substring.
func nameMatcher(pattern string) func(string) bool {
	if strings.ContainsAny(pattern, "*?[") {
		return func(name string) bool { ok, _ := path.Match(pattern, name); return ok }
	}
	low := strings.ToLower(pattern)
	return func(name string) bool { return strings.Contains(strings.ToLower(name), low) }
}

// FileSearch is what a search by name found below a directory.
type FileSearch struct {
	Point string         `json:"point"`
	Path  string         `json:"path"`
	Name  string         `json:"name"`
	Items []fsread.Entry `json:"items"`
	// Truncated: more entries match than limit.
	Truncated bool `json:"truncated"`
}

// searchFiles walks a directory of a point's guest filesystem for entries
// whose name matches, up to limit (default 200, at most 5000).
func (s *Server) searchFiles(rc *reqCtx) (any, error) {
	name := rc.r.URL.Query().Get("name")
	if name == "" {
		return nil, badRequest("name: give a part of a file name or a glob (*.conf)")
	}
	if _, err := path.Match(name, ""); err != nil {
		return nil, badRequest("name %q: %v", name, err)
	}
	limit, err := rc.queryInt("limit", 200)
	if err != nil {
		return nil, err
	}
	limit = min(max(limit, 1), 5000)
	b, p, err := s.browser(rc)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	match := nameMatcher(name)
	out := FileSearch{Point: b.Point.ID, Path: p, Name: name, Items: []fsread.Entry{}}
	err = b.Walk(rc.ctx, p, func(e fsread.Entry) error {
		if e.Path == p || !match(e.Name) {
			return nil
		}
		if len(out.Items) == limit {
			out.Truncated = true
			return errEnough
		}
		out.Items = append(out.Items, e)
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, notFound("%s: %v", p, err)
	}
	return out, nil
}

// volumes lists the partitions (or the whole disk) of a point's disk and
// the filesystem found on each.
func (s *Server) volumes(rc *reqCtx) (any, error) {
	m, r, _, err := s.findPoint(rc.ctx, rc.p, rc.r.PathValue("id"), auth.Restore)
	if err != nil {
		return nil, err
	}
	vols, err := engine.VolumesOf(rc.ctx, r, m, rc.r.URL.Query().Get("disk"))
	if err != nil {
		return nil, badRequest("%v", err)
	}
	return vols, nil
}
