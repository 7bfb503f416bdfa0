package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/service"
)

// CopyResult is what a copy job did for one of its group's copies.
type CopyResult struct {
	To    string               `json:"to"`
	Copy  *repo.CopyReport     `json:"copy,omitempty"`
	Prune *service.PruneReport `json:"prune,omitempty"`
	Error string               `json:"error,omitempty"`
	Took  config.Duration      `json:"took"`
}

// runCopy copies the group's points to each of its copies' repositories,
// then applies each copy's own retention there (and gc). One copy failing
// does not stop the others; the job is then partially failed.
func (s *Server) runCopy(ctx context.Context, j catalog.Job, g config.Group, log *slog.Logger) jobResult {
	src, _, err := s.repository(g)
	if err != nil {
		return jobResult{err: err}
	}
	ids, err := groupPoints(ctx, src, g.Name)
	if err != nil {
		return jobResult{err: err}
	}
	repos := s.repositories()
	var out []CopyResult
	failed := 0
	for _, cp := range g.Copies {
		started := s.opts.Now()
		res := CopyResult{To: cp.To}
		if err := s.copyOne(ctx, src, repos[cp.To], cp, ids, g.Name, &res, log); err != nil {
			res.Error = err.Error()
			failed++
			log.Error("copy failed", "to", cp.To, "err", err)
		}
		if res.Error == "" {
			if err := s.copySelf(ctx, repos[cp.To], log); err != nil {
				log.Warn("copy of the server point", "to", cp.To, "err", err)
			}
		}
		res.Took = config.Duration(s.opts.Now().Sub(started))
		out = append(out, res)
		if ctx.Err() != nil {
			break
		}
	}
	switch {
	case failed == 0:
		return jobResult{state: phase.Completed, summary: out}
	case failed < len(g.Copies):
		return jobResult{state: phase.PartiallyFailed, summary: out}
	}
	return jobResult{err: fmt.Errorf("every copy of group %s failed", g.Name), summary: out}
}

func (s *Server) copyOne(ctx context.Context, src, dst *repo.Repository, cp config.Copy, ids []string, group string, res *CopyResult, log *slog.Logger) error {
	if dst == nil {
		return fmt.Errorf("repository %s is not open", cp.To)
	}
	if len(ids) == 0 {
		log.Info("nothing to copy yet", "to", cp.To)
		return nil
	}
	svc := &service.Service{Repo: src, Catalog: s.cat, Logger: log}
	rep, err := svc.Copy(ctx, dst, repo.CopyOptions{Points: ids, Latest: cp.Latest, Verify: cp.Verify})
	res.Copy = rep
	if err != nil {
		return err
	}
	log.Info("copied", "to", cp.To, "copied", rep.Copied, "already_there", rep.Skipped, "bytes", rep.Bytes)
	if cp.Retention == (config.Retention{}) {
		return nil
	}
	dsvc := &service.Service{Repo: dst, Catalog: s.cat, Logger: log}
	pr, err := dsvc.Prune(ctx, service.PruneOptions{Policy: Policy(cp.Retention), Tag: GroupTag(group), GC: true, Wait: time.Hour})
	res.Prune = pr
	if err != nil {
		return fmt.Errorf("retention on %s: %w", cp.To, err)
	}
	log.Info("copy retention applied", "to", cp.To, "removed", len(pr.Removed))
	return nil
}

// copySelf puts the newest server point of this host into dst too (and
// keeps there as many as at home), so that kura server recover works from
// an off-site copy alone. An unencrypted dst gets none: the point holds
// the server's TLS key.
func (s *Server) copySelf(ctx context.Context, dst *repo.Repository, log *slog.Logger) error {
	self, _, err := s.selfRepo()
	if err != nil || self == dst || dst.Config().Encryption == "none" {
		return nil
	}
	ms, err := self.ListPoints(ctx)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	newest := ""
	for _, m := range ms {
		if m.VM.Hypervisor == ServerHypervisor && m.VM.UUID == serverUUID(host) && m.ID > newest {
			newest = m.ID
		}
	}
	if newest == "" {
		return nil
	}
	svc := &service.Service{Repo: self, Catalog: s.cat, Logger: log}
	if _, err := svc.Copy(ctx, dst, repo.CopyOptions{Points: []string{newest}}); err != nil {
		return err
	}
	cfg, _ := s.config()
	s.pruneSelf(ctx, dst, cfg)
	return nil
}

// groupPoints lists the ids of the points of group in r (its group tag).
func groupPoints(ctx context.Context, r *repo.Repository, group string) ([]string, error) {
	ms, err := r.ListPoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("list points: %w", err)
	}
	var ids []string
	for _, m := range ms {
		if slices.Contains(m.Tags, GroupTag(group)) {
			ids = append(ids, m.ID)
		}
	}
	return ids, nil
}
