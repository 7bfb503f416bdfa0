package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Rebuild replaces every point of repository repoID with points, and
// records or updates vms, in one transaction: a failure leaves the catalog
// as it was. Every point must belong to repoID. VMs are not marked missing
// here; reconcile the inventory with MarkMissing.
func (c *SQLite) Rebuild(ctx context.Context, repoID string, points []Point, vms []VM) error {
	if repoID == "" {
		return fmt.Errorf("rebuild: %w: empty repository id", ErrInvalid)
	}
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO repositories(id) VALUES (?) ON CONFLICT (id) DO NOTHING`, repoID); err != nil {
			return classify(err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM points WHERE repo_id = ?`, repoID); err != nil {
			return classify(err)
		}
		pw, err := newPointWriter(ctx, tx)
		if err != nil {
			return err
		}
		defer pw.close()
		for _, p := range points {
			if p.RepoID != repoID {
				return fmt.Errorf("%w: point %s belongs to repository %q, not %q", ErrInvalid, p.ID, p.RepoID, repoID)
			}
			if err := pw.write(ctx, p); err != nil {
				return fmt.Errorf("point %s: %w", p.ID, err)
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

func isForeignKey(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}
