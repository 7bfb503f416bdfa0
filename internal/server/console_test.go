package server

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/hypervisor/fake"
	"github.com/kurabackup/kura/internal/testenv"
	"github.com/kurabackup/kura/internal/testenv/browser"
)

// xfsDisk builds an XFS image (mkfs.xfs with a protofile: instant, where
// mkfs.ext4 -d takes most of a minute for a large directory) holding
// /etc/motd, /etc/app/app.conf and a directory /big of n empty files.
func xfsDisk(t *testing.T, n int) []byte {
	t.Helper()
	mkfs := testenv.NeedTool(t, "mkfs.xfs")
	dir := t.TempDir()
	src := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var proto strings.Builder
	fmt.Fprintf(&proto, "/dev/null\n0 0\nd--755 0 0\netc d--755 0 0\nmotd ---644 0 0 %s\napp d--755 0 0\napp.conf ---644 0 0 %s\n$\n$\nbig d--755 0 0\n",
		src("motd", "welcome to the console test\n"), src("app.conf", "port = 8080\n"))
	empty := src("empty", "")
	for i := range n {
		fmt.Fprintf(&proto, "file-%05d.txt ---644 0 0 %s\n", i, empty)
	}
	proto.WriteString("$\n$\n")
	img := filepath.Join(dir, "fs.img")
	if out, err := exec.Command(mkfs, "-q", "-f", "-d", "file,name="+img+",size=300m", "-p", src("proto", proto.String())).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v: %s", err, out)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// writeSparse writes the non-zero blocks of img into a fake VM's disk.
func writeSparse(t *testing.T, hv *fake.Connector, vm string, img []byte) {
	t.Helper()
	for off := 0; off < len(img); off += fake.BlockSize {
		blk := img[off:min(len(img), off+fake.BlockSize)]
		if bytes.Count(blk, []byte{0}) == len(blk) {
			continue
		}
		if err := hv.Write(vm, "vda", int64(off), blk); err != nil {
			t.Fatal(err)
		}
	}
}

// consoleServer is a test server with a VM holding a real XFS
// filesystem (db-files, group db), and every group backed up once.
func consoleServer(t *testing.T) (*testServer, string) {
	t.Helper()
	ts := startServer(t)
	img := xfsDisk(t, 20000)
	ts.hv.AddVM(fake.VMSpec{Name: "db-files", UUID: fakeUUID("db-files"), Disks: []fake.DiskSpec{{Target: "vda", Size: int64(len(img))}}})
	writeSparse(t, ts.hv, "db-files", img)
	ts.s.refreshInventory(context.Background())
	ops := ts.login("admin", "admin password", config.RoleOperator)
	for _, g := range []string{"web", "db"} {
		var j catalog.Job
		if code := ts.call(ops, "POST", APIPrefix+"/groups/"+g+"/run", RunRequest{}, &j); code != 202 {
			t.Fatalf("run %s: %d", g, code)
		}
		ts.wait(ops, j.ID)
	}
	return ts, ops
}

// signIn signs in through the console's form.
func signIn(b *browser.Browser, url, user, password string) {
	b.Do(chromedp.Navigate(url+"/#/login"), chromedp.WaitVisible(chromedp.CSS("#l-user")),
		chromedp.SendKeys(chromedp.CSS("#l-user"), user), chromedp.SendKeys(chromedp.CSS("#l-pass"), password),
		chromedp.Click(chromedp.CSS("#l-go")), b.Ready("Dashboard"))
}

// shot writes a screenshot without the passing messages.
func shot(b *browser.Browser, name string) {
	b.Do(chromedp.Evaluate[chromedp.Void](`document.getElementById('messages').replaceChildren()`))
	b.Screenshot(name)
}

func count(b *browser.Browser, sel string) int {
	return browser.Run(b, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
}

// TestConsole drives the console in a real Chromium against a server over
// the fake hypervisor: the dashboard, a VM's points, the file browser on a
// real XFS filesystem (a directory of 20,000 entries paged, a search, a
// text preview, a file and a folder downloaded byte for byte), a restore
// as a new VM through the wizard, a group's retention edited with its
// simulation redrawn, jobs, tokens, and a restore-only user who sees only
// its group.
func TestConsole(t *testing.T) {
	ts, ops := consoleServer(t)
	b := browser.New(t, 1280, 900)
	signIn(b, ts.url, "admin", "admin password")

	// Dashboard: every VM, the db ones ok.
	b.WaitText("table.vms", "db-files")
	if n := count(b, "table.vms tbody tr"); n != 4 {
		t.Errorf("dashboard lists %d VMs, want 4", n)
	}
	if got := b.Text(".t-ok strong"); got != "4" {
		t.Errorf("VMs ok: %s, want 4", got)
	}
	b.WaitText("table.groups", "db")
	shot(b, "dashboard")

	// Points of db-files, then the point.
	var points []catalog.Point
	ts.call(ops, "GET", APIPrefix+"/vms/"+fakeUUID("db-files")+"/points", nil, &points)
	if len(points) != 1 {
		t.Fatalf("points of db-files: %+v", points)
	}
	pid := points[0].ID
	var fl FileList
	if code := ts.call(ops, "GET", APIPrefix+"/points/"+pid+"/files?path=/big&limit=2", nil, &fl); code != 200 || fl.Total != 20000 {
		t.Fatalf("files API: %d %+v", code, fl)
	}
	b.Do(chromedp.Click(chromedp.CSS(`table.vms a[href="#/vms/`+fakeUUID("db-files")+`"]`)), b.Ready("Points"))
	if n := count(b, "svg.timeline circle"); n != 1 {
		t.Errorf("timeline has %d points, want 1", n)
	}
	shot(b, "points")
	// Times are the browser's: in Tokyo, the point's start as Tokyo sees it.
	if _, err := chromedp.Call(b.Context(), emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Tokyo"}); err != nil {
		t.Fatal(err)
	}
	b.Do(chromedp.Reload(), b.Ready("Points"))
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	if got, want := b.Text("main table time"), points[0].Started.In(tokyo).Format("1/2/2006, 3:04:05 PM"); got != want {
		t.Errorf("point time shown as %q, want %q (Asia/Tokyo)", got, want)
	}
	b.WaitText("#foot", "Asia/Tokyo")
	b.Go("#/points/"+pid, "Point")
	b.WaitText("main", "vda")
	shot(b, "point")

	// Files: the big directory is paged.
	b.Go("#/files/"+pid+"?disk=vda&path=%2Fbig", "Files")
	b.WaitText(".pager", "entries 1–200 of 20000")
	if n := count(b, "table.files tbody tr"); n != 200 {
		t.Errorf("a page of /big has %d rows, want 200", n)
	}
	b.Do(chromedp.Click(chromedp.CSS(".pager a")), b.Ready("Files"))
	b.WaitText(".pager", "entries 201–400 of 20000")
	b.WaitText("table.files", "file-00200.txt")
	b.Go("#/files/"+pid+"?disk=vda&path=%2Fbig&name=19999", "Files")
	b.WaitText("table.files", "file-19999.txt")
	// Search below /, preview and download a text file.
	b.Go("#/files/"+pid+"?disk=vda&path=%2F&search=*.conf", "Files")
	b.WaitText("main", "/etc/app/app.conf")
	b.Go("#/files/"+pid+"?disk=vda&path=%2Fetc", "Files")
	b.Do(chromedp.Click(chromedp.CSS(`table.files button.link`)))
	b.WaitText(".preview pre", "welcome to the console test")
	shot(b, "files")
	file, name := b.Download(chromedp.Click(chromedp.CSS(`a[download="motd"]`)))
	if got, _ := os.ReadFile(file); string(got) != "welcome to the console test\n" || name != "motd" {
		t.Errorf("downloaded %s %q", name, got)
	}
	zipFile, name := b.Download(chromedp.Click(chromedp.CSS(`a[href*="format=zip"]`)))
	if name != "etc.zip" {
		t.Errorf("folder downloaded as %q", name)
	}
	if got := zipContents(t, zipFile); got["etc/app/app.conf"] != "port = 8080\n" || got["etc/motd"] != "welcome to the console test\n" {
		t.Errorf("zip of /etc: %v", got)
	}

	// Restore db-1 as a new VM through the wizard.
	cfg, _ := ts.s.config()
	store := cfg.Groups[1].Restore.Storage[0]
	b.Go("#/restore?vm="+fakeUUID("db-1"), "Restore")
	b.SetValue("#r-name", "db-1-console")
	b.SetValue("#r-storage", store)
	b.Do(chromedp.Click(chromedp.CSS("#r-preview")))
	b.WaitText("main", "No conflict")
	shot(b, "restore-preview")
	b.Do(chromedp.Click(chromedp.CSS("#r-go")))
	b.WaitText("#r-result", "Completed")
	shot(b, "restore-done")
	if _, err := ts.hv.LookupVM(context.Background(), "db-1-console"); err != nil {
		t.Errorf("VM restored from the console: %v", err)
	}
	// The same name again: the preview shows the conflict, restore waits.
	b.Go("#/restore?vm="+fakeUUID("db-1"), "Restore")
	b.SetValue("#r-name", "db-1-console")
	b.SetValue("#r-storage", store)
	b.Do(chromedp.Click(chromedp.CSS("#r-preview")))
	b.WaitText("table.conflicts", "db-1-console")
	if disabled := browser.Run(b, chromedp.Evaluate[bool](`document.querySelector('#r-go').disabled`)); !disabled {
		t.Error("restore allowed over a conflict with on_conflict abort")
	}

	// A group's retention: the simulation follows the edit; saving writes
	// the file.
	b.Go("#/groups/web", "Group")
	b.WaitText("#g-sim", "keeps 2 points")
	b.WaitText("#g-preview", "2 VMs match now: web-1, web-2")
	b.WaitText("#g-preview", "name:typo-*") // the selector that matches nothing
	b.SetValue("#g-ret-daily", "7")
	b.WaitText("#g-sim", "keeps 7 points") // last 2 and daily 7 overlap on the newest days
	shot(b, "group")
	b.Do(chromedp.Click(chromedp.CSS("#g-save")))
	b.WaitText("#messages", "Group web saved")
	if back, err := config.Load(ts.cfgPath); err != nil {
		t.Fatal(err)
	} else if g, _ := back.Group("web"); g.Retention.Daily != 7 || g.Retention.Last != 2 {
		t.Errorf("retention saved: %+v", g.Retention)
	}

	// A new group from the editor.
	b.Go("#/groups/+new", "Group")
	b.SetValue("#g-name", "nightly")
	b.SetValue("#g-selectors", "name:db-*")
	b.WaitText("#g-preview", "VMs match now: db-1")
	b.Do(chromedp.Click(chromedp.CSS("#g-save")))
	b.WaitText("#messages", "Group nightly saved")
	if back, err := config.Load(ts.cfgPath); err != nil {
		t.Fatal(err)
	} else if g, ok := back.Group("nightly"); !ok || g.Selectors[0] != "name:db-*" || g.Retention.Daily != 7 || len(g.Schedules) != 1 {
		t.Errorf("group made in the console: %+v", g)
	}

	// Jobs: the history and one job's log.
	b.Go("#/jobs", "Jobs")
	b.WaitText("main", "restore")
	shot(b, "jobs")
	b.Do(chromedp.Click(chromedp.CSS(`main table a[href^="#/jobs/"]`)), b.Ready("Job"))
	b.WaitText("pre.log", "restored")
	shot(b, "job")

	// A token is shown once; the audit log has the restore.
	b.Go("#/tokens", "Tokens")
	b.Do(chromedp.SendKeys(chromedp.CSS("#t-name"), "console-test"), chromedp.Click(chromedp.CSS("form button.primary")),
		chromedp.WaitVisible(chromedp.CSS("#t-secret")))
	if secret := browser.Run(b, chromedp.Value(chromedp.CSS("#t-secret"))); !strings.HasPrefix(secret, "kura_") {
		t.Errorf("token secret %q", secret)
	} else if code := ts.call(secret, "GET", APIPrefix+"/whoami", nil, nil); code != 200 {
		t.Errorf("token made in the console: %d", code)
	}
	b.Go("#/audit?action=restore", "Audit")
	b.WaitText("main", "db-1-console")
	shot(b, "audit")

	// A phone-sized window: the menu folds.
	b.Do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	b.Go("#/", "Dashboard")
	b.Do(chromedp.WaitVisible(chromedp.CSS("#menu")), chromedp.WaitNotVisible(chromedp.CSS("#nav")))
	shot(b, "dashboard-phone")
	b.Do(chromedp.Click(chromedp.CSS("#menu")), chromedp.WaitVisible(chromedp.CSS(`#nav a[href="#/jobs"]`)), chromedp.EmulateReset())

	// The restore-only user of group db sees db's VMs only, and no
	// configuration.
	b.Do(chromedp.Click(chromedp.CSS(".who button")), b.Ready("Sign in"))
	signIn(b, ts.url, "dbteam", "team password")
	b.WaitText("table.vms", "db-1")
	if text := b.Text("main"); strings.Contains(text, "web-1") || strings.Contains(text, "Repositories") {
		t.Errorf("restore user's dashboard shows another group's VM or the repositories:\n%s", text)
	}
	if n := count(b, `#nav a[href="#/groups"], #nav a[href="#/users"], #nav a[href="#/audit"]`); n != 0 {
		t.Errorf("restore user's menu has %d configuration entries", n)
	}
	b.Go("#/vms/"+fakeUUID("web-1"), "Points")
	b.WaitText("main", "no recovery point")
	b.Go("#/groups/web", "Group")
	b.WaitText("main", "may not read group web")
	shot(b, "restore-user")
}

func zipContents(t *testing.T, file string) map[string]string {
	t.Helper()
	zr, err := zip.OpenReader(file)
	if err != nil {
		t.Fatalf("zip: %v", err)
	}
	defer zr.Close()
	out := map[string]string{}
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = io.Copy(&buf, rc)
		rc.Close()
		out[f.Name] = buf.String()
	}
	return out
}
