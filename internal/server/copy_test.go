package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/repo"
)

// TestCopyJobs: a group's copy job puts its points into an off-site
// repository with its own retention; a point the home repository prunes
// stays listed (its copy) and restores from there; the server's own point
// goes along, so the off-site repository alone can rebuild the server.
func TestCopyJobs(t *testing.T) {
	offsite := filepath.Join(t.TempDir(), "offsite")
	initTestRepo(t, offsite)
	ts := startServerWith(t, nil, func(cfg string) string {
		i := strings.Index(cfg, "  - {name: main, location: ")
		line := cfg[i : i+strings.Index(cfg[i:], "\n")+1]
		pw := line[strings.Index(line, "password_file: ")+len("password_file: ") : strings.LastIndex(line, "}")]
		cfg = strings.Replace(cfg, line, line+fmt.Sprintf("  - {name: offsite, location: %s, password_file: %s}\n", offsite, pw), 1)
		cfg = strings.Replace(cfg, `    selectors: ["name:web-*", "name:typo-*"]`, "    repository: main\n    selectors: [\"name:web-*\"]", 1)
		cfg = strings.Replace(cfg, "    retention: {last: 2}", "    retention: {last: 1}\n    copies: [{to: offsite, retention: {last: 3}}]", 1)
		return strings.Replace(cfg, "  - name: db", "  - name: db\n    repository: main", 1)
	})
	ops := ts.login("admin", "admin password", config.RoleOperator)
	run := func(kind string) catalog.Job {
		t.Helper()
		var j catalog.Job
		if code := ts.call(ops, "POST", APIPrefix+"/groups/web/run", RunRequest{Kind: kind}, &j); code != http.StatusAccepted {
			t.Fatalf("run %s: %d", kind, code)
		}
		if j = ts.wait(ops, j.ID); j.State != phase.Completed {
			t.Fatalf("%s job: %+v", kind, j)
		}
		return j
	}
	run("backup")
	run("backup")
	run("copy")
	var points []catalog.Point
	ts.call(ops, "GET", APIPrefix+"/points?group=web", nil, &points)
	if len(points) != 4 {
		t.Fatalf("points after the copy: %+v", points)
	}
	offID := ts.s.repositories()["offsite"].Config().ID
	for _, p := range points {
		if !slices.Equal(p.Copies, []string{offID}) {
			t.Errorf("point %s copies %v, want [%s]", p.ID, p.Copies, offID)
		}
	}
	// Home keeps one point per VM: the older ones live on off-site.
	run("prune")
	ts.call(ops, "GET", APIPrefix+"/points?group=web", nil, &points)
	if len(points) != 4 {
		t.Fatalf("points after the home prune: %+v", points)
	}
	var oldest catalog.Point
	for _, p := range points {
		if p.RepoID == offID && len(p.Copies) == 0 && p.VMName == "web-1" {
			oldest = p
		}
	}
	if oldest.ID == "" {
		t.Fatalf("no web-1 point lives only off-site: %+v", points)
	}
	home := ts.s.repositories()["main"]
	if _, err := home.LoadPoint(context.Background(), oldest.ID); err == nil {
		t.Fatalf("point %s still at home", oldest.ID)
	}
	var j catalog.Job
	store := t.TempDir()
	if code := ts.call(ops, "POST", APIPrefix+"/points/"+oldest.ID+"/restore", RestoreRequest{Name: "web-1-old", Storage: store, Format: "raw"}, &j); code != http.StatusAccepted {
		t.Fatalf("restore from off-site: %d", code)
	}
	if j = ts.wait(ops, j.ID); j.State != phase.Completed {
		t.Fatalf("restore from off-site: %+v", j)
	}
	images, _ := filepath.Glob(filepath.Join(store, "*"))
	if len(images) != 1 {
		t.Fatalf("restored images: %v", images)
	}
	if got, err := os.ReadFile(images[0]); err != nil || !strings.HasPrefix(string(got), "web-1web-1") {
		t.Fatalf("restored disk %s: %v", images[0], err)
	}
	// The server's own point is off-site too.
	ms, err := ts.s.repositories()["offsite"].ListPoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ms, func(m *repo.Manifest) bool { return m.VM.Hypervisor == ServerHypervisor }) {
		t.Error("no server point in the off-site repository")
	}
}
