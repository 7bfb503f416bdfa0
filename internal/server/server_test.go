package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/fake"
	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/notify/notifytest"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/storage/local"
)

const testPassword = "repo passphrase"

// testServer is a kura server on loopback over a fake hypervisor and a
// real local repository, with its API client.
type testServer struct {
	t       *testing.T
	s       *Server
	url     string
	client  *http.Client
	hv      *fake.Connector
	cfgPath string
	cancel  context.CancelFunc
	done    chan error
}

func writeConfig(t testing.TB, dir string, edit func(string) string) string {
	t.Helper()
	repoDir := filepath.Join(dir, "repo")
	initTestRepo(t, repoDir)
	pwFile := filepath.Join(dir, "repo.pass")
	if err := os.WriteFile(pwFile, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	adminHash, _ := auth.HashPassword("admin password")
	teamHash, _ := auth.HashPassword("team password")
	cfg := fmt.Sprintf(`server:
  state_dir: %s
repositories:
  - {name: main, location: %s, password_file: %s}
connections:
  - {name: fake, uri: "fake:///"}
groups:
  - name: web
    selectors: ["name:web-*", "name:typo-*"]
    retries: 0
    rpo: 1h
    retention: {last: 2}
  - name: db
    selectors: ["name:db-*"]
    retries: 0
    restore:
      storage: [%s]
users:
  - {name: admin, role: admin, password_hash: "%s"}
  - {name: dbteam, role: restore, groups: [db], password_hash: "%s"}
`, filepath.Join(dir, "state"), repoDir, pwFile, filepath.Join(dir, "restore"), adminHash, teamHash)
	if edit != nil {
		cfg = edit(cfg)
	}
	path := filepath.Join(dir, "kura.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// initTestRepo creates an encrypted repository with testPassword in dir.
func initTestRepo(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(context.Background(), be, repo.InitOptions{Password: testPassword, Encrypt: true, ChunkSize: 64 << 10,
		KDF: repo.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

func startServer(t *testing.T) *testServer { return startServerWith(t, nil, nil) }

// startServerWith starts a server with a clock (nil: real time) and an
// edit of its configuration.
func startServerWith(t *testing.T, now func() time.Time, edit func(string) string) *testServer {
	t.Helper()
	dir := t.TempDir()
	hv := fake.New()
	for _, name := range []string{"web-1", "web-2", "db-1"} {
		vm := hv.AddVM(fake.VMSpec{Name: name, UUID: fakeUUID(name), Disks: []fake.DiskSpec{{Target: "vda", Size: 1 << 20}}})
		if err := hv.Write(vm.Name, "vda", 0, bytes.Repeat([]byte(name), 4096)); err != nil {
			t.Fatal(err)
		}
	}
	ts := &testServer{t: t, hv: hv, cfgPath: writeConfig(t, dir, edit), done: make(chan error, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	ts.s, err = New(ctx, Options{ConfigPath: ts.cfgPath, Logger: log, Listener: ln, Tick: 50 * time.Millisecond, Now: now,
		Connect: func(context.Context, config.Connection, *slog.Logger) (hypervisor.Connector, error) { return hv, nil },
		OpenRepository: func(ctx context.Context, rc config.Repository, log *slog.Logger) (*repo.Repository, error) {
			pw, err := rc.Password()
			if err != nil {
				return nil, err
			}
			be, err := local.Open(rc.Location)
			if err != nil {
				return nil, err
			}
			return repo.Open(ctx, be, pw, repo.OpenOptions{Logger: log})
		}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { ts.done <- ts.s.Run(ctx) }()
	ts.url = "https://" + ln.Addr().String()
	ts.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test of a self-signed server
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) stop() {
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	ts.cancel = nil
	if err := <-ts.done; err != nil {
		ts.t.Errorf("server Run: %v", err)
	}
	_ = ts.s.Close()
}

func fakeUUID(name string) string {
	var b [16]byte
	copy(b[:], name)
	return fmt.Sprintf("%x-%x-4%x-8%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])[:36]
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// call makes an API request with a bearer token ("" for none) and decodes
// the JSON answer into out; it returns the status.
func (ts *testServer) call(token, method, path string, body, out any) int {
	ts.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, ts.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			ts.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	if resp.StatusCode >= 300 {
		ts.t.Logf("%s %s -> %d %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	return resp.StatusCode
}

// login signs in and makes a token (tokens are made by signed-in users).
func (ts *testServer) login(user, password, role string) string {
	ts.t.Helper()
	jar := &cookieClient{ts: ts}
	var lr LoginResponse
	if code := jar.do("POST", APIPrefix+"/login", LoginRequest{User: user, Password: password}, &lr); code != 200 {
		ts.t.Fatalf("login %s: %d", user, code)
	}
	var tr TokenResponse
	if code := jar.do("POST", APIPrefix+"/tokens", TokenRequest{Name: "test", Role: role}, &tr, csrfHeader, lr.CSRF); code != 201 {
		ts.t.Fatalf("token of %s: %d", user, code)
	}
	return tr.Secret
}

type cookieClient struct {
	ts     *testServer
	cookie *http.Cookie
}

func (c *cookieClient) do(method, path string, body, out any, headers ...string) int {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, c.ts.url+path, bytes.NewReader(b))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	resp, err := c.ts.client.Do(req)
	if err != nil {
		c.ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			c.cookie = ck
		}
	}
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		_ = json.Unmarshal(data, out)
	}
	return resp.StatusCode
}

// wait polls a job until it ends.
func (ts *testServer) wait(token, id string) catalog.Job {
	ts.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var j catalog.Job
		if code := ts.call(token, "GET", APIPrefix+"/jobs/"+id, nil, &j); code != 200 {
			ts.t.Fatalf("job %s: %d", id, code)
		}
		if j.State.Final() {
			return j
		}
		if time.Now().After(deadline) {
			ts.t.Fatalf("job %s still %s", id, j.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestServerAPI(t *testing.T) {
	ts := startServer(t)
	admin := ts.login("admin", "admin password", "")
	ops := ts.login("admin", "admin password", config.RoleOperator)
	team := ts.login("dbteam", "team password", "")

	if code := ts.call("", "GET", APIPrefix+"/vms", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d", code)
	}
	if code := ts.call("kura_bogus_token", "GET", APIPrefix+"/vms", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("bad token: %d", code)
	}
	var who Whoami
	if ts.call(ops, "GET", APIPrefix+"/whoami", nil, &who); who.Role != config.RoleOperator || who.User != "admin" {
		t.Errorf("operator token of an admin: %+v", who)
	}

	// A backup of group web, run now through the API: the typo selector
	// is a failed item, so the job ends PartiallyFailed.
	var j catalog.Job
	if code := ts.call(ops, "POST", APIPrefix+"/groups/web/run", RunRequest{Kind: "backup"}, &j); code != http.StatusAccepted {
		t.Fatalf("run web: %d", code)
	}
	j = ts.wait(ops, j.ID)
	if j.State != phase.PartiallyFailed || len(j.VMs) != 3 {
		t.Fatalf("web backup job: %+v", j)
	}
	var lines []catalog.LogLine
	if ts.call(ops, "GET", APIPrefix+"/jobs/"+j.ID+"/log", nil, &lines); len(lines) < 3 {
		t.Errorf("job log: %+v", lines)
	}
	if code := ts.call(ops, "POST", APIPrefix+"/groups/db/run", RunRequest{}, &j); code != http.StatusAccepted {
		t.Fatal(code)
	}
	if j = ts.wait(ops, j.ID); j.State != phase.Completed {
		t.Fatalf("db backup: %+v", j)
	}
	var points []catalog.Point
	ts.call(ops, "GET", APIPrefix+"/points", nil, &points)
	if len(points) != 3 {
		t.Fatalf("points: %+v", points)
	}
	var webPoint, dbPoint string
	for _, p := range points {
		switch pointGroup(p.Tags) {
		case "web":
			webPoint = p.ID
		case "db":
			dbPoint = p.ID
		}
	}

	// The restore user sees only its group, gets 403 or 404 elsewhere.
	var vms []VMStatus
	ts.call(team, "GET", APIPrefix+"/vms", nil, &vms)
	if len(vms) != 1 || vms[0].Name != "db-1" || vms[0].Status != StatusOK {
		t.Errorf("restore user's VMs: %+v", vms)
	}
	ts.call(team, "GET", APIPrefix+"/points", nil, &points)
	if len(points) != 1 || points[0].ID != dbPoint {
		t.Errorf("restore user's points: %+v", points)
	}
	if code := ts.call(team, "GET", APIPrefix+"/points/"+webPoint, nil, nil); code != http.StatusForbidden {
		t.Errorf("another group's point: %d", code)
	}
	if code := ts.call(team, "POST", APIPrefix+"/groups/db/run", RunRequest{}, nil); code != http.StatusForbidden {
		t.Errorf("restore user runs a backup: %d", code)
	}
	if code := ts.call(team, "POST", APIPrefix+"/points/"+webPoint+"/restore", RestoreRequest{Name: "x"}, nil); code != http.StatusForbidden {
		t.Errorf("restore of another group's point: %d", code)
	}
	if code := ts.call(team, "POST", APIPrefix+"/points/"+dbPoint+"/restore", RestoreRequest{Name: "db-copy", Storage: "/etc"}, nil); code != http.StatusForbidden {
		t.Errorf("restore into /etc: %d", code)
	}
	if code := ts.call(team, "PUT", APIPrefix+"/groups/db", config.Group{Selectors: []string{"any:"}}, nil); code != http.StatusForbidden {
		t.Errorf("restore user changes a group: %d", code)
	}
	// Within its rights, it restores.
	cfg, _ := ts.s.config()
	store := cfg.Groups[1].Restore.Storage[0]
	if code := ts.call(team, "POST", APIPrefix+"/points/"+dbPoint+"/restore", RestoreRequest{Name: "db-copy", Storage: store}, &j); code != http.StatusAccepted {
		t.Fatalf("restore within the rights: %d", code)
	}
	if j = ts.wait(team, j.ID); j.State != phase.Completed {
		t.Fatalf("restore job: %+v", j)
	}
	if _, err := ts.hv.LookupVM(context.Background(), "db-copy"); err != nil {
		t.Errorf("restored VM: %v", err)
	}
	// Export: into the group's storage only, the disk byte for byte.
	if code := ts.call(team, "POST", APIPrefix+"/points/"+webPoint+"/export", ExportRequest{Out: filepath.Join(store, "w")}, nil); code != http.StatusForbidden {
		t.Errorf("export of another group's point: %d", code)
	}
	if code := ts.call(team, "POST", APIPrefix+"/points/"+dbPoint+"/export", ExportRequest{Out: t.TempDir()}, nil); code != http.StatusForbidden {
		t.Errorf("export outside the group's storage: %d", code)
	}
	if code := ts.call(team, "POST", APIPrefix+"/points/"+dbPoint+"/export", ExportRequest{Out: "relative"}, nil); code != http.StatusBadRequest {
		t.Errorf("export to a relative path: %d", code)
	}
	out := filepath.Join(store, "export")
	if code := ts.call(team, "POST", APIPrefix+"/points/"+dbPoint+"/export", ExportRequest{Out: out, Format: "raw"}, &j); code != http.StatusAccepted {
		t.Fatalf("export within the rights: %d", code)
	}
	if j = ts.wait(team, j.ID); j.State != phase.Completed {
		t.Fatalf("export job: %+v", j)
	}
	images, _ := filepath.Glob(filepath.Join(out, "*.raw"))
	want := make([]byte, 1<<20)
	copy(want, bytes.Repeat([]byte("db-1"), 4096))
	if len(images) != 1 {
		t.Fatalf("exported images %v", images)
	}
	if got, err := os.ReadFile(images[0]); err != nil || !bytes.Equal(got, want) {
		t.Errorf("exported image %s differs from the disk (%v)", images[0], err)
	}

	// The admin changes the configuration through the API: written back
	// to the file, in the audit log.
	if code := ts.call(admin, "PUT", APIPrefix+"/groups/new", config.Group{Selectors: []string{"any:"}, RPO: config.Duration(26 * time.Hour)}, nil); code != 200 {
		t.Fatalf("put group: %d", code)
	}
	back, err := config.Load(ts.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := back.Group("new"); !ok || g.RPO.D() != 26*time.Hour {
		t.Errorf("group not written back: %+v", back.Groups)
	}
	if code := ts.call(admin, "PUT", APIPrefix+"/groups/bad", config.Group{Selectors: []string{"any:"}, Schedules: []config.Sched{{Kind: "bakup", Every: config.Duration(time.Hour)}}}, nil); code != http.StatusBadRequest {
		t.Errorf("invalid group accepted: %d", code)
	}
	var entries []catalog.AuditEntry
	ts.call(admin, "GET", APIPrefix+"/audit", nil, &entries)
	actions := map[string]string{}
	for _, e := range entries {
		actions[e.Action] += e.Outcome + " "
	}
	if !strings.Contains(actions["group.put"], "ok") || !strings.Contains(actions["restore"], "ok") ||
		!strings.Contains(actions["restore"], "denied") || !strings.Contains(actions["login"], "ok") {
		t.Errorf("audit actions: %v", actions)
	}
	if code := ts.call(ops, "GET", APIPrefix+"/audit", nil, nil); code != http.StatusForbidden {
		t.Errorf("operator reads the audit log: %d", code)
	}

	// Metrics, for a principal that sees everything.
	req, _ := http.NewRequest("GET", ts.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+ops)
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte(`kura_vm_newest_good_point_timestamp_seconds{uuid="`)) || !bytes.Contains(body, []byte(`kura_jobs_total{kind="backup",state="Completed"} 1`)) {
		t.Errorf("metrics:\n%s", body)
	}
	req.Header.Set("Authorization", "Bearer "+team)
	if resp, err := ts.client.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("restore user scrapes metrics: %v %v", resp.StatusCode, err)
	}
}

// TestJobEvents follows a job's progress as Server-Sent Events.
func TestJobEvents(t *testing.T) {
	ts := startServer(t)
	ops := ts.login("admin", "admin password", config.RoleOperator)
	var j catalog.Job
	if code := ts.call(ops, "POST", APIPrefix+"/groups/db/run", RunRequest{}, &j); code != http.StatusAccepted {
		t.Fatal(code)
	}
	req, _ := http.NewRequest("GET", ts.url+APIPrefix+"/jobs/"+j.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+ops)
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var kinds []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if k, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 || kinds[len(kinds)-1] != "job-done" {
		t.Fatalf("events %v", kinds)
	}
}

// TestOpenAPIMatchesRoutes: the document lists every route and only them.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	ts := startServer(t)
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if code := ts.call("", "GET", APIPrefix+"/openapi.json", nil, &doc); code != 200 || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi: %d %q", code, doc.OpenAPI)
	}
	n := 0
	for _, rt := range ts.s.table() {
		if _, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]; !ok {
			t.Errorf("%s %s is routed but not documented", rt.method, rt.path)
		}
		n++
	}
	documented := 0
	for path, ops := range doc.Paths {
		documented += len(ops)
		// Every documented path answers something other than "no such endpoint".
		for method := range ops {
			p := pathParamRE.ReplaceAllString(path, "x")
			req, _ := http.NewRequest(strings.ToUpper(method), ts.url+p, nil)
			resp, err := ts.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if bytes.Contains(data, []byte("no such endpoint")) {
				t.Errorf("%s %s is documented but not routed", method, path)
			}
		}
	}
	if documented != n {
		t.Errorf("%d routes, %d documented operations", n, documented)
	}
}

// TestPolicyAndCapacity: the simulation and capacity endpoints.
func TestPolicyAndCapacity(t *testing.T) {
	ts := startServer(t)
	ops := ts.login("admin", "admin password", config.RoleOperator)
	var sim struct {
		Kept    int            `json:"kept"`
		PerRule map[string]int `json:"per_rule"`
	}
	req := SimulateRequest{Retention: config.Retention{Daily: 7, Weekly: 4, Monthly: 12}, Span: config.Duration(400 * 24 * time.Hour)}
	if code := ts.call(ops, "POST", APIPrefix+"/policy/simulate", req, &sim); code != 200 || sim.Kept < 12 || sim.Kept > 23 || sim.PerRule["daily"] != 7 || sim.PerRule["weekly"] != 4 || sim.PerRule["monthly"] != 12 {
		t.Fatalf("simulation: %d %+v", code, sim)
	}
	if code := ts.call(ops, "POST", APIPrefix+"/policy/simulate", SimulateRequest{}, nil); code != http.StatusBadRequest {
		t.Errorf("empty policy simulated: %d", code)
	}
	var j catalog.Job
	ts.call(ops, "POST", APIPrefix+"/groups/db/run", RunRequest{}, &j)
	ts.wait(ops, j.ID)
	var caps []RepositoryCapacity
	if code := ts.call(ops, "GET", APIPrefix+"/capacity", nil, &caps); code != 200 || len(caps) != 1 || len(caps[0].Groups) != 2 {
		t.Fatalf("capacity: %d %+v", code, caps)
	}
	for _, g := range caps[0].Groups {
		if g.Group == "db" && (g.VMs != 1 || g.StoredBytes == 0 || g.Expected1Year < g.StoredBytes) {
			t.Errorf("capacity of db: %+v", g)
		}
	}
}

// TestScheduleFires: with an injected clock, an "every" schedule queues a
// backup when its slot comes, not before.
func TestScheduleFires(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 1, 10, 0, 30, 0, time.UTC)}
	ts := startServerWith(t, clock.Now, func(cfg string) string {
		return strings.Replace(cfg, "    rpo: 1h\n", "    rpo: 1h\n    schedules:\n      - {kind: backup, every: 1h}\n", 1)
	})
	ops := ts.login("admin", "admin password", config.RoleOperator)
	count := func() int {
		var list JobList
		ts.call(ops, "GET", APIPrefix+"/jobs?group=web&kind=backup", nil, &list)
		return len(list.Jobs)
	}
	time.Sleep(300 * time.Millisecond)
	if n := count(); n != 0 {
		t.Fatalf("%d jobs before the slot", n)
	}
	clock.set(time.Date(2026, 12, 1, 11, 0, 1, 0, time.UTC))
	deadline := time.Now().Add(10 * time.Second)
	for count() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no job queued at the slot")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var list JobList
	ts.call(ops, "GET", APIPrefix+"/jobs?group=web&kind=backup", nil, &list)
	if j := list.Jobs[0]; !strings.HasPrefix(j.Trigger, "schedule:web/backup/") {
		t.Errorf("scheduled job %+v", j)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// TestNotifyTestEndpoint sends a test notification to a real webhook
// listener.
func TestNotifyTestEndpoint(t *testing.T) {
	hook := notifytest.NewReceiver(t, false)
	ts := startServerWith(t, nil, func(cfg string) string {
		return cfg + fmt.Sprintf("notifications:\n  webhooks:\n    - {name: ops, url: %q, secret_file: %q}\n  rules:\n    - {events: [job-failed], webhooks: [ops]}\n",
			hook.URL, hook.SecretFile)
	})
	admin := ts.login("admin", "admin password", "")
	if code := ts.call(admin, "POST", APIPrefix+"/notifications/test", NotifyTestRequest{Destination: "webhook:ops"}, nil); code != 200 {
		t.Fatalf("test notification: %d", code)
	}
	if r := hook.Wait(t, 1)[0]; r.SigErr != nil || r.Payload.Kind != notify.Test {
		t.Errorf("test notification received: %+v", r)
	}
	if code := ts.call(admin, "POST", APIPrefix+"/notifications/test", NotifyTestRequest{Destination: "webhook:nope"}, nil); code != http.StatusBadRequest {
		t.Errorf("unknown destination: %d", code)
	}
}

// TestVMInTwoGroups: a VM two groups select is backed up once per
// schedule slot; the second group's job skips it with a warning.
func TestVMInTwoGroups(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 1, 10, 0, 30, 0, time.UTC)}
	ts := startServerWith(t, clock.Now, func(cfg string) string {
		every := "    schedules:\n      - {kind: backup, every: 1h}\n"
		cfg = strings.Replace(cfg, "    rpo: 1h\n", "    rpo: 1h\n"+every, 1)
		return strings.Replace(cfg, "  - name: db\n    selectors: [\"name:db-*\"]\n", "  - name: db\n    selectors: [\"name:db-*\", \"web-1\"]\n"+every, 1)
	})
	ops := ts.login("admin", "admin password", config.RoleOperator)
	clock.set(time.Date(2026, 12, 1, 11, 0, 1, 0, time.UTC))
	var jobs []catalog.Job
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list JobList
		ts.call(ops, "GET", APIPrefix+"/jobs?kind=backup", nil, &list)
		done := 0
		for _, j := range list.Jobs {
			if j.State.Final() {
				done++
			}
		}
		if done == 2 {
			jobs = list.Jobs
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scheduled jobs: %+v", list.Jobs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	backedUp, skipped := 0, 0
	for _, j := range jobs {
		for _, v := range j.VMs {
			if v.VMName != "web-1" {
				continue
			}
			switch v.State {
			case phase.Succeeded:
				backedUp++
			case phase.Skipped:
				skipped++
			}
		}
	}
	if backedUp != 1 || skipped != 1 {
		t.Errorf("web-1 in two groups: backed up %d times, skipped %d times in one slot", backedUp, skipped)
	}
}
