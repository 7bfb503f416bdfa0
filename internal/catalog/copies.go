package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// A recovery point copied to other repositories (kura copy keeps point
// ids) is one point of the catalog: its row belongs to one repository,
// its home, and point_copies names the others holding it. When the home
// repository deletes it (its retention is shorter than an off-site
// copy's, say), a copy becomes its home, so the point stays listed for as
// long as any repository holds it.

// AddCopy records that repository repoID holds point id too. Unknown
// points give ErrNotFound; recording the home repository or a recorded
// copy again changes nothing.
func (c *SQLite) AddCopy(ctx context.Context, repoID, id string) error {
	if repoID == "" || id == "" {
		return fmt.Errorf("add copy: %w: empty repository or point id", ErrInvalid)
	}
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		home, _, err := pointHome(ctx, tx, id)
		if err != nil {
			return err
		}
		if home == repoID {
			return nil
		}
		return addCopy(ctx, tx, repoID, id)
	})
	if err != nil {
		return fmt.Errorf("add copy of %s in %s: %w", id, repoID, classify(err))
	}
	return nil
}

func addCopy(ctx context.Context, tx *sql.Tx, repoID, id string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO repositories(id) VALUES (?) ON CONFLICT (id) DO NOTHING`, repoID); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO point_copies(point_id, repo_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, id, repoID)
	return err
}

// pointHome returns the home repository and VM of a point, or ErrNotFound.
func pointHome(ctx context.Context, tx *sql.Tx, id string) (repoID, vm string, err error) {
	err = tx.QueryRowContext(ctx, `SELECT repo_id, vm_uuid FROM points WHERE id = ?`, id).Scan(&repoID, &vm)
	if err == sql.ErrNoRows {
		return "", "", ErrNotFound
	}
	return repoID, vm, err
}

// dropFromRepo forgets that repository repoID holds point id: a copy is
// forgotten; the home moves to a copy when one exists, else the point is
// deleted. It returns the repositories whose summaries changed; ErrNotFound
// when repoID does not hold the point.
func dropFromRepo(ctx context.Context, tx *sql.Tx, repoID, id string) ([]string, error) {
	home, _, err := pointHome(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	if home != repoID {
		res, err := tx.ExecContext(ctx, `DELETE FROM point_copies WHERE point_id = ? AND repo_id = ?`, id, repoID)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil, ErrNotFound
		}
		return nil, nil
	}
	var next string
	err = tx.QueryRowContext(ctx, `SELECT repo_id FROM point_copies WHERE point_id = ? ORDER BY repo_id LIMIT 1`, id).Scan(&next)
	switch {
	case err == sql.ErrNoRows:
		if _, err := tx.ExecContext(ctx, `DELETE FROM points WHERE id = ?`, id); err != nil {
			return nil, err
		}
		return []string{repoID}, nil
	case err != nil:
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE points SET repo_id = ? WHERE id = ?`, next, id); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM point_copies WHERE point_id = ? AND repo_id = ?`, id, next); err != nil {
		return nil, err
	}
	return []string{repoID, next}, nil
}

// attachCopies fills the Copies of ps from query (selecting point_id,
// repo_id ordered by point).
func attachCopies(ctx context.Context, q querier, ps []Point, query string, args ...any) error {
	if len(ps) == 0 {
		return nil
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	at := make(map[string]int, len(ps))
	for i := range ps {
		at[ps[i].ID] = i
	}
	for rows.Next() {
		var id, repo string
		if err := rows.Scan(&id, &repo); err != nil {
			return err
		}
		if i, ok := at[id]; ok {
			ps[i].Copies = append(ps[i].Copies, repo)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i := range ps {
		slices.Sort(ps[i].Copies)
	}
	return nil
}
