package notify_test

import (
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/notify/notifytest"
)

func hookConfig(r *notifytest.Receiver, kinds ...notify.EventKind) notify.Config {
	return notify.Config{
		Webhooks: []notify.WebhookConfig{{Name: "hook", URL: r.URL, SecretFile: r.SecretFile, CAFile: r.CAFile}},
		Rules:    []notify.Rule{{Events: kinds, Webhooks: []string{"hook"}}},
	}
}

// TestWebhookRetriesWithStableDeliveryID: a receiver that answers 503,
// then 429, then 200 gets the same signed body three times.
func TestWebhookRetriesWithStableDeliveryID(t *testing.T) {
	r := notifytest.NewReceiver(t, false)
	r.Respond = func(n int, _ notifytest.Request) int {
		return map[int]int{1: http.StatusServiceUnavailable, 2: http.StatusTooManyRequests}[n]
	}
	n, res := start(t, hookConfig(r, notify.JobFailed), notify.Options{})
	ev := notify.Event{Kind: notify.JobFailed, Group: "web", VM: "db1", Job: "42", Text: "disk vda: read error",
		Data: map[string]any{"vms_failed": 1, "phase": "Failed"}}
	if err := n.Notify(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	got := res.wait(t, 1)[0]
	if got.Status != notify.Delivered || got.Attempts != 3 {
		t.Fatalf("result %+v", got)
	}
	reqs := r.Wait(t, 3)
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, q := range reqs {
		if q.SigErr != nil || q.PayloadErr != nil {
			t.Fatalf("request %d: signature %v, payload %v", i+1, q.SigErr, q.PayloadErr)
		}
		if id := q.Header.Get(notify.HeaderDelivery); id != got.DeliveryID || q.Payload.DeliveryID != id {
			t.Errorf("request %d: delivery id %q / %q, want %q", i+1, id, q.Payload.DeliveryID, got.DeliveryID)
		}
		if string(q.Body) != string(reqs[0].Body) || q.Header.Get(notify.HeaderSignature) != reqs[0].Header.Get(notify.HeaderSignature) {
			t.Errorf("request %d: body or signature changed in a retry", i+1)
		}
		if ts := q.Header.Get(notify.HeaderTimestamp); ts != strconv.FormatInt(testNow.Unix(), 10) {
			t.Errorf("request %d: timestamp %q", i+1, ts)
		}
		if q.Header.Get(notify.HeaderEvent) != "job-failed" || q.Header.Get("Content-Type") != "application/json" {
			t.Errorf("request %d: headers %v", i+1, q.Header)
		}
	}
	p := reqs[2].Payload
	want := notify.Payload{Version: 1, DeliveryID: got.DeliveryID, EventID: got.EventID, Kind: notify.JobFailed,
		Severity: notify.Error, Time: testNow, Origin: "kura-test.example", Group: "web", VM: "db1", Job: "42",
		Subject: "job failed: group web, VM db1, job 42", Text: "disk vda: read error",
		Data: map[string]any{"vms_failed": 1.0, "phase": "Failed"}}
	if p.Time.Equal(want.Time) {
		p.Time = want.Time
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("payload %+v\nwant    %+v", p, want)
	}
	s := n.Stats()
	if len(s) != 1 || s[0] != (notify.Stats{Destination: "webhook:hook", Delivered: 1, Retries: 2}) {
		t.Errorf("stats %+v", s)
	}
}

// TestWebhookPermanentFailures: 4xx (other than 429), redirects, a
// wrong secret and an untrusted certificate are not retried.
func TestWebhookPermanentFailures(t *testing.T) {
	for _, c := range []struct {
		name    string
		status  int
		edit    func(*notify.Config, *notifytest.Receiver)
		tls     bool
		reqs    int
		errText string
	}{
		{"400", http.StatusBadRequest, nil, false, 1, "400 Bad Request"},
		{"404", http.StatusNotFound, nil, false, 1, "404 Not Found"},
		{"redirect", http.StatusTemporaryRedirect, nil, false, 1, "redirects are not followed"},
		{"wrong secret", 0, func(c *notify.Config, _ *notifytest.Receiver) {
			c.Webhooks[0].SecretFile = writeFile(t, "other", "not the secret\n")
		}, false, 1, "401 Unauthorized"},
		{"unsigned", 0, func(c *notify.Config, _ *notifytest.Receiver) { c.Webhooks[0].SecretFile = "" }, false, 1, "401 Unauthorized"},
		{"untrusted certificate", 0, func(c *notify.Config, _ *notifytest.Receiver) { c.Webhooks[0].CAFile = "" }, true, 0, "certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := notifytest.NewReceiver(t, c.tls)
			if c.status != 0 {
				r.Respond = func(int, notifytest.Request) int { return c.status }
			}
			cfg := hookConfig(r, notify.RPOMissed)
			if c.edit != nil {
				c.edit(&cfg, r)
			}
			n, res := start(t, cfg, notify.Options{})
			if err := n.Notify(t.Context(), notify.Event{Kind: notify.RPOMissed, Group: "web", VM: "db1"}); err != nil {
				t.Fatal(err)
			}
			got := res.wait(t, 1)[0]
			if got.Status != notify.Failed || got.Attempts != 1 || !strings.Contains(got.Err.Error(), c.errText) {
				t.Errorf("result %+v (%v), want failed at once with %q", got, got.Err, c.errText)
			}
			if c.tls {
				var u x509.UnknownAuthorityError
				if !errors.As(got.Err, &u) {
					t.Errorf("%v is not an unknown-authority error", got.Err)
				}
			}
			if len(r.Requests()) != c.reqs {
				t.Errorf("%d requests, want %d", len(r.Requests()), c.reqs)
			}
		})
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWebhookTLSHeadersAndSecretURL: an HTTPS receiver trusted through
// ca_file gets the configured headers, one of them read from a file; a
// URL read from a file never shows in errors.
func TestWebhookTLSHeadersAndSecretURL(t *testing.T) {
	r := notifytest.NewReceiver(t, true)
	r.Respond = func(_ int, q notifytest.Request) int {
		if strings.Contains(q.Payload.Subject, "fail me") {
			return http.StatusInternalServerError
		}
		return 0
	}
	cfg := hookConfig(r, notify.VerifyProblem, notify.DailySummary)
	cfg.Webhooks[0].URL = ""
	cfg.Webhooks[0].URLFile = writeFile(t, "url", r.URL+"/T0K3N-in-path\n")
	cfg.Webhooks[0].Headers = map[string]string{"X-Team": "ops"}
	cfg.Webhooks[0].HeaderFiles = map[string]string{"Authorization": writeFile(t, "auth", "Bearer abc\n")}
	n, res := start(t, cfg, notify.Options{Retry: notify.RetryPolicy{MaxAttempts: 2, InitialDelay: 1, MaxDelay: 1}})
	if err := n.Notify(t.Context(), notify.Event{Kind: notify.VerifyProblem, Repository: "/srv/kura"}); err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(t.Context(), notify.Event{Kind: notify.DailySummary, Subject: "fail me"}); err != nil {
		t.Fatal(err)
	}
	rs := res.wait(t, 2)
	q := r.Requests()[0]
	if rs[0].Status != notify.Delivered || q.Header.Get("X-Team") != "ops" || q.Header.Get("Authorization") != "Bearer abc" {
		t.Errorf("result %+v, headers %v", rs[0], q.Header)
	}
	if rs[1].Status != notify.Failed || rs[1].Attempts != 2 || !strings.Contains(rs[1].Err.Error(), "500") {
		t.Errorf("result %+v", rs[1])
	}
	if strings.Contains(rs[1].Err.Error(), "T0K3N") {
		t.Errorf("error shows the secret URL: %v", rs[1].Err)
	}
}
