package server

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/service"
)

// RestoreRequest is the body of a restore request (and the parameters of
// a restore job).
type RestoreRequest struct {
	// Name restores beside the original as a new VM; empty restores in
	// place.
	Name string `json:"name,omitempty"`
	// Storage is a directory or pool:NAME for the new VM's disks.
	Storage string `json:"storage,omitempty"`
	// Networks maps networks of the saved configuration to new ones.
	Networks map[string]string `json:"networks,omitempty"`
	Format   string            `json:"format,omitempty"` // qcow2 or raw
	Start    bool              `json:"start,omitempty"`
	// OnConflict: abort (default), keep or overwrite.
	OnConflict string `json:"on_conflict,omitempty"`
	// Connection names the hypervisor connection to restore to (default:
	// the first of the point's group).
	Connection string `json:"connection,omitempty"`
}

// restoreParams are a restore job's parameters.
type restoreParams struct {
	Point string `json:"point"`
	RestoreRequest
}

// RestorePreview is what a restore would do, found before anything changes.
type RestorePreview struct {
	Point     string            `json:"point"`
	VM        string            `json:"vm"`
	InPlace   bool              `json:"in_place"`
	Disks     []string          `json:"disks"`
	Networks  []string          `json:"networks"`
	Conflicts []engine.Conflict `json:"conflicts"`
}

// pointGroup is the group a point was backed up for (its group tag).
func pointGroup(tags []string) string {
	for _, t := range tags {
		if g, ok := strings.CutPrefix(t, "group:"); ok {
			return g
		}
	}
	return ""
}

// restoreOptions turns a request into engine options.
func (req RestoreRequest) options(scratch string) (engine.RestoreOptions, error) {
	pol := req.OnConflict
	if pol == "" {
		pol = string(engine.ConflictAbort)
	}
	p, err := engine.ParseConflictPolicy(pol)
	if err != nil || p == engine.ConflictPrompt {
		return engine.RestoreOptions{}, badRequest("on_conflict %q: use abort, keep or overwrite", req.OnConflict)
	}
	if req.Format != "" && req.Format != "qcow2" && req.Format != "raw" {
		return engine.RestoreOptions{}, badRequest("format %q: use qcow2 or raw", req.Format)
	}
	return engine.RestoreOptions{Name: req.Name, Storage: req.Storage, NetworkMap: req.Networks, Format: req.Format,
		Start: req.Start, OnConflict: p, ScratchDir: scratch}, nil
}

// restoreEngine opens what restoring point m needs.
func (s *Server) restoreEngine(ctx context.Context, m *repo.Manifest, r *repo.Repository, req RestoreRequest, log *slog.Logger) (*engine.Engine, func(), error) {
	cfg, _ := s.config()
	var target config.Connection
	for _, cn := range cfg.Connections {
		if req.Connection == cn.Name || (req.Connection == "" && target.URI == "") {
			target = cn
		}
	}
	if g, ok := cfg.Group(pointGroup(m.Tags)); ok && req.Connection == "" {
		if cs := cfg.ConnectionsOf(g); len(cs) > 0 {
			target = cs[0]
		}
	}
	if target.URI == "" {
		return nil, nil, badRequest("no connection %q", req.Connection)
	}
	conn, err := s.opts.Connect(ctx, target, log)
	if err != nil {
		return nil, nil, err
	}
	svc := &service.Service{Repo: r, Catalog: s.cat, Conn: conn, Logger: log, ScratchDir: cfg.Server.Scratch()}
	return svc.Engine(), func() { _ = conn.Close() }, nil
}

// previewRestore plans a restore and finds its conflicts, changing nothing;
// it checks that p may make it.
func (s *Server) previewRestore(ctx context.Context, p auth.Principal, pointID string, req RestoreRequest) (*RestorePreview, error) {
	m, r, g, err := s.findPoint(ctx, p, pointID, auth.Restore)
	if err != nil {
		return nil, err
	}
	opts, err := req.options("")
	if err != nil {
		return nil, err
	}
	eng, done, err := s.restoreEngine(ctx, m, r, req, s.log)
	if err != nil {
		return nil, err
	}
	defer done()
	plan, err := eng.PlanRestore(ctx, m, opts)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	conflicts, err := eng.Conflicts(ctx, plan)
	if err != nil {
		return nil, err
	}
	pv := &RestorePreview{Point: m.ID, VM: plan.Name, InPlace: plan.Name == m.VM.Name && strings.EqualFold(plan.UUID, m.VM.UUID),
		Conflicts: conflicts}
	var target auth.RestoreTarget
	for _, d := range plan.Disks {
		if d.Skip {
			continue
		}
		pv.Disks = append(pv.Disks, d.Path)
		target.Storage = append(target.Storage, filepath.Dir(d.Path))
	}
	if req.Storage != "" && strings.HasPrefix(req.Storage, "pool:") {
		target.Storage = []string{req.Storage}
	}
	for _, n := range plan.Networks {
		net := n.To
		if net == "" {
			net = n.From
		}
		if net != "" && !slices.Contains(pv.Networks, net) {
			pv.Networks = append(pv.Networks, net)
		}
	}
	target.Networks = pv.Networks
	if opts.OnConflict == engine.ConflictOverwrite {
		for _, c := range conflicts {
			if c.Kind == "vm" {
				target.Overwrites = append(target.Overwrites, c.Name)
			}
		}
	}
	cfg, _ := s.config()
	err = p.CheckRestore(g, target, func(vm string) bool { return s.vmInGroups(ctx, cfg, vm, p.Groups) })
	return pv, err
}

// runRestore restores a point (a queued restore job).
func (s *Server) runRestore(ctx context.Context, j catalog.Job, rp restoreParams, log *slog.Logger) jobResult {
	r, m, err := s.pointAnywhere(ctx, rp.Point)
	if err != nil {
		return jobResult{err: err}
	}
	cfg, _ := s.config()
	opts, err := rp.options(cfg.Server.Scratch())
	if err != nil {
		return jobResult{err: err}
	}
	eng, done, err := s.restoreEngine(ctx, m, r, rp.RestoreRequest, log)
	if err != nil {
		return jobResult{err: err}
	}
	defer done()
	eng.Job, eng.Progress = j.ID, s.jobSink(j.ID, log)
	rep, err := eng.Restore(ctx, m, opts)
	if err != nil {
		return jobResult{err: err, summary: rep}
	}
	log.Info("restored", "vm", rep.VM, "uuid", rep.UUID, "disks", len(rep.Disks), "started", rep.Started)
	return jobResult{state: phase.Completed, summary: rep}
}

// pointAnywhere finds a point (id or prefix) in any repository.
func (s *Server) pointAnywhere(ctx context.Context, id string) (*repo.Repository, *repo.Manifest, error) {
	var lastErr error
	for _, r := range s.repositories() {
		m, err := r.LoadPoint(ctx, id)
		if err == nil {
			return r, m, nil
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("point %q: %w", id, repo.ErrPointNotFound)
	}
	return nil, nil, lastErr
}

// findPoint finds a point and checks that p may do a to it: the point's
// group (its group tag) must allow it.
func (s *Server) findPoint(ctx context.Context, p auth.Principal, id string, a auth.Action) (*repo.Manifest, *repo.Repository, config.Group, error) {
	r, m, err := s.pointAnywhere(ctx, id)
	if err != nil {
		return nil, nil, config.Group{}, err
	}
	cfg, _ := s.config()
	g, _ := cfg.Group(pointGroup(m.Tags))
	if g.Name == "" && !p.SeesAll() {
		g.Name = pointGroup(m.Tags)
	}
	if err := p.Check(a, g.Name); err != nil {
		return nil, nil, config.Group{}, err
	}
	return m, r, g, nil
}

// vmInGroups reports whether the VM named vm belongs to one of groups:
// its newest point carries one of their tags.
func (s *Server) vmInGroups(ctx context.Context, cfg *config.Config, vm string, groups []string) bool {
	ps, err := s.cat.Points(ctx, catalog.PointFilter{VM: vm})
	if err != nil {
		return false
	}
	for _, p := range ps {
		if slices.Contains(groups, pointGroup(p.Tags)) {
			return true
		}
	}
	return false
}
