package server

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/instant"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/service"
)

// bootParams are the parameters of a boot-verify job.
type bootParams struct {
	Probes   []string        `json:"probes,omitempty"`
	Timeout  config.Duration `json:"timeout,omitempty"`
	Parallel int             `json:"parallel,omitempty"`
}

// runBootVerify boots the newest point of each VM of the group as a
// throw-away VM on an isolated network (on the group's first connection
// that can run instant VMs), runs the probes, and records each result in
// the catalog. A point that fails makes the job partially failed.
func (s *Server) runBootVerify(ctx context.Context, j catalog.Job, g config.Group, p bootParams, log *slog.Logger) jobResult {
	r, _, err := s.repository(g)
	if err != nil {
		return jobResult{err: err}
	}
	var probes []instant.Probe
	for _, ps := range p.Probes {
		pr, err := instant.ParseProbe(ps)
		if err != nil {
			return jobResult{err: err}
		}
		probes = append(probes, pr)
	}
	points, err := newestGroupPoints(ctx, r, g.Name)
	if err != nil {
		return jobResult{err: err}
	}
	if len(points) == 0 {
		log.Info("no points to boot yet")
		return jobResult{state: phase.Completed, summary: []instant.BootResult{}}
	}
	cfg, _ := s.config()
	conn, err := s.instantConnection(ctx, cfg, g, log)
	if err != nil {
		return jobResult{err: err}
	}
	defer conn.Close()
	svc := &service.Service{Repo: r, Catalog: s.cat, Conn: conn, Logger: log}
	m := svc.Instant(filepath.Join(cfg.Server.Dir(), "instant"), nil)
	timeout := p.Timeout.D()
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	res, err := m.VerifyBoot(ctx, points, instant.VerifyOptions{Probes: probes, Timeout: timeout, Parallel: max(p.Parallel, 1),
		ScreenshotDir: filepath.Join(cfg.Server.Dir(), "screenshots"),
		Progress:      func(point, msg string) { log.Info("boot verify", "point", point, "msg", msg) }})
	if err != nil {
		return jobResult{err: err, summary: res}
	}
	failed := 0
	for _, b := range res {
		if !b.OK {
			failed++
			log.Warn("point did not pass boot verification", "point", b.Point, "vm", b.VM, "reason", b.Reason)
		}
	}
	switch {
	case failed == 0:
		return jobResult{state: phase.Completed, summary: res}
	case failed < len(res):
		return jobResult{state: phase.PartiallyFailed, summary: res}
	}
	return jobResult{err: fmt.Errorf("no point of group %s passed boot verification", g.Name), summary: res}
}

// newestGroupPoints returns the newest point of each VM of the group in
// r, in the order of the VMs' names.
func newestGroupPoints(ctx context.Context, r *repo.Repository, group string) ([]string, error) {
	ms, err := r.ListPoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("list points: %w", err)
	}
	newest := map[string]*repo.Manifest{}
	for _, m := range ms {
		if !slices.Contains(m.Tags, GroupTag(group)) {
			continue
		}
		if o := newest[m.VM.UUID]; o == nil || m.Started.After(o.Started) || (m.Started.Equal(o.Started) && m.ID > o.ID) {
			newest[m.VM.UUID] = m
		}
	}
	list := make([]*repo.Manifest, 0, len(newest))
	for _, m := range newest {
		list = append(list, m)
	}
	slices.SortFunc(list, func(a, b *repo.Manifest) int { return strings.Compare(a.VM.Name+a.ID, b.VM.Name+b.ID) })
	ids := make([]string, len(list))
	for i, m := range list {
		ids[i] = m.ID
	}
	return ids, nil
}

// instantConnection opens the group's first connection that runs instant
// VMs.
func (s *Server) instantConnection(ctx context.Context, cfg *config.Config, g config.Group, log *slog.Logger) (hypervisor.Connector, error) {
	for _, cn := range cfg.ConnectionsOf(g) {
		conn, err := s.opts.Connect(ctx, cn, log)
		if err != nil {
			log.Warn("connection for boot verification", "connection", cn.Name, "err", err)
			continue
		}
		if _, ok := conn.(hypervisor.InstantHost); ok {
			return conn, nil
		}
		_ = conn.Close()
	}
	return nil, fmt.Errorf("group %s: no connection can boot points (instant recovery needs libvirt): %w", g.Name, hypervisor.ErrUnsupported)
}
