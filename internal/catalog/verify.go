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
// the newest point (the VM's recent churn). VMs are ordered by name.
func (c *SQLite) VMStatuses(ctx context.Context, repoID string) ([]VMStatus, error) {
	cond, args := "", []any{}
	if repoID != "" {
		cond, args = " WHERE p.repo_id = ?", []any{repoID}
	}
	q := `WITH pp AS (
	SELECT p.vm_uuid, p.id, p.started, p.bytes_stored, p.bytes_new,
		EXISTS (SELECT 1 FROM damage_points d WHERE d.point_id = p.id) AS damaged,
		(SELECT v.verified FROM point_verified v WHERE v.point_id = p.id) AS verified
	FROM points p` + cond + `
)
SELECT vm.uuid, vm.name, vm.missing,
	(SELECT count(*) FROM pp WHERE pp.vm_uuid = vm.uuid),
	(SELECT count(*) FROM pp WHERE pp.vm_uuid = vm.uuid AND pp.damaged),
	(SELECT coalesce(sum(pp.bytes_stored), 0) FROM pp WHERE pp.vm_uuid = vm.uuid),
	n.id, n.started, n.bytes_new, g.id, g.started,
	(SELECT max(pp.verified) FROM pp WHERE pp.vm_uuid = vm.uuid)
FROM vms vm
LEFT JOIN pp n ON n.id = (SELECT x.id FROM pp x WHERE x.vm_uuid = vm.uuid ORDER BY x.started DESC, x.id DESC LIMIT 1)
LEFT JOIN pp g ON g.id = (SELECT x.id FROM pp x WHERE x.vm_uuid = vm.uuid AND NOT x.damaged ORDER BY x.started DESC, x.id DESC LIMIT 1)
WHERE EXISTS (SELECT 1 FROM pp WHERE pp.vm_uuid = vm.uuid)
ORDER BY vm.name, vm.uuid`
	rows, err := c.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("vm statuses: %w", classify(err))
	}
	defer rows.Close()
	var out []VMStatus
	for rows.Next() {
		var s VMStatus
		var newestID, goodID sql.NullString
		var newest, good, lastNew, verified sql.NullInt64
		if err := rows.Scan(&s.UUID, &s.Name, &s.Missing, &s.Points, &s.Damaged, &s.BytesStored,
			&newestID, &newest, &lastNew, &goodID, &good, &verified); err != nil {
			return nil, fmt.Errorf("vm statuses: %w", err)
		}
		s.NewestID, s.Newest, s.LastBytesNew = newestID.String, timeFromDB(newest), lastNew.Int64
		s.NewestGoodID, s.NewestGood, s.NewestVerified = goodID.String, timeFromDB(good), timeFromDB(verified)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("vm statuses: %w", err)
	}
	return out, nil
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
		if objects == nil {
			if _, err := tx.ExecContext(ctx, `DELETE FROM damage_points WHERE repo_id = ?`, repoID); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `DELETE FROM damage WHERE repo_id = ?`, repoID)
			return err
		}
		for _, o := range objects {
			if _, err := tx.ExecContext(ctx, `DELETE FROM damage_points WHERE repo_id = ? AND object = ?`, repoID, o); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM damage WHERE repo_id = ? AND object = ?`, repoID, o); err != nil {
				return err
			}
		}
		return nil
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
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark points verified: %w", classify(err))
	}
	return nil
}
