package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/retention"
)

// ErrEmptyPolicy means a prune was asked without any retention rule.
var ErrEmptyPolicy = errors.New("no retention policy given: it would keep everything (use --keep-last, --keep-within, --keep-daily, ...)")

// PruneOptions controls Prune.
type PruneOptions struct {
	Policy retention.Policy
	// VM limits the prune to the points of one VM (name or UUID).
	VM string
	// Tag limits it to the points carrying this tag (a server group's
	// points carry "group:<name>").
	Tag string
	// DryRun decides without deleting.
	DryRun bool
	// GC runs gc afterwards when points were removed.
	GC bool
	// Wait is how long to wait for a running gc (0: fail at once).
	Wait time.Duration
}

// PruneReport says what Prune decided and did.
type PruneReport struct {
	DryRun    bool                 `json:"dry_run"`
	Decisions []retention.Decision `json:"decisions"`
	// Removed are the points deleted (or, in a dry run, that would be).
	Removed []string `json:"removed"`
	// Kept are points the policy removes but a reader holds (restore,
	// instant recovery, ...): kept this time, with the holder.
	Kept map[string]string `json:"kept_in_use,omitempty"`
	GC   *repo.GCReport    `json:"gc,omitempty"`
}

// Prune applies a retention policy to each VM's points, deletes the
// points it does not keep (never one a reader holds), forgets them in the
// catalog, and runs gc when asked.
func (s *Service) Prune(ctx context.Context, opts PruneOptions) (*PruneReport, error) {
	if opts.Policy.Empty() {
		return nil, ErrEmptyPolicy
	}
	points, err := s.Repo.PointSummaries(ctx)
	if err != nil {
		return nil, err
	}
	var items []retention.Item
	for _, m := range points {
		if opts.VM != "" && m.VM.Name != opts.VM && m.VM.UUID != opts.VM {
			continue
		}
		if opts.Tag != "" && !slices.Contains(m.Tags, opts.Tag) {
			continue
		}
		items = append(items, retention.Item{ID: m.ID, Time: m.Started, Group: m.VM.UUID})
	}
	rep := &PruneReport{DryRun: opts.DryRun, Decisions: retention.Apply(items, opts.Policy), Removed: []string{}}
	var drop []string
	for _, d := range rep.Decisions {
		if !d.Keep {
			drop = append(drop, d.Item.ID)
		}
	}
	if opts.DryRun {
		rep.Removed = drop
		return rep, nil
	}
	del, err := s.deletePoints(ctx, drop, opts.Wait)
	if del != nil {
		rep.Removed, rep.Kept = del.Deleted, del.Kept
	}
	if err != nil {
		return rep, err
	}
	if opts.GC && len(rep.Removed) > 0 {
		if rep.GC, err = s.GC(ctx, false); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// DeleteReport says what DeletePoints did.
type DeleteReport struct {
	Deleted []string          `json:"deleted"`
	Kept    map[string]string `json:"kept_in_use,omitempty"`
	GC      *repo.GCReport    `json:"gc,omitempty"`
}

// DeletePoints deletes the points given by id or unique prefix — every
// prefix is resolved before anything is deleted — except those a reader
// holds, forgets them in the catalog, and runs gc when asked.
func (s *Service) DeletePoints(ctx context.Context, prefixes []string, gc bool) (*DeleteReport, error) {
	var ids []string
	for _, p := range prefixes {
		m, err := s.Repo.LoadPoint(ctx, p)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(ids, m.ID) {
			ids = append(ids, m.ID)
		}
	}
	res, err := s.deletePoints(ctx, ids, 0)
	if err != nil {
		return nil, err
	}
	rep := &DeleteReport{Deleted: res.Deleted, Kept: res.Kept}
	if gc && len(rep.Deleted) > 0 {
		if rep.GC, err = s.GC(ctx, false); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (s *Service) deletePoints(ctx context.Context, ids []string, wait time.Duration) (*repo.DeleteResult, error) {
	if len(ids) == 0 {
		return &repo.DeleteResult{Deleted: []string{}}, nil
	}
	res, err := s.Repo.DeletePoints(ctx, ids, repo.DeleteOptions{Wait: wait})
	if res != nil && s.Catalog != nil {
		for _, id := range res.Deleted {
			if cerr := s.Catalog.DeletePoint(context.WithoutCancel(ctx), s.Repo.Config().ID, id); cerr != nil {
				s.log().Warn("catalog: forget deleted point", "point", id, "err", cerr)
			}
		}
	}
	if err != nil {
		return res, fmt.Errorf("delete points: %w", err)
	}
	return res, nil
}

// GC deletes chunks and indexes no point references.
func (s *Service) GC(ctx context.Context, dryRun bool) (*repo.GCReport, error) {
	return s.Repo.GC(ctx, repo.GCOptions{DryRun: dryRun})
}
