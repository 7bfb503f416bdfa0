package server

import (
	"context"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kurabackup/kura/internal/testenv/browser"
)

// BenchmarkConsoleDashboard: the console's dashboard over the 800 VMs ×
// 400 points of BenchmarkAPIAtScale. Server time: each API request the
// dashboard makes (p50, p99). Browser time: from the route change to the
// page drawn (data fetched, 800 rows in the table), as the page measures
// it, and a cold load of the whole console (modules included).
func BenchmarkConsoleDashboard(b *testing.B) {
	s, secret := scaleServer(b)
	h := s.Handler()
	t0 := time.Now()
	if _, err := s.capacity(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Logf("server: capacity estimate computed in %v (then cached until a job ends; the schedule loop recomputes it in the background)", time.Since(t0))
	var total time.Duration
	for _, path := range []string{"/vms", "/jobs?state=Running&limit=20", "/jobs?state=Failed&limit=5",
		"/jobs?state=PartiallyFailed&limit=5", "/capacity", "/damage"} {
		p50, p99 := latency(b, h, secret, APIPrefix+path, 10)
		total += p50
		b.Logf("server: GET %s p50 %v, p99 %v", path, p50, p99)
	}
	b.Logf("server: the dashboard's requests, p50 summed: %v", total)

	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	br := browser.New(b, 1280, 900)
	signIn(br, srv.URL, "admin", "admin password")
	var drawn, cold []time.Duration
	for i := 0; b.Loop(); i++ {
		br.Go("#/?n="+strconv.Itoa(i), "Dashboard")
		ms := browser.Run(br, chromedp.Evaluate[float64](`Number(document.documentElement.dataset.renderMs)`))
		drawn = append(drawn, time.Duration(ms*float64(time.Millisecond)))
		t0 := time.Now()
		br.Do(chromedp.Reload(), br.Ready("Dashboard"))
		cold = append(cold, time.Since(t0))
	}
	if rows := count(br, "table.vms tbody tr"); rows != 800 {
		b.Fatalf("dashboard drew %d VMs, want 800", rows)
	}
	slices.Sort(drawn)
	slices.Sort(cold)
	b.Logf("browser: dashboard of 800 VMs drawn (route change to page done) median %v, max %v over %d; cold load median %v",
		drawn[len(drawn)/2], drawn[len(drawn)-1], len(drawn), cold[len(cold)/2])
}
