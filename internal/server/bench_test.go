package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/fake"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/storage/local"
)

// BenchmarkAPIAtScale: DPM's per-server scale, 800 VMs × 400 points in the
// catalog, 800 groups with 3 schedules each. It reports the p50/p99
// latency of the API's list of one VM's points and of every VM's status,
// the server's CPU use while idle, and the scheduler's start-up.
// scaleServer is a server over DPM's per-server scale: 800 VMs × 400
// points in the catalog, 800 groups with 3 schedules each; it returns the
// server (not running: tests call its handler) and an operator token.
func scaleServer(b *testing.B) (*Server, string) {
	b.Helper()
	dir := b.TempDir()
	hv := fake.New()
	var groups strings.Builder
	for v := range 800 {
		name := fmt.Sprintf("vm%03d", v)
		hv.AddVM(fake.VMSpec{Name: name, UUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", v), Disks: []fake.DiskSpec{{Target: "vda", Size: 1 << 20}}})
		fmt.Fprintf(&groups, "  - name: g%03d\n    selectors: [\"name:%s\"]\n    rpo: 26h\n    schedules:\n      - {kind: backup, cron: \"%d 1 * * *\"}\n      - {kind: verify, cron: \"%d 3 * * 0\", read_data: true}\n      - {kind: prune, cron: \"@daily\"}\n    retention: {daily: 7, weekly: 4, monthly: 12}\n",
			v, name, v%60, v%60)
	}
	cfgPath := writeConfig(b, dir, func(cfg string) string {
		i := strings.Index(cfg, "groups:\n")
		j := strings.Index(cfg, "users:\n")
		return cfg[:i] + "groups:\n" + groups.String() + strings.Replace(cfg[j:], "groups: [db]", "groups: [g000]", 1)
	})
	cfg, err := config.Load(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	secret, tok, err := auth.NewToken("bench", config.RoleOperator, time.Time{}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	cfg.Users[0].Tokens = append(cfg.Users[0].Tokens, tok)
	if err := cfg.Save(cfgPath); err != nil {
		b.Fatal(err)
	}
	cat, err := catalog.Open(context.Background(), cfg.Server.CatalogPath(), nil)
	if err != nil {
		b.Fatal(err)
	}
	var ps []catalog.Point
	for v := range 800 {
		for d := range 400 {
			ps = append(ps, catalog.Point{ID: fmt.Sprintf("20260101T000000Z-%04d%04d", v, d), RepoID: "r", VMUUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", v),
				VMName: fmt.Sprintf("vm%03d", v), Kind: catalog.KindIncremental, Started: time.Unix(1_700_000_000+int64(d)*21600, 0),
				BytesNew: 1 << 20, BytesStored: 1 << 19, Tags: []string{GroupTag(fmt.Sprintf("g%03d", v))},
				Disks: []catalog.PointDisk{{Target: "vda", Size: 100 << 30, IndexID: "x"}}})
		}
	}
	if err := cat.Rebuild(context.Background(), "r", ps, nil); err != nil {
		b.Fatal(err)
	}
	cat.Close()

	s, err := New(context.Background(), Options{ConfigPath: cfgPath, Logger: slog.New(slog.DiscardHandler),
		Connect: func(context.Context, config.Connection, *slog.Logger) (hypervisor.Connector, error) { return hv, nil },
		OpenRepository: func(ctx context.Context, rc config.Repository, log *slog.Logger) (*repo.Repository, error) {
			be, err := local.Open(rc.Location)
			if err != nil {
				return nil, err
			}
			return repo.Open(ctx, be, testPassword, repo.OpenOptions{})
		}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	s.refreshInventory(context.Background())
	return s, secret
}

func BenchmarkAPIAtScale(b *testing.B) {
	startup := time.Now()
	s, secret := scaleServer(b)
	cfg, _ := s.config()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	planStart := time.Now()
	es, _ := entries(cfg)
	b.Logf("catalog built and server started (config, catalog, repository, inventory): %v; %d schedules planned in %v",
		planStart.Sub(startup), len(es), time.Since(planStart))
	h := s.Handler()
	lat := func(path string, n int) (p50, p99 time.Duration) { return latency(b, h, secret, path, n) }
	for b.Loop() {
		p50, p99 := lat(APIPrefix+"/vms/00000000-0000-4000-8000-000000000417/points", 200)
		b.Logf("GET one VM's 400 points: p50 %v, p99 %v", p50, p99)
		p50, p99 = lat(APIPrefix+"/vms", 200)
		b.Logf("GET all 800 VMs' status: p50 %v, p99 %v", p50, p99)
	}
	// Idle CPU: the loops running, nothing due.
	go s.run.loop(ctx)
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	idleStart := time.Now()
	go s.scheduleLoop(ctx)
	time.Sleep(20 * time.Second)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.Logf("idle for %v (first inventory and plan included): %.2f%% of one core", time.Since(idleStart).Round(time.Second),
		100*cpu.Seconds()/time.Since(idleStart).Seconds())
}

// latency serves GET path n times and returns the median and 99th
// percentile of the server time.
func latency(b *testing.B, h http.Handler, secret, path string, n int) (p50, p99 time.Duration) {
	b.Helper()
	var ds []time.Duration
	for range n {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		w := httptest.NewRecorder()
		t0 := time.Now()
		h.ServeHTTP(w, req)
		ds = append(ds, time.Since(t0))
		if w.Code != http.StatusOK {
			b.Fatalf("%s: %d %s", path, w.Code, w.Body.String())
		}
		_, _ = io.Copy(io.Discard, w.Body)
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[len(ds)*99/100]
}
