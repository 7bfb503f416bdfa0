package service

import (
	"context"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/repo"
)

// VerifyOptions controls Verify.
type VerifyOptions struct {
	// ReadData re-hashes chunk contents (else presence only).
	ReadData bool
	// OutdatedAfter, with ReadData, re-hashes only the chunks not verified
	// within this long (the catalog remembers when each was), so that a
	// nightly verify stays short; 0 re-hashes everything.
	OutdatedAfter time.Duration
	Progress      func(done, total int64)
}

// Verify checks the repository and records the outcome in the catalog:
// every damaged object with the points it affects (shown as damaged until
// a backup stores the object again and a verify finds it sound), the
// chunks found sound and when, and the points found sound.
func (s *Service) Verify(ctx context.Context, opts VerifyOptions) (*repo.VerifyReport, error) {
	ro := repo.VerifyOptions{ReadData: opts.ReadData, Progress: opts.Progress}
	repoID := s.Repo.Config().ID
	now := time.Now()
	if s.Catalog != nil && opts.ReadData {
		if opts.OutdatedAfter > 0 {
			fresh := map[string]bool{}
			err := s.Catalog.ChunksVerifiedSince(ctx, repoID, now.Add(-opts.OutdatedAfter), func(d string) error {
				fresh[d] = true
				return nil
			})
			if err != nil {
				return nil, err
			}
			ro.Fresh = func(d repo.Digest) bool { return fresh[d.String()] }
		}
		ro.Verified = func(ds []repo.Digest) {
			hex := make([]string, len(ds))
			for i, d := range ds {
				hex[i] = d.String()
			}
			if err := s.Catalog.MarkChunksVerified(context.WithoutCancel(ctx), repoID, hex, now); err != nil {
				s.log().Warn("catalog: record verified chunks", "err", err)
			}
		}
	}
	rep, err := s.Repo.Verify(ctx, ro)
	if err != nil || s.Catalog == nil {
		return rep, err
	}
	s.recordVerify(ctx, rep, now)
	return rep, nil
}

func (s *Service) recordVerify(ctx context.Context, rep *repo.VerifyReport, at time.Time) {
	ctx = context.WithoutCancel(ctx)
	repoID := s.Repo.Config().ID
	damaged := map[string]bool{}
	var dmg []catalog.Damage
	for _, p := range rep.Problems {
		d := catalog.Damage{Object: p.Object, Kind: p.Kind, Detail: p.Detail, Found: at}
		for _, a := range p.Affected {
			if !damaged[a.Point] {
				damaged[a.Point] = true
			}
			d.Points = append(d.Points, a.Point)
		}
		dmg = append(dmg, d)
	}
	// Damage is what this verify found: what it no longer finds was healed.
	if err := s.Catalog.ClearDamage(ctx, repoID, nil); err != nil {
		s.log().Warn("catalog: clear damage", "err", err)
	}
	if len(dmg) > 0 {
		if err := s.Catalog.MarkDamaged(ctx, repoID, dmg); err != nil {
			s.log().Warn("catalog: record damage", "err", err)
		}
	}
	points, err := s.Catalog.Points(ctx, catalog.PointFilter{RepoID: repoID})
	if err != nil {
		s.log().Warn("catalog: points", "err", err)
		return
	}
	var sound []string
	for _, p := range points {
		if !damaged[p.ID] {
			sound = append(sound, p.ID)
		}
	}
	if err := s.Catalog.MarkPointsVerified(ctx, sound, at); err != nil {
		s.log().Warn("catalog: record verified points", "err", err)
	}
}
