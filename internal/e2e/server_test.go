package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/notify/notifytest"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/server"
	"github.com/kurabackup/kura/internal/testenv"
)

// serverProc is a kura server running as a child process.
type serverProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	args   []string
	log    *bytes.Buffer
	url    string
	client *http.Client
	state  string
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs "kura server" with args and waits until its API answers over
// TLS verified against the certificate it generated.
// launchServer starts kura server on cfgPath, stopped (its log shown when
// the test failed) at the end of the test.
func launchServer(t *testing.T, cfgPath, state string, port int) *serverProc {
	sp := &serverProc{t: t, args: []string{"--log-level", "info", "server", "--config", cfgPath}, state: state,
		url: fmt.Sprintf("https://127.0.0.1:%d", port)}
	sp.start()
	t.Cleanup(func() {
		sp.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", tail(sp.log.String(), 8000))
		}
	})
	return sp
}

// writeServerConfig writes a server configuration listening on port with
// repository c and the local libvirt, and the groups given (YAML list
// items), and returns its path.
func writeServerConfig(t *testing.T, port int, state string, c *cliRepo, groups string) string {
	p := filepath.Join(t.TempDir(), "kura.yaml")
	cfg := fmt.Sprintf(`server:
  listen: 127.0.0.1:%d
  state_dir: %s
repositories:
  - {name: main, location: %s, password_file: %s}
connections:
  - {name: local, uri: "qemu:///system"}
groups:
`, port, state, c.repo, c.pwFile) + groups
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// secretFile writes s and a newline into a new file (a password file).
func secretFile(t *testing.T, s string) string {
	f := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(f, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (sp *serverProc) start() {
	t := sp.t
	t.Helper()
	enc, _ := json.Marshal(sp.args)
	sp.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperKuraProcess$")
	sp.cmd.Env = append(os.Environ(), helperArgsEnv+"="+string(enc))
	sp.log = &bytes.Buffer{}
	sp.cmd.Stdout, sp.cmd.Stderr = sp.log, sp.log
	if err := sp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if pem, err := os.ReadFile(filepath.Join(sp.state, "tls", "server.crt")); err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			sp.client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			if resp, err := sp.client.Get(sp.url + server.APIPrefix + "/openapi.json"); err == nil {
				resp.Body.Close()
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kura server did not come up: %s", sp.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill SIGKILLs the server process.
func (sp *serverProc) kill() {
	_ = sp.cmd.Process.Signal(syscall.SIGKILL)
	_ = sp.cmd.Wait()
}

// stop ends the server with SIGTERM.
func (sp *serverProc) stop() {
	if sp.cmd == nil || sp.cmd.ProcessState != nil {
		return
	}
	_ = sp.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = sp.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		sp.kill()
	}
}

func (sp *serverProc) call(token, method, path string, body, out any) int {
	sp.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, sp.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := sp.client.Do(req)
	if err != nil {
		sp.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			sp.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	if resp.StatusCode >= 300 {
		sp.t.Logf("%s %s -> %d %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	return resp.StatusCode
}

// token signs in as user and makes an API token of role ("" = the user's).
func (sp *serverProc) token(user, password, role string) string {
	sp.t.Helper()
	b, _ := json.Marshal(server.LoginRequest{User: user, Password: password})
	resp, err := sp.client.Post(sp.url+server.APIPrefix+"/login", "application/json", bytes.NewReader(b))
	if err != nil || resp.StatusCode != 200 {
		sp.t.Fatalf("login %s: %v %v", user, resp.StatusCode, err)
	}
	var lr server.LoginResponse
	_ = json.NewDecoder(resp.Body).Decode(&lr)
	resp.Body.Close()
	b, _ = json.Marshal(server.TokenRequest{Name: "e2e", Role: role})
	req, _ := http.NewRequest("POST", sp.url+server.APIPrefix+"/tokens", bytes.NewReader(b))
	req.Header.Set("X-Kura-CSRF", lr.CSRF)
	for _, c := range resp.Cookies() {
		req.AddCookie(c)
	}
	resp, err = sp.client.Do(req)
	if err != nil || resp.StatusCode != 201 {
		sp.t.Fatalf("token of %s: %v %v", user, resp.StatusCode, err)
	}
	defer resp.Body.Close()
	var tr server.TokenResponse
	_ = json.NewDecoder(resp.Body).Decode(&tr)
	return tr.Secret
}

// waitJob polls a job until it ends.
func (sp *serverProc) waitJob(token, id string, within time.Duration) catalog.Job {
	sp.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var j catalog.Job
		if code := sp.call(token, "GET", server.APIPrefix+"/jobs/"+id, nil, &j); code != 200 {
			sp.t.Fatalf("job %s: %d", id, code)
		}
		if j.State.Final() {
			return j
		}
		if time.Now().After(deadline) {
			sp.t.Fatalf("job %s still %s after %v: %s", id, j.State, within, tail(sp.log.String(), 3000))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestServerEndToEnd runs kura server as a process against a real libvirt
// guest: its schedule (every minute) makes points; the API lists them to an
// operator and refuses them to another group's restore user; a restore
// through the API boots with the same files; a VM whose backup fails is
// reported; /metrics shows the newest point; a server killed in the middle
// of a job restarts, marks the job interrupted, cleans up, and its next
// scheduled run succeeds incrementally.
func TestServerEndToEnd(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	dir := imageDir(t, env)
	vdbPath, _ := randomQcow2(t, dir, "vdb", 192<<20)
	g := env.NewGuest(t, testenv.GuestOptions{Agent: true, Start: true, MemoryMiB: 192, Disks: []testenv.DiskSpec{
		{SizeMiB: 64, Files: map[string][]byte{"hello.txt": []byte("served by kura server\n")}},
		{Target: "vdb", Path: vdbPath},
	}})
	broken := env.NewGuest(t, testenv.GuestOptions{Disks: []testenv.DiskSpec{{SizeMiB: 16}}})
	if err := os.Remove(broken.DiskPath("vda")); err != nil {
		t.Fatal(err)
	}
	c := newCLIRepo(t)
	state := t.TempDir()
	store := imageDir(t, env)
	port := freePort(t)
	cfgPath := writeServerConfig(t, port, state, c, fmt.Sprintf(`  - name: web
    selectors: ["name:%s"]
    retries: 0
    rpo: 1h
    schedules:
      - {kind: backup, every: 1m}
    restore: {storage: [%s]}
  - name: broken
    selectors: ["name:%s"]
    retries: 0
`, g.Name(), store, broken.Name()))
	// Failures of group broken go by e-mail (a real exim) and webhook.
	exim := notifytest.StartExim(t, testenv.NeedTool(t, "exim4"))
	hook := notifytest.NewReceiver(t, false)
	conf, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	conf.Notifications = notify.Config{SMTP: exim.SMTP(),
		Webhooks: []notify.WebhookConfig{{Name: "ops", URL: hook.URL, SecretFile: hook.SecretFile}},
		Rules: []notify.Rule{{Events: []notify.EventKind{notify.JobFailed}, Groups: []string{"broken"},
			Email: []string{"ops@test.example"}, Webhooks: []string{"ops"}}}}
	if err := conf.Save(cfgPath); err != nil {
		t.Fatal(err)
	}
	kura(t, "server", "passwd", "admin", "--config", cfgPath, "--new-password-file", secretFile(t, "admin password"))
	kura(t, "server", "passwd", "brokenteam", "--role", "restore", "--group", "broken", "--config", cfgPath,
		"--new-password-file", secretFile(t, "team password"))
	kura(t, "server", "check", "--config", cfgPath)

	sp := launchServer(t, cfgPath, state, port)
	ops := sp.token("admin", "admin password", config.RoleOperator)
	team := sp.token("brokenteam", "team password", "")
	if err := g.WaitAgent(ctx); err != nil {
		t.Fatal(err)
	}

	// The schedule makes a point within its first minute.
	var first catalog.Point
	deadline := time.Now().Add(150 * time.Second)
	for first.ID == "" {
		var ps []catalog.Point
		sp.call(ops, "GET", server.APIPrefix+"/points?vm="+g.Name(), nil, &ps)
		if len(ps) > 0 {
			first = ps[len(ps)-1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no scheduled point after 150 s: %s", tail(sp.log.String(), 4000))
		} else {
			time.Sleep(time.Second)
		}
	}
	if first.Kind != "full" || first.Consistency != "application" || !strings.Contains(strings.Join(first.Tags, ","), "group:web") {
		t.Errorf("first scheduled point %+v", first)
	}

	// Another group's restore user: 403 on the point, no backup.
	if code := sp.call(team, "GET", server.APIPrefix+"/points/"+first.ID, nil, nil); code != http.StatusForbidden {
		t.Errorf("restore user of group broken reads a point of web: %d", code)
	}
	if code := sp.call(team, "POST", server.APIPrefix+"/groups/web/run", server.RunRequest{}, nil); code != http.StatusForbidden {
		t.Errorf("restore user starts a backup: %d", code)
	}
	if code := sp.call(team, "POST", server.APIPrefix+"/points/"+first.ID+"/restore", server.RestoreRequest{Name: "x", Storage: store}, nil); code != http.StatusForbidden {
		t.Errorf("restore user restores another group's point: %d", code)
	}

	// A VM whose backup fails: the job says so.
	var j catalog.Job
	if code := sp.call(ops, "POST", server.APIPrefix+"/groups/broken/run", server.RunRequest{}, &j); code != http.StatusAccepted {
		t.Fatal(code)
	}
	if j = sp.waitJob(ops, j.ID, 2*time.Minute); j.State != phase.Failed || len(j.VMs) != 1 || j.VMs[0].Error == "" {
		t.Errorf("backup of the broken VM: %+v", j)
	}
	if reqs := hook.Wait(t, 1); reqs[0].SigErr != nil || reqs[0].PayloadErr != nil || reqs[0].Payload.Kind != notify.JobFailed ||
		reqs[0].Payload.Group != "broken" {
		t.Errorf("webhook for the failed job: %+v", reqs[0])
	}
	if msgs := exim.Messages(t, 1); !strings.Contains(msgs[0].Header.Get("Subject"), "broken") ||
		!strings.Contains(msgs[0].Body, broken.Name()) {
		t.Errorf("e-mail for the failed job: %s\n%s", msgs[0].Header.Get("Subject"), msgs[0].Body)
	}

	// Restore through the API, as a new VM that boots with the same files.
	name := g.Name() + "-r"
	dropVM(t, env, name)
	if code := sp.call(ops, "POST", server.APIPrefix+"/points/"+first.ID+"/restore",
		server.RestoreRequest{Name: name, Storage: store, Start: true}, &j); code != http.StatusAccepted {
		t.Fatal(code)
	}
	if j = sp.waitJob(ops, j.ID, 4*time.Minute); j.State != phase.Completed {
		t.Fatalf("restore job %+v", j)
	}
	ra := agentOf(t, env, name)
	ra.wait(t, ctx)
	if got := ra.sh(t, ctx, "cat /mnt/data/hello.txt"); got != "served by kura server\n" {
		t.Errorf("restored file: %q", got)
	}

	// Boot verification (a boot-verify run of the group): the newest point
	// boots isolated, its probe passes, the VM's status names it.
	if code := sp.call(ops, "POST", server.APIPrefix+"/groups/web/run", server.RunRequest{Kind: "boot-verify",
		Probes: []string{"exec:cat /mnt/data/hello.txt => served by kura server"}}, &j); code != http.StatusAccepted {
		t.Fatal(code)
	}
	if j = sp.waitJob(ops, j.ID, 6*time.Minute); j.State != phase.Completed {
		t.Fatalf("boot-verify job %+v\n%s", j, j.Summary)
	}
	var vms []server.VMStatus
	sp.call(ops, "GET", server.APIPrefix+"/vms", nil, &vms)
	if i := slices.IndexFunc(vms, func(v server.VMStatus) bool { return v.UUID == g.UUID() }); i < 0 || vms[i].VerifiedBoot == "" || vms[i].VerifiedBootAt.IsZero() {
		t.Errorf("status after boot verification: %+v", vms)
	}

	// Metrics: the newest good point of the guest.
	req, _ := http.NewRequest("GET", sp.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+ops)
	resp, err := sp.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf(`kura_vm_newest_good_point_timestamp_seconds{uuid=%q,vm=%q}`, g.UUID(), g.Name())
	if !bytes.Contains(metrics, []byte(want)) {
		t.Errorf("metrics lack %s:\n%s", want, metrics)
	}

	// Kill the server in the middle of a (full) backup; restart it.
	if code := sp.call(ops, "POST", server.APIPrefix+"/groups/web/run", server.RunRequest{Full: true}, &j); code != http.StatusAccepted {
		t.Fatal(code)
	}
	killed := j.ID
	sp.waitProgress(ops, killed, "vdb")
	sp.kill()
	sp.start()
	if j = sp.waitJob(ops, killed, 30*time.Second); j.State != phase.Failed || !strings.Contains(j.Error, "interrupted") {
		t.Fatalf("job killed with the server: %+v", j)
	}
	// The next scheduled run is incremental from the last good point.
	deadline = time.Now().Add(150 * time.Second)
	for {
		var list server.JobList
		sp.call(ops, "GET", server.APIPrefix+"/jobs?group=web&kind=backup&limit=1", nil, &list)
		if len(list.Jobs) == 1 && list.Jobs[0].ID != killed && list.Jobs[0].State.Final() &&
			strings.HasPrefix(list.Jobs[0].Trigger, "schedule:") {
			j = list.Jobs[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled run after the restart: %s", tail(sp.log.String(), 4000))
		}
		time.Sleep(time.Second)
	}
	var sum struct {
		Connections []struct {
			Report engine.BackupReport `json:"report"`
		} `json:"connections"`
	}
	if err := json.Unmarshal(j.Summary, &sum); err != nil || len(sum.Connections) != 1 || len(sum.Connections[0].Report.VMs) != 1 {
		t.Fatalf("summary of the run after the restart: %s %v", j.Summary, err)
	}
	p := sum.Connections[0].Report.VMs[0].Point
	if j.State != phase.Completed || p == nil || p.Kind != "incremental" {
		t.Fatalf("run after the restart: %s, point %+v", j.State, p)
	}
}

// waitProgress follows a job's events until a disk makes progress.
func (sp *serverProc) waitProgress(token, id, disk string) {
	sp.t.Helper()
	req, _ := http.NewRequest("GET", sp.url+server.APIPrefix+"/jobs/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := sp.client.Do(req)
	if err != nil {
		sp.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Kind, Disk string
			Done       int64
		}
		if json.Unmarshal([]byte(data), &ev) == nil && ev.Kind == "disk-progress" && ev.Disk == disk && ev.Done > 0 {
			return
		}
		if ev.Kind == "job-done" {
			sp.t.Fatalf("job %s ended before it could be killed", id)
		}
	}
	sp.t.Fatalf("events of job %s ended without progress: %v", id, sc.Err())
}
