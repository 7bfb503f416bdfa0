package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Rebuild replaces every point of repository repoID with points, and
// records or updates vms, in one transaction: a failure leaves the catalog
// as it was. Every point must belong to repoID. A point already recorded
// in another repository is recorded as a copy there; one repoID no longer
// holds is dropped from it as DeletePoint does (moving to a copy when one
// exists). VMs are not marked missing here; reconcile the inventory with
// MarkMissing.
func (c *SQLite) Rebuild(ctx context.Context, repoID string, points []Point, vms []VM) error {
	if repoID == "" {
		return fmt.Errorf("rebuild: %w: empty repository id", ErrInvalid)
	}
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO repositories(id) VALUES (?) ON CONFLICT (id) DO NOTHING`, repoID); err != nil {
			return classify(err)
		}
		keep := make(map[string]bool, len(points))
		for _, p := range points {
			if p.RepoID != repoID {
				return fmt.Errorf("%w: point %s belongs to repository %q, not %q", ErrInvalid, p.ID, p.RepoID, repoID)
			}
			keep[p.ID] = true
		}
		touched, err := dropOthers(ctx, tx, repoID, keep)
		if err != nil {
			return classify(err)
		}
		homes, err := homesOf(ctx, tx)
		if err != nil {
			return classify(err)
		}
		pw, err := newPointWriter(ctx, tx)
		if err != nil {
			return err
		}
		defer pw.close()
		for _, p := range points {
			if home, ok := homes[p.ID]; ok && home != repoID {
				if err := validatePoint(p); err != nil {
					return fmt.Errorf("point %s: %w", p.ID, err)
				}
				if err := addCopy(ctx, tx, repoID, p.ID); err != nil {
					return fmt.Errorf("point %s: %w", p.ID, classify(err))
				}
				continue
			}
			if err := pw.write(ctx, p); err != nil {
				return fmt.Errorf("point %s: %w", p.ID, err)
			}
		}
		for _, r := range touched {
			if r != repoID {
				if err := summarize(ctx, tx, r, nil); err != nil {
					return classify(err)
				}
			}
		}
		for _, v := range vms {
			if err := c.upsertVM(ctx, tx, v); err != nil {
				return fmt.Errorf("vm %s: %w", v.UUID, err)
			}
		}
		return summarize(ctx, tx, repoID, nil)
	})
	if err != nil {
		return fmt.Errorf("rebuild catalog of repository %s: %w", repoID, err)
	}
	c.logger.InfoContext(ctx, "catalog rebuilt", "repository", repoID, "points", len(points), "vms", len(vms))
	return nil
}

// dropOthers drops repoID from every point it holds (home or copy) that
// keep lacks; it returns the other repositories that became a home.
func dropOthers(ctx context.Context, tx *sql.Tx, repoID string, keep map[string]bool) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM points WHERE repo_id = ? UNION SELECT point_id FROM point_copies WHERE repo_id = ?`, repoID, repoID)
	if err != nil {
		return nil, err
	}
	var gone []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		if !keep[id] {
			gone = append(gone, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var touched []string
	for _, id := range gone {
		repos, err := dropFromRepo(ctx, tx, repoID, id)
		if err != nil {
			return nil, err
		}
		for _, r := range repos {
			if !slices.Contains(touched, r) {
				touched = append(touched, r)
			}
		}
	}
	return touched, nil
}

// homesOf maps every recorded point to its home repository.
func homesOf(ctx context.Context, tx *sql.Tx) (map[string]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, repo_id FROM points`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, repo string
		if err := rows.Scan(&id, &repo); err != nil {
			return nil, err
		}
		out[id] = repo
	}
	return out, rows.Err()
}

func isForeignKey(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}
