package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// VMStatuses summarises, per VM with points in repository repoID (every
// repository when empty), its points: how many, the newest, the newest
// not damaged, how many are damaged, bytes stored, and the new bytes of
// the newest point (the VM's recent churn). It reads the per-VM summary
// every write keeps up to date. VMs are ordered by name.
func (c *SQLite) VMStatuses(ctx context.Context, repoID string) ([]VMStatus, error) {
	cond, args := "", []any{}
	if repoID != "" {
		cond, args = " WHERE s.repo_id = ?", []any{repoID}
	}
	rows, err := c.r.QueryContext(ctx, `SELECT s.vm_uuid, coalesce(v.name, ''), coalesce(v.missing, 0), s.points, s.damaged,
	s.bytes_stored, s.newest_id, s.newest, s.newest_bytes_new, s.good_id, s.good, s.verified
FROM vm_summary s LEFT JOIN vms v ON v.uuid = s.vm_uuid`+cond+`
ORDER BY coalesce(v.name, ''), s.vm_uuid, s.repo_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("vm statuses: %w", classify(err))
	}
	defer rows.Close()
	var out []VMStatus
	for rows.Next() {
		var s VMStatus
		var newest, good, verified sql.NullInt64
		if err := rows.Scan(&s.UUID, &s.Name, &s.Missing, &s.Points, &s.Damaged, &s.BytesStored,
			&s.NewestID, &newest, &s.LastBytesNew, &s.NewestGoodID, &good, &verified); err != nil {
			return nil, fmt.Errorf("vm statuses: %w", err)
		}
		s.Newest, s.NewestGood, s.NewestVerified = timeFromDB(newest), timeFromDB(good), timeFromDB(verified)
		if n := len(out); n > 0 && out[n-1].UUID == s.UUID {
			out[n-1] = mergeStatus(out[n-1], s) // the same VM in several repositories
			continue
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("vm statuses: %w", err)
	}
	return out, nil
}

// mergeStatus combines a VM's summaries of two repositories.
func mergeStatus(a, b VMStatus) VMStatus {
	a.Points += b.Points
	a.Damaged += b.Damaged
	a.BytesStored += b.BytesStored
	if b.Newest.After(a.Newest) {
		a.Newest, a.NewestID, a.LastBytesNew = b.Newest, b.NewestID, b.LastBytesNew
	}
	if b.NewestGood.After(a.NewestGood) {
		a.NewestGood, a.NewestGoodID = b.NewestGood, b.NewestGoodID
	}
	if b.NewestVerified.After(a.NewestVerified) {
		a.NewestVerified = b.NewestVerified
	}
	return a
}

// MarkDamaged records verify problems of repository repoID and the points
// each affects (merged with what is already recorded for that object).
func (c *SQLite) MarkDamaged(ctx context.Context, repoID string, damage []Damage) error {
	if repoID == "" {
		return fmt.Errorf("mark damaged: %w: empty repository id", ErrInvalid)
	}
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		for _, d := range damage {
			if d.Object == "" {
				return fmt.Errorf("%w: damage without an object", ErrInvalid)
			}
			found := d.Found
			if found.IsZero() {
				found = c.now()
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO damage(repo_id, object, kind, detail, found) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (repo_id, object) DO UPDATE SET kind = excluded.kind, detail = excluded.detail`,
				repoID, d.Object, d.Kind, d.Detail, timeToDB(found)); err != nil {
				return err
			}
			for _, p := range d.Points {
				if _, err := tx.ExecContext(ctx, `INSERT INTO damage_points(repo_id, object, point_id) VALUES (?, ?, ?)
ON CONFLICT (repo_id, object, point_id) DO NOTHING`, repoID, d.Object, p); err != nil {
					return err
				}
			}
			if err := summarizePoints(ctx, tx, d.Points); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark damaged in %s: %w", repoID, classify(err))
	}
	return nil
}

// ClearDamage forgets the problems of the given objects of repoID (all of
// its problems when objects is nil): a verify found them sound again.
func (c *SQLite) ClearDamage(ctx context.Context, repoID string, objects []string) error {
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		// The points that were damaged: their VMs' summaries change.
		q, args := `SELECT DISTINCT point_id FROM damage_points WHERE repo_id = ?`, []any{repoID}
		if objects != nil {
			q = `SELECT DISTINCT point_id FROM damage_points WHERE repo_id = ? AND object = ?`
		}
		var affected []string
		collect := func(args ...any) error {
			rows, err := tx.QueryContext(ctx, q, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					return err
				}
				affected = append(affected, id)
			}
			return rows.Err()
		}
		if objects == nil {
			if err := collect(args...); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM damage_points WHERE repo_id = ?`, repoID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM damage WHERE repo_id = ?`, repoID); err != nil {
				return err
			}
			return summarizePoints(ctx, tx, affected)
		}
		for _, o := range objects {
			if err := collect(repoID, o); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM damage_points WHERE repo_id = ? AND object = ?`, repoID, o); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM damage WHERE repo_id = ? AND object = ?`, repoID, o); err != nil {
				return err
			}
		}
		return summarizePoints(ctx, tx, affected)
	})
	if err != nil {
		return fmt.Errorf("clear damage in %s: %w", repoID, classify(err))
	}
	return nil
}

// Damaged lists the recorded problems of repoID, by object name, each with
// the points it affects.
func (c *SQLite) Damaged(ctx context.Context, repoID string) ([]Damage, error) {
	var out []Damage
	err := c.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT object, kind, detail, found FROM damage WHERE repo_id = ? ORDER BY object`, repoID)
		if err != nil {
			return err
		}
		idx := map[string]int{}
		for rows.Next() {
			var d Damage
			var found sql.NullInt64
			if err := rows.Scan(&d.Object, &d.Kind, &d.Detail, &found); err != nil {
				rows.Close()
				return err
			}
			d.Found = timeFromDB(found)
			idx[d.Object] = len(out)
			out = append(out, d)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		rows, err = tx.QueryContext(ctx, `SELECT object, point_id FROM damage_points WHERE repo_id = ? ORDER BY object, point_id`, repoID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var o, p string
			if err := rows.Scan(&o, &p); err != nil {
				return err
			}
			if i, ok := idx[o]; ok {
				out[i].Points = append(out[i].Points, p)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("damage of %s: %w", repoID, classify(err))
	}
	return out, nil
}

// MarkChunksVerified records that the chunks with these digests (hex) of
// repoID were re-hashed and found sound at at.
func (c *SQLite) MarkChunksVerified(ctx context.Context, repoID string, digests []string, at time.Time) error {
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO verified_chunks(repo_id, digest, verified) VALUES (?, ?, ?)
ON CONFLICT (repo_id, digest) DO UPDATE SET verified = excluded.verified`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, d := range digests {
			if _, err := st.ExecContext(ctx, repoID, d, timeToDB(at)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark chunks verified in %s: %w", repoID, classify(err))
	}
	return nil
}

// ChunksVerifiedSince calls fn with every chunk digest of repoID verified
// at or after since, without holding them all in memory.
func (c *SQLite) ChunksVerifiedSince(ctx context.Context, repoID string, since time.Time, fn func(digest string) error) error {
	rows, err := c.r.QueryContext(ctx, `SELECT digest FROM verified_chunks WHERE repo_id = ? AND verified >= ?`,
		repoID, since.UnixNano())
	if err != nil {
		return fmt.Errorf("verified chunks of %s: %w", repoID, classify(err))
	}
	defer rows.Close()
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return fmt.Errorf("verified chunks of %s: %w", repoID, err)
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	return rows.Err()
}

// MarkPointsVerified records that a verify found these points sound at at.
func (c *SQLite) MarkPointsVerified(ctx context.Context, ids []string, at time.Time) error {
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `INSERT INTO point_verified(point_id, verified) VALUES (?, ?)
ON CONFLICT (point_id) DO UPDATE SET verified = excluded.verified`, id, timeToDB(at)); err != nil {
				return err
			}
		}
		// Each VM's newest verification is the maximum: a point just
		// verified is it (no recomputation of whole VMs needed).
		_, err := tx.ExecContext(ctx, `UPDATE vm_summary SET verified = ?
WHERE EXISTS (SELECT 1 FROM points p JOIN point_verified v ON v.point_id = p.id
	WHERE p.repo_id = vm_summary.repo_id AND p.vm_uuid = vm_summary.vm_uuid AND v.verified = ?)
	AND (verified IS NULL OR verified < ?)`, timeToDB(at), timeToDB(at), timeToDB(at))
		return err
	})
	if err != nil {
		return fmt.Errorf("mark points verified: %w", classify(err))
	}
	return nil
}
