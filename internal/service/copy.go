package service

import (
	"context"
	"errors"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/repo"
)

// Copy copies points of the service's repository to dst (an off-site
// copy: same point ids, only the chunks dst lacks) and records in the
// catalog that dst holds them too, so the catalog lists each point once
// with its copies and keeps listing it after its home repository deletes
// it.
func (s *Service) Copy(ctx context.Context, dst *repo.Repository, opts repo.CopyOptions) (*repo.CopyReport, error) {
	rep, err := repo.Copy(ctx, s.Repo, dst, opts)
	if rep != nil && s.Catalog != nil {
		s.recordCopies(context.WithoutCancel(ctx), dst, rep)
	}
	return rep, err
}

// recordCopies notes every point dst now holds; a point the catalog does
// not know yet is recorded from dst's manifest.
func (s *Service) recordCopies(ctx context.Context, dst *repo.Repository, rep *repo.CopyReport) {
	dstID := dst.Config().ID
	for _, p := range rep.Points {
		err := s.Catalog.AddCopy(ctx, dstID, p.ID)
		if errors.Is(err, catalog.ErrNotFound) {
			var m *repo.Manifest
			if m, err = dst.LoadPoint(ctx, p.ID); err == nil {
				err = s.Catalog.AddPoint(ctx, engine.CatalogPoint(dstID, m))
			}
		}
		if err != nil {
			s.log().Warn("catalog: record copy", "point", p.ID, "repository", dstID, "err", err)
		}
	}
}
