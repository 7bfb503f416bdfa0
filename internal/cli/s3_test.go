package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/testenv/s3server"
)

// addPointsAt is addPoints for any location.
func addPointsAt(t *testing.T, loc, vm string, n int, seed byte) []string {
	t.Helper()
	ctx := context.Background()
	be, err := storage.Open(ctx, loc, storage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	r, err := repo.Open(ctx, be, "correct horse", repo.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var ids []string
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(seed) * time.Minute)
	for i := range n {
		img := bytes.Repeat([]byte{seed + byte(i)}, 3<<20)
		w, err := r.NewWriter(ctx, "test")
		if err != nil {
			t.Fatal(err)
		}
		id, _, err := w.WriteDisk(ctx, repo.DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))}, nil)
		if err != nil {
			t.Fatal(err)
		}
		at := base.Add(time.Duration(i) * time.Hour)
		m := &repo.Manifest{ID: repo.NewPointID(at), VM: repo.VMInfo{Name: vm, UUID: "uuid-" + vm}, Started: at, Finished: at,
			Kind: "full", Disks: []repo.DiskEntry{{Target: "vda", Size: int64(len(img)), ChunkSize: 1 << 20, Index: id}}}
		if err := w.Commit(ctx, m); err != nil {
			t.Fatal(err)
		}
		w.Close()
		ids = append(ids, m.ID)
	}
	return ids
}

func pointIDs(t *testing.T, env map[string]string) []string {
	t.Helper()
	code, out, errs := run(t, env, "--json", "points", "list")
	if code != 0 {
		t.Fatalf("points list: %d %s", code, errs)
	}
	var pts []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &pts); err != nil {
		t.Fatalf("points list output %q: %v", out, err)
	}
	var ids []string
	for _, p := range pts {
		ids = append(ids, p.ID)
	}
	return ids
}

// The whole repository life on S3 through the CLI: init, info with the
// backend's requests, copies to a local copy-of repository and to another
// S3 repository with its own keys, verify, prune and gc.
func TestS3RepositoryAndCopies(t *testing.T) {
	srv := s3server.Start(t)
	bucket := srv.Bucket(t, "kura", false)
	s3loc := srv.Location(bucket, "main")
	cat := filepath.Join(t.TempDir(), "c.db")
	env := map[string]string{"KURA_REPO": s3loc, "KURA_PASSWORD": "correct horse", "KURA_CATALOG": cat}
	if code, _, errs := run(t, env, "repo", "init", "--chunk-size", "1MiB"); code != 0 {
		t.Fatalf("init on S3: %s", errs)
	}
	web := addPointsAt(t, s3loc, "web", 3, 1)
	db := addPointsAt(t, s3loc, "db", 1, 50)
	code, out, errs := run(t, env, "--json", "repo", "info")
	if code != 0 {
		t.Fatalf("info: %s", errs)
	}
	var info repo.Info
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatal(err)
	}
	if info.Backend != "s3" || info.Objects < 10 || info.LastJob == nil || info.LastJob.Requests.Put == 0 {
		t.Fatalf("info on S3: %+v", info)
	}
	if code, out, _ := run(t, env, "repo", "info"); code != 0 || !strings.Contains(out, "last job") {
		t.Fatalf("info text: %s", out)
	}

	// S3 → local, same keys.
	local := filepath.Join(t.TempDir(), "copy")
	lenv := map[string]string{"KURA_REPO": local, "KURA_PASSWORD": "correct horse", "KURA_CATALOG": cat}
	if code, out, errs := run(t, lenv, "repo", "init", "--copy-of", s3loc); code != 0 || !strings.Contains(out, "copy of repository") {
		t.Fatalf("init --copy-of: %s %s", out, errs)
	}
	code, out, errs = run(t, env, "copy", "--to", local, "--latest", "2", "web")
	if code != 0 || !strings.Contains(out, "2 points copied (as stored") {
		t.Fatalf("copy --latest 2 web: %d %s %s", code, out, errs)
	}
	code, out, errs = run(t, env, "copy", "--to", local, "--verify")
	if code != 0 || !strings.Contains(out, "2 points copied") || !strings.Contains(out, "2 already there") {
		t.Fatalf("copy the rest: %d %s %s", code, out, errs)
	}
	want := append(append([]string{}, db...), web...)
	got := pointIDs(t, lenv)
	if strings.Join(sorted(got), ",") != strings.Join(sorted(want), ",") {
		t.Fatalf("local copy has %v, want %v", got, want)
	}

	// local → S3 with other keys.
	s3b := srv.Location(bucket, "offsite")
	if code, _, errs := run(t, map[string]string{"KURA_REPO": s3b, "KURA_PASSWORD": "other"}, "repo", "init", "--chunk-size", "2MiB"); code != 0 {
		t.Fatalf("init offsite: %s", errs)
	}
	code, out, errs = run(t, map[string]string{"KURA_PASSWORD": "correct horse", "KURA_TO_PASSWORD": "other"},
		"copy", "--from", local, "--to", s3b, "--points", web[0]+","+db[0][:12], "--verify")
	if code != 0 || !strings.Contains(out, "re-encrypted") || !strings.Contains(out, "verified") {
		t.Fatalf("copy re-encrypting: %d %s %s", code, out, errs)
	}
	benv := map[string]string{"KURA_REPO": s3b, "KURA_PASSWORD": "other", "KURA_CATALOG": cat}
	if got := pointIDs(t, benv); len(got) != 2 {
		t.Fatalf("offsite has %v", got)
	}
	for _, e := range []map[string]string{env, benv} {
		if code, out, errs := run(t, e, "verify", "--read-data"); code != 0 || !strings.Contains(out, "no problems") {
			t.Fatalf("verify: %s %s", out, errs)
		}
	}
	if code, out, errs := run(t, env, "repo", "unhide"); code != 0 || !strings.Contains(out, "0 objects made current again") {
		t.Fatalf("unhide on S3: %d %s %s", code, out, errs)
	}
	if code, _, errs := run(t, lenv, "repo", "unhide"); code == 0 || !strings.Contains(errs, "keeps no versions") {
		t.Fatalf("unhide on a directory: %d %s", code, errs)
	}
	if code, _, errs := run(t, env, "prune", "--keep-last", "1", "--gc"); code != 0 {
		t.Fatalf("prune --gc on S3: %s", errs)
	}
	if got := pointIDs(t, env); len(got) != 2 {
		t.Fatalf("after prune: %v", got)
	}
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// kura benchmark --location measures an S3 store and leaves nothing there.
func TestBenchmarkOnS3(t *testing.T) {
	srv := s3server.Start(t)
	bucket := srv.Bucket(t, "bench", false)
	code, out, errs := run(t, nil, "--json", "benchmark", "--size", "16MiB", "--location", srv.Location(bucket, "b"))
	if code != 0 {
		t.Fatalf("benchmark: %s", errs)
	}
	var res struct {
		Backend  string
		Requests *struct{ Put int }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || !strings.HasPrefix(res.Backend, "s3:") || res.Requests == nil || res.Requests.Put == 0 {
		t.Fatalf("benchmark result %q: %v", out, err)
	}
	be, err := storage.Open(context.Background(), srv.Location(bucket, ""), storage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = be.List(context.Background(), "", func(storage.ObjectInfo) error { n++; return nil })
	if n != 0 {
		t.Errorf("benchmark left %d objects", n)
	}
}

// repo init --immutable on an Object Lock bucket: prune keeps locked
// points and says until when, gc leaves locked objects and says so.
func TestImmutableRepositoryCLI(t *testing.T) {
	srv := s3server.Start(t)
	loc := srv.Location(srv.Bucket(t, "locked", true), "r")
	env := map[string]string{"KURA_REPO": loc, "KURA_PASSWORD": "correct horse", "KURA_CATALOG": filepath.Join(t.TempDir(), "c.db")}
	if code, out, errs := run(t, env, "repo", "init", "--chunk-size", "1MiB", "--immutable", "0.001"); code != 0 || !strings.Contains(out, "immutable") {
		t.Fatalf("init --immutable: %d %s %s", code, out, errs)
	}
	plain := srv.Location(srv.Bucket(t, "plain", false), "r")
	penv := map[string]string{"KURA_REPO": plain, "KURA_PASSWORD": "x"}
	if code, _, errs := run(t, penv, "repo", "init", "--immutable", "1"); code == 0 || !strings.Contains(errs, "Object Lock") {
		t.Fatalf("init --immutable without Object Lock: %d %s", code, errs)
	}
	addPointsAt(t, loc, "web", 2, 1)
	code, out, errs := run(t, env, "prune", "--keep-last", "1", "--gc")
	if code != 0 || !strings.Contains(out, "locked by the immutability period until") || !strings.Contains(out, "0 removed") {
		t.Fatalf("prune of locked points: %d %s %s", code, out, errs)
	}
	if got := pointIDs(t, env); len(got) != 2 {
		t.Fatalf("points after prune: %v", got)
	}
	if code, out, _ := run(t, env, "repo", "info"); code != 0 || !strings.Contains(out, "immutable") {
		t.Fatalf("info: %s", out)
	}
	if code, out, errs := run(t, env, "verify"); code != 0 || !strings.Contains(out, "no problems") {
		t.Fatalf("verify: %s %s", out, errs)
	}
}
