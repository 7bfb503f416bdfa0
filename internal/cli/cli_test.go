package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/storage/local"
)

// run calls Main like the shell would and returns exit code and outputs.
func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func newRepo(t *testing.T) (dir string, env map[string]string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "repo")
	env = map[string]string{"KURA_REPO": dir, "KURA_PASSWORD": "correct horse", "KURA_CATALOG": filepath.Join(t.TempDir(), "c.db")}
	if code, _, errs := run(t, env, "repo", "init", "--chunk-size", "1MiB"); code != 0 {
		t.Fatalf("init: %d %s", code, errs)
	}
	return dir, env
}

func TestBadInputGetsClearErrorsAndExitCodes(t *testing.T) {
	dir, env := newRepo(t)
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"unknown flag", env, []string{"points", "list", "--bogus"}, ExitUsage, "unknown flag: --bogus"},
		{"unknown command", env, []string{"frobnicate"}, ExitUsage, "unknown command"},
		{"wrong passphrase", map[string]string{"KURA_PASSWORD": "wrong"}, []string{"repo", "info"}, ExitError, "wrong passphrase"},
		{"no repository", map[string]string{"KURA_REPO": filepath.Join(dir, "nope"), "KURA_PASSWORD": "x"}, []string{"points", "list"}, ExitError, "run kura repo init"},
		{"init twice", env, []string{"repo", "init"}, ExitError, "already"},
		{"missing point", env, []string{"points", "show", "2099"}, ExitError, "kura points list"},
		{"empty prune policy", env, []string{"prune"}, ExitUsage, "no retention policy"},
		{"bad chunk size", env, []string{"repo", "init", "--chunk-size", "lots"}, ExitUsage, "not a size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := run(t, c.env, c.args...)
			if code != c.code || !strings.Contains(errs, c.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, c.code, errs, c.want)
			}
		})
	}
}

func TestRepoKeysInfoAndVerify(t *testing.T) {
	dir, env := newRepo(t)
	pwFile := filepath.Join(t.TempDir(), "pw2")
	if err := os.WriteFile(pwFile, []byte("second passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run(t, env, "repo", "key", "add", "--new-password-file", pwFile); code != 0 {
		t.Fatalf("key add: %s", errs)
	}
	// The new passphrase opens the repository, through --password-file.
	code, out, errs := run(t, map[string]string{"KURA_REPO": dir, "KURA_PASSWORD": ""}, "--password-file", pwFile, "repo", "key", "list", "--json")
	os.Unsetenv("KURA_PASSWORD")
	var keys []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &keys) != nil || len(keys) != 2 {
		t.Fatalf("key list with the new passphrase: %d %q %s", code, out, errs)
	}
	code, out, _ = run(t, env, "repo", "info", "--json")
	var info map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info["config"].(map[string]any)["chunk_size"].(float64) != 1<<20 {
		t.Fatalf("repo info --json: %d %s", code, out)
	}
	keyFile := filepath.Join(t.TempDir(), "master.key")
	if code, _, errs := run(t, env, "repo", "export-key", "--out", keyFile); code != 0 {
		t.Fatalf("export-key: %s", errs)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("exported key file: %v %v", st, err)
	}
	if code, _, _ := run(t, env, "repo", "export-key", "--out", keyFile); code == 0 {
		t.Fatal("export-key overwrote an existing file")
	}
	// Every passphrase lost: the exported master key opens the repository
	// and sets a new one.
	lost := map[string]string{"KURA_REPO": dir, "KURA_PASSWORD": "forgotten"}
	if code, _, errs := run(t, lost, "--master-key-file", keyFile, "repo", "key", "add", "--new-password-file", pwFile); code != 0 {
		t.Fatalf("key add with the master key: %s", errs)
	}
	if code, _, errs := run(t, map[string]string{"KURA_REPO": dir, "KURA_PASSWORD": "second passphrase"}, "repo", "key", "list"); code != 0 {
		t.Fatalf("new passphrase after recovery: %s", errs)
	}
	code, out, _ = run(t, env, "verify", "--read-data", "--json")
	var rep map[string]any
	if code != 0 || json.Unmarshal([]byte(lastLine(out)), &rep) != nil || len(rep["problems"].([]any)) != 0 {
		t.Fatalf("verify of an empty repository: %d %s", code, out)
	}
	if code, out, _ := run(t, env, "gc", "--json"); code != 0 || !strings.Contains(out, `"deleted_chunks"`) {
		t.Fatalf("gc --json: %d %s", code, out)
	}
	if code, out, _ := run(t, env, "locks", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("locks after every command finished: %d %s", code, out)
	}
}

func TestBenchmarkPrimitivesJSON(t *testing.T) {
	code, out, errs := run(t, nil, "benchmark", "--primitives", "--json")
	var res struct {
		Primitives []struct {
			Name string  `json:"name"`
			MBps float64 `json:"mb_per_s"`
		} `json:"primitives"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Primitives) < 5 {
		t.Fatalf("benchmark: %d %s %s", code, out, errs)
	}
	for _, p := range res.Primitives {
		if p.MBps <= 0 {
			t.Errorf("%s: %v MB/s", p.Name, p.MBps)
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	dec := json.NewDecoder(strings.NewReader(s))
	var last json.RawMessage
	for dec.More() {
		if dec.Decode(&last) != nil {
			break
		}
	}
	return string(last)
}

// addPoints writes n one-disk points of a VM straight through the
// repository API (no hypervisor needed), one hour apart.
func addPoints(t *testing.T, dir, vm string, n int) []string {
	t.Helper()
	ctx := context.Background()
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, "correct horse", repo.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var ids []string
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		img := bytes.Repeat([]byte{byte(i + 1)}, 3<<20)
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
			Disks: []repo.DiskEntry{{Target: "vda", Size: int64(len(img)), ChunkSize: 1 << 20, Index: id}}}
		if err := w.Commit(ctx, m); err != nil {
			t.Fatal(err)
		}
		w.Close()
		ids = append(ids, m.ID)
	}
	return ids
}

func TestPruneGCAndVerifyFindsCorruption(t *testing.T) {
	dir, env := newRepo(t)
	ids := addPoints(t, dir, "web", 4)
	addPoints(t, dir, "db", 1)

	code, out, errs := run(t, env, "prune", "--keep-last", "2", "--dry-run", "--json")
	var dry struct {
		Removed []string `json:"removed"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &dry) != nil || len(dry.Removed) != 2 {
		t.Fatalf("prune --dry-run: %d %s %s", code, out, errs)
	}
	if n := countPoints(t, env); n != 5 {
		t.Fatalf("dry run removed points: %d left", n)
	}
	// Per VM: web keeps its 2 newest, db its only point.
	if code, _, errs := run(t, env, "prune", "--keep-last", "2", "--gc"); code != 0 {
		t.Fatalf("prune: %s", errs)
	}
	code, out, _ = run(t, env, "points", "list", "--json")
	if code != 0 || strings.Contains(out, ids[0]) || strings.Contains(out, ids[1]) || !strings.Contains(out, ids[3]) || countPoints(t, env) != 3 {
		t.Fatalf("after prune: %s", out)
	}
	if code, _, errs := run(t, env, "verify", "--read-data"); code != 0 {
		t.Fatalf("verify after prune and gc: %s", errs)
	}
	// Deleting by a wrong prefix deletes nothing, even with a good one beside it.
	if code, _, _ := run(t, env, "points", "delete", ids[3], "1999"); code == 0 || countPoints(t, env) != 3 {
		t.Fatal("points delete with a missing point deleted something")
	}
	if code, _, errs := run(t, env, "points", "delete", ids[2], "--gc"); code != 0 || countPoints(t, env) != 2 {
		t.Fatalf("points delete: %s", errs)
	}
	// Flip a byte in one stored chunk: verify names the damage, exit 5.
	var chunk string
	_ = filepath.WalkDir(filepath.Join(dir, "chunks"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && chunk == "" {
			chunk = p
		}
		return nil
	})
	data, err := os.ReadFile(chunk)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(chunk, data, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run(t, env, "verify", "--read-data")
	if code != ExitProblems || !strings.Contains(out, "corrupt") || !strings.Contains(out, "affects point") {
		t.Fatalf("verify of a corrupted chunk: exit %d\n%s", code, out)
	}
}

func countPoints(t *testing.T, env map[string]string) int {
	t.Helper()
	code, out, errs := run(t, env, "points", "list", "--json")
	var points []json.RawMessage
	if code != 0 || json.Unmarshal([]byte(out), &points) != nil {
		t.Fatalf("points list: %d %s", code, errs)
	}
	return len(points)
}
