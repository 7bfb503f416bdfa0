package catalog

import (
	"context"
	"database/sql"
)

// summarySQL inserts the vm_summary rows of the (repository, VM) pairs of
// the points matching cond (their old rows deleted first) (an SQL condition on points aliased p): every
// aggregate reads the points of one VM through the index on (repo_id,
// vm_uuid, started).
func summarySQL(cond string) string {
	return `INSERT INTO vm_summary (repo_id, vm_uuid, points, damaged, bytes_stored, newest_id, newest, newest_bytes_new, good_id, good, verified)
SELECT k.repo_id, k.vm_uuid,
	(SELECT count(*) FROM points x WHERE x.repo_id = k.repo_id AND x.vm_uuid = k.vm_uuid),
	(SELECT count(DISTINCT d.point_id) FROM damage_points d JOIN points x ON x.id = d.point_id
		WHERE x.repo_id = k.repo_id AND x.vm_uuid = k.vm_uuid),
	(SELECT coalesce(sum(x.bytes_stored), 0) FROM points x WHERE x.repo_id = k.repo_id AND x.vm_uuid = k.vm_uuid),
	coalesce((SELECT x.id FROM points x WHERE x.repo_id = k.repo_id AND x.vm_uuid = k.vm_uuid ORDER BY x.started DESC, x.id DESC LIMIT 1), ''),
	(SELECT x.started FROM points x WHERE x.repo_id = k.repo_id AND x.vm_uuid = k.vm_uuid ORDER BY x.started DESC, x.id DESC LIMIT 1),
	coalesce((SELECT x.bytes_new FROM points x WHERE x.repo_id = k.repo_id AND x.vm_uuid = k.vm_uuid ORDER BY x.started DESC, x.id DESC LIMIT 1), 0),
	coalesce((SELECT x.id FROM points x WHERE x.repo_id = k.repo_id AND x.vm_uuid = k.vm_uuid
		AND NOT EXISTS (SELECT 1 FROM damage_points d WHERE d.point_id = x.id) ORDER BY x.started DESC, x.id DESC LIMIT 1), ''),
	(SELECT x.started FROM points x WHERE x.repo_id = k.repo_id AND x.vm_uuid = k.vm_uuid
		AND NOT EXISTS (SELECT 1 FROM damage_points d WHERE d.point_id = x.id) ORDER BY x.started DESC, x.id DESC LIMIT 1),
	(SELECT max(v.verified) FROM point_verified v JOIN points x ON x.id = v.point_id
		WHERE x.repo_id = k.repo_id AND x.vm_uuid = k.vm_uuid)
FROM (SELECT DISTINCT p.repo_id, p.vm_uuid FROM points p WHERE ` + cond + `) k;`
}

// summarize recomputes the summary of the given VMs of a repository
// (every VM of it when vms is nil), and drops the summaries of VMs left
// without points.
func summarize(ctx context.Context, tx *sql.Tx, repoID string, vms []string) error {
	if vms == nil {
		if _, err := tx.ExecContext(ctx, `DELETE FROM vm_summary WHERE repo_id = ?`, repoID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, summarySQL("p.repo_id = ?"), repoID)
		return err
	}
	for _, vm := range vms {
		if _, err := tx.ExecContext(ctx, `DELETE FROM vm_summary WHERE repo_id = ? AND vm_uuid = ?`, repoID, vm); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, summarySQL("p.repo_id = ? AND p.vm_uuid = ?"), repoID, vm); err != nil {
			return err
		}
	}
	return nil
}

// summarizePoints recomputes the summaries of the VMs of the given points.
func summarizePoints(ctx context.Context, tx *sql.Tx, ids []string) error {
	type key struct{ repo, vm string }
	seen := map[key]bool{}
	for _, id := range ids {
		var k key
		err := tx.QueryRowContext(ctx, `SELECT repo_id, vm_uuid FROM points WHERE id = ?`, id).Scan(&k.repo, &k.vm)
		if err == sql.ErrNoRows {
			continue
		}
		if err != nil {
			return err
		}
		if !seen[k] {
			seen[k] = true
			if err := summarize(ctx, tx, k.repo, []string{k.vm}); err != nil {
				return err
			}
		}
	}
	return nil
}
