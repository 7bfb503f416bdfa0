package notify_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/notify/notifytest"
)

func validConfig() notify.Config {
	return notify.Config{
		SMTP: &notify.SMTPConfig{Host: "mail.example.com", Username: "kura", PasswordFile: "/run/credentials/kura/smtp", From: "kura <kura@example.com>"},
		Webhooks: []notify.WebhookConfig{
			{Name: "chat", URLFile: "/run/credentials/kura/chat-url"},
			{Name: "ops.hook", URL: "https://hooks.example.com/kura", SecretFile: "/etc/kura/hook.secret", Headers: map[string]string{"X-Team": "ops"}},
		},
		Rules: []notify.Rule{
			{Events: []notify.EventKind{notify.JobFailed, notify.JobPartial}, Groups: []string{"web"}, Email: []string{"web@example.com"}, Webhooks: []string{"chat"}},
			{Events: []notify.EventKind{notify.DailySummary}, Email: []string{"ops@example.com"}},
		},
	}
}

func TestValidateReportsEveryProblemWithItsPath(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, c := range map[string]struct {
		edit func(*notify.Config)
		want []string
	}{
		"smtp basics": {func(c *notify.Config) {
			c.SMTP.Host, c.SMTP.From, c.SMTP.TLS, c.SMTP.Port = "", "not an address", "tls1.3", 70000
		}, []string{
			"smtp.host: missing", `smtp.from: "not an address" is not an e-mail address`, `smtp.tls: unknown mode "tls1.3"`, "smtp.port: 70000 is not a TCP port"}},
		"credentials in clear": {func(c *notify.Config) { c.SMTP.TLS = notify.NoTLS }, []string{
			`smtp.tls: "none" with a username: credentials are only sent over TLS`}},
		"opportunistic with credentials": {func(c *notify.Config) { c.SMTP.TLS = notify.Opportunistic }, []string{`smtp.tls: "opportunistic" with a username`}},
		"password without user":          {func(c *notify.Config) { c.SMTP.Username = "" }, []string{"smtp.username: missing: a password is set"}},
		"user without password":          {func(c *notify.Config) { c.SMTP.PasswordFile = "" }, []string{"smtp.password_file: missing (or password_credential): username is set"}},
		"no smtp for email":              {func(c *notify.Config) { c.SMTP = nil }, []string{"rules[0].email: e-mail needs an smtp section", "rules[1].email: e-mail needs an smtp section"}},
		"webhooks": {func(c *notify.Config) {
			c.Webhooks = append(c.Webhooks,
				notify.WebhookConfig{Name: "chat", URL: "ftp://x"},
				notify.WebhookConfig{Name: "bad name", URL: "https://u:p@x.example/"},
				notify.WebhookConfig{Name: "h", URL: "https://x.example/", URLFile: "/f", Headers: map[string]string{"Authorization": "Bearer 1", "X-Kura-Event": "x", "Bad Name": "1"}},
				notify.WebhookConfig{Name: "", URL: "https://x.example/", HeaderFiles: map[string]string{"Content-Type": "/f", "X-Token": ""}})
		}, []string{
			`webhooks[2].name: "chat": defined twice`, `webhooks[2].url: "ftp://x": scheme must be http or https`,
			`webhooks[3].name: "bad name": use letters`, "webhooks[3].url: user:password in the URL: use header_files",
			"webhooks[4].url: give one of url, url_file and url_credential", `webhooks[4].headers: "Authorization" carries a credential: move it to header_files`,
			`webhooks[4].headers: "X-Kura-Event" is set by kura`, `webhooks[4].headers: "Bad Name" is not a header name`,
			"webhooks[5].name: missing", `webhooks[5].header_files: "Content-Type" is set by kura`, `webhooks[5].header_files: "X-Token": empty`}},
		"credentials": {func(c *notify.Config) {
			c.SMTP.PasswordCredential = "../smtp"
			c.Webhooks[0].URLCredential = "chat-url"
			c.Webhooks[1].SecretCredential = "hook"
			c.Webhooks[1].HeaderFiles = map[string]string{"X-Token": "/f"}
			c.Webhooks[1].HeaderCredentials = map[string]string{"X-Token": "tok", "X-Other": "a/b"}
		}, []string{
			"smtp.password_file: give password_file or password_credential, not both",
			`smtp.password_credential: "../smtp" is not a credential name`,
			"webhooks[0].url: give one of url, url_file and url_credential",
			"webhooks[1].secret_file: give secret_file or secret_credential, not both",
			`webhooks[1].header_credentials: "X-Token" is also in header_files`,
			`webhooks[1].header_credentials: "a/b" is not a credential name`}},
		"rules": {func(c *notify.Config) {
			c.Rules = append(c.Rules,
				notify.Rule{Events: []notify.EventKind{"job-fail", notify.RPOMissed}, Webhooks: []string{"chat", "pager"}},
				notify.Rule{Groups: []string{""}, Email: []string{"Ops <ops@example.com>", "nobody"}},
				notify.Rule{Events: []notify.EventKind{notify.Test}})
		}, []string{
			`rules[2].events[0]: unknown event kind "job-fail" (known: job-succeeded, job-partial, job-failed, rpo-missed, verify-problem, repository-full, run-missed, daily-summary, test)`,
			`rules[2].webhooks[1]: unknown webhook "pager" (defined: chat, ops.hook)`,
			"rules[3].events: missing: list the event kinds", "rules[3].groups[0]: empty group name",
			`rules[3].email[0]: "Ops <ops@example.com>": give the bare address "ops@example.com"`, `rules[3].email[1]: "nobody" is not an e-mail address`,
			"rules[4]: no destination: give email addresses or webhook names"}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := validConfig()
			c.edit(&cfg)
			err := cfg.Validate()
			if !errors.Is(err, notify.ErrInvalidConfig) {
				t.Fatalf("%v: not ErrInvalidConfig", err)
			}
			msgs := strings.Split(err.Error(), "\n")
			for _, w := range c.want {
				found := false
				for _, m := range msgs {
					found = found || strings.HasPrefix(m, w)
				}
				if !found {
					t.Errorf("no problem %q in:\n%v", w, err)
				}
			}
			if len(msgs) != len(c.want) {
				t.Errorf("%d problems, want %d:\n%v", len(msgs), len(c.want), err)
			}
			var fe *notify.FieldError
			if !errors.As(err, &fe) || fe.Path == "" {
				t.Errorf("no *FieldError in %v", err)
			}
		})
	}
}

// TestDocumentedExampleDecodes decodes the YAML example of
// docs/design/notifications.md into Config, as the server's loader will.
func TestDocumentedExampleDecodes(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "design", "notifications.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(notifications:\n.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("no yaml example starting with notifications: in the document")
	}
	var file struct {
		Notifications notify.Config `yaml:"notifications"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(m[1])))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("example does not decode: %v", err)
	}
	c := file.Notifications
	if err := c.Validate(); err != nil {
		t.Fatalf("example does not validate: %v", err)
	}
	if c.SMTP == nil || c.SMTP.PasswordCredential == "" || len(c.Webhooks) == 0 || c.Webhooks[0].Timeout == 0 || len(c.Rules) < 2 {
		t.Errorf("example decoded incompletely: %+v", c)
	}
}

func TestNewReadsSecretsFromFiles(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := write("ok", "pw\n", 0o600)
	base := func() notify.Config {
		return notify.Config{
			SMTP:     &notify.SMTPConfig{Host: "127.0.0.1", Username: "u", PasswordFile: ok, From: "k@example.com"},
			Webhooks: []notify.WebhookConfig{{Name: "w", URL: "http://127.0.0.1:1/", SecretFile: ok, HeaderFiles: map[string]string{"Authorization": ok}}},
		}
	}
	for name, c := range map[string]struct {
		edit func(*notify.Config)
		want string
	}{
		"missing password":   {func(c *notify.Config) { c.SMTP.PasswordFile = filepath.Join(dir, "nope") }, "smtp password: open"},
		"no credentials dir": {func(c *notify.Config) { c.SMTP.PasswordFile, c.SMTP.PasswordCredential = "", "smtp" }, "CREDENTIALS_DIRECTORY is not set"},
		"empty secret":       {func(c *notify.Config) { c.Webhooks[0].SecretFile = write("empty", "\n", 0o600) }, "is empty"},
		"two-line header": {func(c *notify.Config) {
			c.Webhooks[0].HeaderFiles["Authorization"] = write("two", "a\nX-Evil: 1\n", 0o600)
		}, "holds more than one line"},
		"directory": {func(c *notify.Config) { c.Webhooks[0].SecretFile = dir }, "is not a regular file"},
		"bad url in file": {func(c *notify.Config) {
			c.Webhooks[0].URL, c.Webhooks[0].URLFile = "", write("url", "gopher://x\n", 0o600)
		}, "scheme must be http or https"},
		"no pem in ca_file":  {func(c *notify.Config) { c.SMTP.CAFile = ok }, "holds no PEM certificate"},
		"missing ca_file":    {func(c *notify.Config) { c.Webhooks[0].CAFile = filepath.Join(dir, "nope") }, "ca_file: open"},
		"invalid is invalid": {func(c *notify.Config) { c.SMTP.From = "" }, "smtp.from: missing"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := base()
			c.edit(&cfg)
			n, err := notify.New(cfg, notify.Options{})
			if err == nil {
				n.Close(t.Context())
				t.Fatal("New accepted it")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v, want %q", err, c.want)
			}
		})
	}
	n, err := notify.New(base(), notify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestCredentialsReachTheReceiver: secrets given as systemd credentials
// are read from $CREDENTIALS_DIRECTORY and used.
func TestCredentialsReachTheReceiver(t *testing.T) {
	r := notifytest.NewReceiver(t, false)
	creds := t.TempDir()
	secret, err := os.ReadFile(r.SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"hook-secret": string(secret), "hook-url": r.URL + "\n", "hook-token": "Bearer t0k\n"} {
		if err := os.WriteFile(filepath.Join(creds, name), []byte(v), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	n, _ := start(t, notify.Config{Webhooks: []notify.WebhookConfig{{
		Name: "hook", URLCredential: "hook-url", SecretCredential: "hook-secret",
		HeaderCredentials: map[string]string{"Authorization": "hook-token"},
	}}}, notify.Options{})
	if err := n.SendTest(t.Context(), "webhook:hook"); err != nil {
		t.Fatal(err)
	}
	if q := r.Requests()[0]; q.SigErr != nil || q.Header.Get("Authorization") != "Bearer t0k" {
		t.Errorf("signature %v, headers %v", q.SigErr, q.Header)
	}
}
