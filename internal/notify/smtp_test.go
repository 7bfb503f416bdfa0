package notify_test

import (
	"crypto/x509"
	"errors"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/notify/notifytest"
)

// TestEmailThroughExim: an event matching a rule reaches the mailbox of
// a real exim over STARTTLS with AUTH, as a well-formed message.
func TestEmailThroughExim(t *testing.T) {
	e := startExim(t)
	n, res := start(t, notify.Config{
		SMTP: e.SMTP(),
		Rules: []notify.Rule{
			{Events: []notify.EventKind{notify.JobFailed}, Groups: []string{"web"}, Email: []string{"ops@test.example"}},
			{Events: []notify.EventKind{notify.JobSucceeded}, Email: []string{"quiet@test.example"}},
		},
	}, notify.Options{})
	err := n.Notify(t.Context(), notify.Event{
		Kind: notify.JobFailed, Group: "web", VM: "db1\r\nBcc: victim@test.example", Job: "42",
		Text: "Backup of db1 failed: disk vda: read error.\n.\nRetried 3 times.",
		Data: map[string]any{"vms_failed": 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := res.wait(t, 1)[0]
	if r.Status != notify.Delivered || r.Attempts != 1 || r.Destination != "email:ops@test.example" {
		t.Fatalf("result %+v", r)
	}
	m := e.Messages(t, 1)[0]
	if got := m.Header.Get("Envelope-To"); got != "ops@test.example" {
		t.Errorf("delivered to %q", got)
	}
	if rcv := m.Header.Get("Received"); !strings.Contains(rcv, "esmtpsa ") {
		t.Errorf("not received over TLS with AUTH: %q", rcv)
	}
	if _, ok := m.Header["Bcc"]; ok {
		t.Error("a VM name injected a Bcc header")
	}
	subj, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if subj != "[kura] job failed: group web, VM db1 Bcc: victim@test.example, job 42" {
		t.Errorf("subject %q", subj)
	}
	if d, err := m.Header.Date(); err != nil || !d.Equal(testNow) {
		t.Errorf("Date %v %v", d, err)
	}
	for k, want := range map[string]string{
		"From": `"kura" <kura@test.example>`, "To": "<ops@test.example>", "X-Kura-Delivery": r.DeliveryID,
		"Message-Id": "<" + r.DeliveryID + "@kura-test.example>", "Auto-Submitted": "auto-generated",
	} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	for _, want := range []string{"Backup of db1 failed: disk vda: read error.\n.\nRetried 3 times.", "vms_failed:  1", "Job:         42"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("body lacks %q:\n%s", want, m.Body)
		}
	}
}

// TestSMTPModes: every TLS mode and AUTH mechanism delivers through the
// port that offers it.
func TestSMTPModes(t *testing.T) {
	e := startExim(t)
	modes := []struct {
		name  string
		edit  func(*notify.SMTPConfig)
		proto string // in exim's Received header: "esmtpsa " is TLS and AUTH
	}{
		{"starttls-plain", func(*notify.SMTPConfig) {}, "esmtpsa "},
		{"starttls-login", func(c *notify.SMTPConfig) { c.Port = e.LoginPort }, "esmtpsa "},
		{"implicit", func(c *notify.SMTPConfig) { c.Port, c.TLS = e.TLSPort, notify.ImplicitTLS }, "esmtpsa "},
		{"opportunistic", func(c *notify.SMTPConfig) {
			c.Port, c.TLS, c.Username, c.PasswordFile = e.PlainPort, notify.Opportunistic, "", ""
		}, "esmtp ("},
		{"none", func(c *notify.SMTPConfig) {
			c.Port, c.TLS, c.Username, c.PasswordFile = e.PlainPort, notify.NoTLS, "", ""
		}, "esmtp ("},
	}
	for _, m := range modes {
		c := e.SMTP()
		m.edit(c)
		n, _ := start(t, notify.Config{SMTP: c}, notify.Options{})
		if err := n.SendTest(t.Context(), "email:"+m.name+"@test.example"); err != nil {
			t.Errorf("%s: %v", m.name, err)
		}
	}
	got := map[string]notifytest.Message{}
	for _, msg := range e.Messages(t, len(modes)) {
		got[msg.Header.Get("Envelope-To")] = msg
	}
	for _, m := range modes {
		msg, ok := got[m.name+"@test.example"]
		if !ok {
			t.Errorf("%s: no message", m.name)
			continue
		}
		if rcv := msg.Header.Get("Received"); !strings.Contains(rcv, m.proto) {
			t.Errorf("%s: Received %q lacks %q", m.name, rcv, m.proto)
		}
		if subj := msg.Header.Get("Subject"); subj != "[kura] test notification" || !strings.Contains(msg.Body, "delivery to email:"+m.name) {
			t.Errorf("%s: subject %q body %q", m.name, subj, msg.Body)
		}
	}
}

// TestSMTPFailures: refused credentials, an untrusted certificate, a
// missing STARTTLS and a refused recipient fail at the first attempt; an
// unreachable server is retried up to the limit.
func TestSMTPFailures(t *testing.T) {
	e := startExim(t)
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		edit     func(*notify.SMTPConfig)
		attempts int
		check    func(error) bool
	}{
		{"wrong password", func(c *notify.SMTPConfig) { c.PasswordFile = wrong }, 1,
			func(err error) bool { return strings.Contains(err.Error(), "535") }},
		{"untrusted certificate", func(c *notify.SMTPConfig) { c.CAFile = "" }, 1,
			func(err error) bool { var u x509.UnknownAuthorityError; return errors.As(err, &u) }},
		{"no starttls offered", func(c *notify.SMTPConfig) { c.Port = e.PlainPort }, 1,
			func(err error) bool { return errors.Is(err, notify.ErrNoTLS) }},
		{"recipient refused", func(c *notify.SMTPConfig) { c.TLS, c.Username, c.PasswordFile = notify.Opportunistic, "", "" }, 1,
			func(err error) bool {
				return strings.Contains(err.Error(), "550") && strings.Contains(err.Error(), "rcpt to")
			}},
		{"server down", func(c *notify.SMTPConfig) { c.Port = notifytest.FreePort(t) }, fastRetry.MaxAttempts,
			func(err error) bool { return strings.Contains(err.Error(), "connection refused") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := e.SMTP()
			c.edit(cfg)
			n, res := start(t, notify.Config{SMTP: cfg, Rules: []notify.Rule{
				{Events: []notify.EventKind{notify.VerifyProblem}, Email: []string{"ops@test.example"}},
			}}, notify.Options{})
			if err := n.Notify(t.Context(), notify.Event{Kind: notify.VerifyProblem, Repository: "/srv/kura"}); err != nil {
				t.Fatal(err)
			}
			r := res.wait(t, 1)[0]
			if r.Status != notify.Failed || r.Attempts != c.attempts || !c.check(r.Err) {
				t.Errorf("result %+v (err %v), want failed after %d attempts", r, r.Err, c.attempts)
			}
			if err := n.SendTest(t.Context(), "email:ops@test.example"); err == nil || !c.check(err) {
				t.Errorf("SendTest: %v", err)
			}
		})
	}
}
