package catalog

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func openTest(t *testing.T) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "dir", "catalog.db")
	c, err := Open(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, path
}

var t0 = time.Date(2026, 11, 21, 22, 0, 0, 123456789, time.UTC)

func samplePoint(id, repo, vmUUID, vmName string, started time.Time) Point {
	return Point{
		ID: id, RepoID: repo, VMUUID: vmUUID, VMName: vmName, Kind: KindIncremental,
		Parent: "parent-" + id, Consistency: "filesystem", Checkpoint: "kura-" + id,
		Started: started, Finished: started.Add(90 * time.Second),
		BytesRead: 1 << 30, BytesNew: 1 << 20, BytesStored: 1 << 19,
		Tags: []string{"nightly", "gold"}, Notes: []string{"agent frozen 2 filesystems"},
		Disks: []PointDisk{
			{Target: "vdb", Source: "/var/lib/libvirt/images/b.qcow2", Format: "qcow2", IndexID: "idx-b-" + id,
				Size: 8 << 30, BytesRead: 1 << 29, BytesNew: 1 << 19, BytesStored: 1 << 18, Incremental: true},
			{Target: "vda", Source: "/var/lib/libvirt/images/a.raw", Format: "raw", IndexID: "idx-a-" + id,
				Size: 4 << 30, BytesRead: 1 << 29, BytesNew: 1 << 19, BytesStored: 1 << 18},
		},
	}
}

func TestOpenCreatesPrivateFileAndMigrates(t *testing.T) {
	c, path := openTest(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("catalog file mode %v, want 0600", fi.Mode().Perm())
	}
	ctx := context.Background()
	v, err := currentVersion(ctx, c.r)
	if err != nil || v != SchemaVersion() {
		t.Fatalf("schema version %d, %v; want %d", v, err, SchemaVersion())
	}
	var mode string
	if err := c.r.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q, %v; want wal", mode, err)
	}
	var fk int
	if err := c.w.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys %d, %v; want 1", fk, err)
	}
	if err := c.AddPoint(ctx, samplePoint("p1", "r1", "u1", "vm1", t0)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: no migration re-applied, data still there.
	c2, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer c2.Close()
	var n int
	if err := c2.r.QueryRowContext(ctx, `SELECT count(*) FROM schema_version`).Scan(&n); err != nil || n != SchemaVersion() {
		t.Errorf("schema_version rows %d, %v; want %d", n, err, SchemaVersion())
	}
	if _, err := c2.Point(ctx, "p1"); err != nil {
		t.Errorf("point after reopen: %v", err)
	}
}
