package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/server"
	"github.com/kurabackup/kura/internal/testenv"
	"github.com/kurabackup/kura/internal/testenv/browser"
)

// TestConsoleEndToEnd drives the web console in a real Chromium against a
// kura server process and a real libvirt guest: sign in, run the group's
// backup from the jobs page, see the VM's newest point on the dashboard,
// open its points, browse the point's filesystem and download a file (the
// same bytes as in the guest), restore the point as a new VM from the
// wizard (it boots with the same files), edit the group's retention and see
// the simulation change, and sign in as another group's restore user, who
// cannot see the VM. Screenshots of each page are the test's artifacts.
func TestConsoleEndToEnd(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	g := env.NewGuest(t, testenv.GuestOptions{Agent: true, Start: true, MemoryMiB: 192, Disks: []testenv.DiskSpec{
		{SizeMiB: 64, Files: map[string][]byte{"hello.txt": []byte("seen through the console\n")}},
	}})
	c := newCLIRepo(t)
	state := t.TempDir()
	store := imageDir(t, env)
	port := freePort(t)
	cfgPath := writeServerConfig(t, port, state, c, fmt.Sprintf(`  - name: web
    selectors: ["name:%s"]
    retries: 0
    rpo: 1h
    retention: {last: 3}
    restore: {storage: [%s]}
  - name: other
    selectors: ["name:%s-nothing-*"]
`, g.Name(), store, g.Name()))
	kura(t, "server", "passwd", "admin", "--config", cfgPath, "--new-password-file", secretFile(t, "admin password"))
	kura(t, "server", "passwd", "otherteam", "--role", "restore", "--group", "other", "--config", cfgPath,
		"--new-password-file", secretFile(t, "team password"))
	sp := launchServer(t, cfgPath, state, port)
	ops := sp.token("admin", "admin password", config.RoleOperator)
	if err := g.WaitAgent(ctx); err != nil {
		t.Fatal(err)
	}
	sh(t, ctx, g, "head -c 300000 /dev/urandom > /mnt/data/console.bin && sync")
	guestSum := strings.Fields(sh(t, ctx, g, "sha256sum /mnt/data/console.bin"))[0]

	b := browser.New(t, 1280, 900)
	b.Timeout = 4 * time.Minute // a TCG guest's backup and restore
	shot := func(name string) {
		b.Do(chromedp.Evaluate[chromedp.Void](`document.getElementById('messages').replaceChildren()`))
		b.Screenshot(name)
	}
	b.Do(chromedp.Navigate(sp.url+"/"), b.Ready("Sign in"))
	shot("sign-in")
	b.Do(chromedp.SendKeys(chromedp.CSS("#l-user"), "admin"), chromedp.SendKeys(chromedp.CSS("#l-pass"), "admin password"),
		chromedp.Click(chromedp.CSS("#l-go")), b.Ready("Dashboard"))

	// Run the group's backup from the jobs page; its page follows it.
	b.Go("#/jobs", "Jobs")
	b.Do(chromedp.Click(chromedp.CSS("main button.primary")), b.Ready("Job"))
	b.WaitText("main h1", "Completed")
	shot("job")
	var points []catalog.Point
	sp.call(ops, "GET", server.APIPrefix+"/points?vm="+g.Name(), nil, &points)
	if len(points) != 1 {
		t.Fatalf("points after the console's backup: %+v", points)
	}
	pid := points[0].ID

	// The dashboard shows the VM with its newest point.
	b.Go("#/", "Dashboard")
	b.Do(chromedp.WaitVisible(chromedp.CSS(`table.vms a[href="#/points/` + pid + `"]`)))
	shot("dashboard")
	b.Do(chromedp.Click(chromedp.CSS(`table.vms a[href="#/vms/`+g.UUID()+`"]`)), b.Ready("Points"))
	b.Do(chromedp.WaitVisible(chromedp.CSS("svg.timeline circle")))
	shot("points")
	b.Do(chromedp.Click(chromedp.CSS(`main table a[href="#/points/`+pid+`"]`)), b.Ready("Point"))
	shot("point")
	b.Do(chromedp.Click(chromedp.CSS(`main a[href="#/files/`+pid+`"]`)), b.Ready("Files"))
	b.WaitText("table.files", "console.bin")
	shot("files")
	file, name := b.Download(chromedp.Click(chromedp.CSS(`a[download="console.bin"]`)))
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != guestSum || name != "console.bin" {
		t.Errorf("downloaded %s (%d bytes) differs from the guest's file", name, len(data))
	}

	// Restore as a new VM from the wizard; it boots with the same files.
	vm := g.Name() + "-c"
	dropVM(t, env, vm)
	b.Go("#/restore?vm="+g.UUID()+"&point="+pid, "Restore")
	b.SetValue("#r-name", vm)
	b.SetValue("#r-storage", store)
	b.Do(chromedp.Click(chromedp.CSS("#r-start")), chromedp.Click(chromedp.CSS("#r-preview")))
	b.WaitText("main", "No conflict")
	b.Do(chromedp.Click(chromedp.CSS("#r-go")))
	b.WaitText("#r-result", "Completed")
	shot("restore")
	ra := agentOf(t, env, vm)
	ra.wait(t, ctx)
	if got := ra.sh(t, ctx, "cat /mnt/data/hello.txt"); got != "seen through the console\n" {
		t.Errorf("restored file: %q", got)
	}

	// The group's retention: the simulation changes as it is edited.
	b.Go("#/groups/web", "Group")
	b.WaitText("#g-sim", "keeps 3 points")
	b.SetValue("#g-ret-daily", "14")
	b.SetValue("#g-ret-monthly", "6")
	b.WaitText("#g-sim", "monthly 6")
	if kept := b.Text("#g-sim-kept"); kept == "3" {
		t.Errorf("the simulation did not change: keeps %s", kept)
	}
	shot("group")
	b.Do(chromedp.Click(chromedp.CSS("#g-save")))
	b.WaitText("#messages", "Group web saved")
	if back, err := config.Load(cfgPath); err != nil {
		t.Fatal(err)
	} else if gr, _ := back.Group("web"); gr.Retention.Daily != 14 || gr.Retention.Monthly != 6 {
		t.Errorf("retention saved: %+v", gr.Retention)
	}

	// Another group's restore user sees none of it.
	b.Do(chromedp.Click(chromedp.CSS(".who button")), b.Ready("Sign in"))
	b.Do(chromedp.SendKeys(chromedp.CSS("#l-user"), "otherteam"), chromedp.SendKeys(chromedp.CSS("#l-pass"), "team password"),
		chromedp.Click(chromedp.CSS("#l-go")), b.Ready("Dashboard"))
	if text := b.Text("main"); strings.Contains(text, g.Name()) || !strings.Contains(text, "No VM to show") {
		t.Errorf("another group's restore user sees the VM:\n%s", text)
	}
	shot("restore-user")
	b.Go("#/points/"+pid, "Point")
	b.WaitText("main", "may not")
	b.Go("#/vms/"+g.UUID(), "Points")
	b.WaitText("main", "no recovery point")
	b.Go("#/restore", "Restore")
	b.WaitText("main", "No VM you may restore")
}
