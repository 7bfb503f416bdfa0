package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/testenv"
	"github.com/kurabackup/kura/internal/testenv/s3server"
)

// A VM's life with its repository on a real S3 server, through the CLI:
// full and incremental backups, restore as a new VM, export, files, verify,
// a copy to a local repository, catalog rebuild, prune and gc.
func TestS3RepositoryBackupRestore(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	testenv.NeedTool(t, "qemu-io")
	srv := s3server.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	files := map[string][]byte{"hello.txt": []byte("from S3\n")}
	g := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{SizeMiB: 48, Files: files}}})
	qemuIO(t, g.DiskPath("vda"), "write -P 0x61 20M 3M")
	dir := t.TempDir()
	c := &cliRepo{dir: dir, repo: srv.Location(srv.Bucket(t, "e2e", false), "kura"),
		catalog: filepath.Join(dir, "catalog.db"), pwFile: filepath.Join(dir, "password")}
	if err := os.WriteFile(c.pwFile, []byte(e2ePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok(t, "repo", "init")

	full := vmResult(t, c.backup(t, 0, g.Name()), g.Name()).Point
	qemuIO(t, g.DiskPath("vda"), "write -P 0x62 30M 1M")
	inc := vmResult(t, c.backup(t, 0, g.Name()), g.Name()).Point
	if full.Kind != "full" || inc.Kind != "incremental" || inc.Parent != full.ID {
		t.Fatalf("points %s/%s, parent %s", full.Kind, inc.Kind, inc.Parent)
	}
	if inc.Requests == nil || inc.Requests.Put == 0 {
		t.Fatalf("incremental point recorded no requests: %+v", inc.Requests)
	}
	t.Logf("requests: full %+v; incremental %+v", *full.Requests, *inc.Requests)
	be, err := storage.Open(ctx, c.repo, storage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, e2ePassword, repo.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := rawImage(t, g.DiskPath("vda"), "qcow2")
	sameBytes(t, "incremental on S3", pointDisk(t, ctx, r, inc, "vda"), want)

	// Restore beside the original, export, files.
	store := t.TempDir()
	name := g.Name() + "-s3"
	dropVM(t, env, name)
	c.ok(t, "restore", inc.ID, "--name", name, "--storage", store, "--format", "raw")
	restored, err := os.ReadFile(filepath.Join(store, name+"-vda.raw"))
	if err != nil {
		matches, _ := filepath.Glob(filepath.Join(store, "*"))
		t.Fatalf("restored image: %v (have %v)", err, matches)
	}
	sameBytes(t, "restored from S3", restored, want)
	exp := t.TempDir()
	c.ok(t, "export", full.ID, "--out", exp, "--format", "raw")
	if out := c.ok(t, "files", "ls", inc.ID, "/"); !strings.Contains(out, "hello.txt") {
		t.Fatalf("files ls: %s", out)
	}
	out := t.TempDir()
	c.ok(t, "files", "get", inc.ID, "/hello.txt", "--out", out)
	if b, err := os.ReadFile(filepath.Join(out, "hello.txt")); err != nil || string(b) != "from S3\n" {
		t.Fatalf("files get: %q %v", b, err)
	}
	c.ok(t, "verify", "--read-data")
	c.ok(t, "locks")
	c.ok(t, "catalog", "rebuild")

	// A copy to a local repository holds the same points.
	local := filepath.Join(t.TempDir(), "copy")
	lc := &cliRepo{dir: dir, repo: local, catalog: c.catalog, pwFile: c.pwFile}
	lc.ok(t, "repo", "init", "--copy-of", c.repo)
	c.ok(t, "copy", "--to", local, "--verify")
	if ps := lc.points(t); len(ps) != 2 {
		t.Fatalf("local copy has %d points", len(ps))
	}
	c.ok(t, "prune", "--keep-last", "1", "--gc")
	if ps := c.points(t); len(ps) != 1 || ps[0].ID != inc.ID {
		t.Fatalf("after prune: %+v", ps)
	}
	c.ok(t, "verify", "--read-data")
}
