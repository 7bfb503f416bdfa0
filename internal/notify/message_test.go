package notify

import (
	"bytes"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"
)

func TestComposeMailIsParsableAndCannotBeInjected(t *testing.T) {
	from, _ := mail.ParseAddress("Kura Bäckup <kura@example.com>")
	now := time.Date(2026, 11, 25, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	ev := Event{
		Kind: JobFailed, Time: now, Group: "web", VM: "db1\r\nBcc: victim@example.com",
		Subject: "Sicherung fehlgeschlagen: ☠ " + strings.Repeat("x", 300),
		Text:    "line one\n.\nline with a very long tail " + strings.Repeat("y", 200),
		Data:    map[string]any{"error": "disk vda: read failed", "vms_failed": 1},
	}
	raw := composeMail(from, "ops@example.com", ev, "EVT", "DLV", "host-1.example", now)
	for i, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line %d is %d characters long", i, len(line))
		}
	}
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("bare LF in message")
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Header["Bcc"]; ok {
		t.Fatal("a VM name added a Bcc header")
	}
	d, err := m.Header.Date()
	if err != nil || !d.Equal(now) {
		t.Errorf("Date %v (%v), want %v", d, err, now)
	}
	for k, want := range map[string]string{
		"Message-Id": "<DLV@host-1.example>", "To": "<ops@example.com>", "Auto-Submitted": "auto-generated",
		"X-Kura-Event": "job-failed", "Mime-Version": "1.0",
	} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if a, err := m.Header.AddressList("From"); err != nil || a[0].Name != "Kura Bäckup" || a[0].Address != "kura@example.com" {
		t.Errorf("From: %v %v", a, err)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(subj, "[kura] Sicherung fehlgeschlagen: ☠ xxx") || len([]rune(subj)) != len("[kura] ")+maxSubject {
		t.Errorf("subject %q (%d runes)", subj, len([]rune(subj)))
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"line one\r\n.\r\nline with", "VM:          db1\r\nBcc: victim", "error:       disk vda: read failed", "vms_failed:  1", "Event:       job-failed (error)", "Time:        2026-11-25T02:04:05Z", "kura on host-1.example (event EVT)"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}

func TestDefaultSubject(t *testing.T) {
	for _, c := range []struct {
		ev   Event
		want string
	}{
		{Event{Kind: JobPartial, Group: "web", Job: "17"}, "job partial: group web, job 17"},
		{Event{Kind: RepositoryFull, Repository: "/srv/kura"}, "repository full: repository /srv/kura"},
		{Event{Kind: DailySummary}, "daily summary"},
		{Event{Kind: RPOMissed, VM: "db1", Subject: "db1 has no point for 30h"}, "db1 has no point for 30h"},
	} {
		if got := c.ev.subject(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.ev, got, c.want)
		}
	}
}

func TestMessageIDHost(t *testing.T) {
	for in, want := range map[string]string{"host-1.example": "host-1.example", "": "localhost", "bad host<>": "badhost", "..": "localhost"} {
		if got := messageIDHost(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
