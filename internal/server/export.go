package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/phase"
)

// ExportRequest is the body of an export request (and the parameters of
// an export job): a point's disks written as image files, with its
// configuration beside them, into a directory of the server's host.
type ExportRequest struct {
	// Out is an absolute directory; existing files are never overwritten.
	Out string `json:"out"`
	// Format: qcow2, raw or vmdk (default: as saved for libvirt, vmdk for
	// vSphere).
	Format string `json:"format,omitempty"`
	// Disk limits the export to one disk target.
	Disk string `json:"disk,omitempty"`
}

type exportParams struct {
	Point string `json:"point"`
	ExportRequest
}

// check validates the request (before anything is queued).
func (req ExportRequest) check() error {
	if req.Out == "" || !filepath.IsAbs(req.Out) {
		return badRequest("out %q: give an absolute directory on the server's host", req.Out)
	}
	if req.Format != "" && !slices.Contains(engine.ExportFormats, req.Format) {
		return badRequest("format %q: use one of %v", req.Format, engine.ExportFormats)
	}
	return nil
}

// exportPoint queues an export of a point. A restore user exports only
// points of its groups, into the storage its group allows.
func (s *Server) exportPoint(rc *reqCtx) (any, error) {
	var req ExportRequest
	if err := rc.decode(&req); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	id := rc.r.PathValue("id")
	m, _, g, err := s.findPoint(rc.ctx, rc.p, id, auth.Restore)
	if err == nil {
		err = rc.p.CheckRestore(g, auth.RestoreTarget{Storage: []string{filepath.Clean(req.Out)}}, func(string) bool { return false })
	}
	if err != nil {
		if errors.Is(err, auth.ErrForbidden) {
			s.audit(rc, "denied", "export", id, map[string]any{"request": req, "error": err.Error()})
		}
		return nil, err
	}
	j, err := s.enqueue(rc.ctx, catalog.JobSpec{Kind: catalog.JobExport, Group: g.Name, Trigger: "api:" + rc.p.User},
		exportParams{Point: m.ID, ExportRequest: req})
	if err != nil {
		return nil, err
	}
	s.audit(rc, "ok", "export", m.ID, map[string]any{"request": req, "job": j.ID})
	return created{code: http.StatusAccepted, body: j}, nil
}

// runExport exports a point (a queued export job).
func (s *Server) runExport(ctx context.Context, j catalog.Job, ep exportParams, log *slog.Logger) jobResult {
	r, m, err := s.pointAnywhere(ctx, ep.Point)
	if err != nil {
		return jobResult{err: err}
	}
	cfg, _ := s.config()
	eng := &engine.Engine{Repo: r, Catalog: s.cat, Logger: log, Job: j.ID, Progress: s.jobSink(j.ID, log)}
	rep, err := eng.Export(ctx, m, engine.ExportOptions{OutDir: ep.Out, Format: ep.Format, Disk: ep.Disk, ScratchDir: cfg.Server.Scratch()})
	if err != nil {
		return jobResult{err: err, summary: rep}
	}
	log.Info("exported", "point", m.ID, "vm", rep.VM, "disks", len(rep.Disks), "out", ep.Out)
	return jobResult{state: phase.Completed, summary: rep}
}
