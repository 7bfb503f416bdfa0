package engine

import (
	"context"

	"github.com/kurabackup/kura/internal/repo"
)

// lease takes a reader lease on point m (format spec §8.1) and returns the
// point as loaded under the lease, and a function ending the lease. A
// point deleted since m was loaded gives an error wrapping
// repo.ErrPointNotFound.
func (e *Engine) lease(ctx context.Context, purpose string, m *repo.Manifest) (*repo.Manifest, func(), error) {
	l, lm, err := e.Repo.LeasePoint(ctx, purpose, m.ID)
	if err != nil {
		return nil, nil, err
	}
	release := func() {
		if err := l.Release(context.WithoutCancel(ctx)); err != nil {
			e.log().Warn("release reader lease", "point", m.ID, "err", err)
		}
	}
	return lm, release, nil
}
