package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const sample = `server:
  listen: 127.0.0.1:8443
  state_dir: /var/lib/kura
repositories:
  - name: main
    location: /srv/kura
    password_file: /etc/kura/main.pass
connections:
  - name: local
    uri: qemu:///system
groups:
  - name: web
    selectors: ["name:web-*"]
    rpo: 26h
    retry_delay: 2m
    schedules:
      - kind: backup
        cron: "0 1 * * *"
        timezone: Europe/Berlin
        window: 4h
      - kind: verify
        every: 7d
        read_data: true
        outdated_after: 30d
      - kind: prune
        cron: "@daily"
    retention: {last: 3, daily: 7, weekly: 4, monthly: 12, quarterly: 4, yearly: 5}
    bandwidth:
      windows:
        - {days: mon-fri, hours: "08:00-18:00", limit: 50MB/s}
    restore:
      storage: [/srv/restore, "pool:default"]
      networks: [default]
users:
  - name: ops
    role: restore
    groups: [web]
`

func TestParseSample(t *testing.T) {
	c, err := Parse([]byte(sample), "kura.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := c.Groups[0]
	if g.RPO.D() != 26*time.Hour || g.RetryDelay.D() != 2*time.Minute || g.Schedules[1].Every.D() != 7*24*time.Hour ||
		g.Schedules[1].OutdatedAfter.D() != 30*24*time.Hour || g.Bandwidth.Windows[0].Limit != 50e6 || g.Retention.Quarterly != 4 {
		t.Fatalf("decoded %+v", g)
	}
	if r, ok := c.RepositoryOf(g); !ok || r.Name != "main" {
		t.Errorf("default repository: %+v %v", r, ok)
	}
	if cs := c.ConnectionsOf(g); len(cs) != 1 || cs[0].URI != "qemu:///system" {
		t.Errorf("default connections: %+v", cs)
	}
	if c.Line("groups[0].schedules[1].every") != 22 {
		t.Errorf("line of groups[0].schedules[1].every = %d", c.Line("groups[0].schedules[1].every"))
	}
	if c.Server.CatalogPath() != "/var/lib/kura/catalog.db" || c.Server.ListenAddr() != "127.0.0.1:8443" {
		t.Errorf("defaults: %s %s", c.Server.CatalogPath(), c.Server.ListenAddr())
	}
}

func TestProblemsHaveLines(t *testing.T) {
	for _, tc := range []struct {
		edit func(string) string
		want string
	}{
		{func(s string) string { return strings.Replace(s, "kind: backup", "kind: bakup", 1) }, `kura.yaml:17: groups[0].schedules[0].kind: "bakup": use backup, verify, prune, copy or boot-verify`},
		{func(s string) string { return strings.Replace(s, "    rpo: 26h", "    rpo: soon", 1) }, `kura.yaml:14: invalid duration "soon"`},
		{func(s string) string { return strings.Replace(s, "    rpo: 26h", "    rpoo: 26h", 1) }, "kura.yaml:14: field rpoo is not a setting of Group"},
		{func(s string) string { return strings.Replace(s, "groups: [web]", "groups: [db]", 1) }, `kura.yaml:37: users[0].groups[0]: no group "db"`},
		{func(s string) string {
			return strings.Replace(s, `        cron: "@daily"`, `        cron: "@daily"`+"\n        every: 1h", 1)
		}, "kura.yaml:25: groups[0].schedules[2]: give cron or every"},
		{func(s string) string {
			return strings.Replace(s, "retention: {last: 3, daily: 7, weekly: 4, monthly: 12, quarterly: 4, yearly: 5}", "retention: {}", 1)
		}, "groups[0].retention: a prune schedule needs a retention policy"},
		{func(s string) string { return strings.Replace(s, "/srv/restore", "srv/restore", 1) }, `groups[0].restore.storage[0]: "srv/restore": an absolute directory`},
		{func(s string) string {
			return strings.Replace(s, "users:", "  - name: web\n    selectors: [any:]\nusers:", 1)
		}, `kura.yaml:34: groups[1].name: "web" is used twice`},
		{func(s string) string { return strings.Replace(s, "server:\n", "server: [\n", 1) }, "kura.yaml:"},
		{func(s string) string {
			return strings.Replace(s, "        cron: \"@daily\"", "        cron: \"@daily\"\n      - kind: copy\n        every: 24h", 1)
		}, "groups[0].schedules[3].kind: a copy schedule needs copies"},
		{func(s string) string {
			return strings.Replace(s, "users:", "  - name: off\n    selectors: [any:]\n    copies: [{to: nowhere}]\nusers:", 1)
		}, `groups[1].copies[0].to: no repository "nowhere"`},
	} {
		_, err := Parse([]byte(tc.edit(sample)), "kura.yaml")
		if err == nil || !errors.Is(err, ErrInvalid) && !strings.Contains(err.Error(), "kura.yaml") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q in:\n%v", tc.want, err)
		}
	}
}

func TestSaveRoundTrip(t *testing.T) {
	c, err := Parse([]byte(sample), "kura.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "etc", "kura.yaml")
	c.Users = append(c.Users, User{Name: "admin", Role: RoleAdmin, PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA",
		Tokens: []Token{{ID: "t1", Name: "ci", Hash: "sha256:" + strings.Repeat("ab", 32), Role: RoleOperator, Created: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}}})
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved file: %v %v", fi, err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Groups, c.Groups) || !reflect.DeepEqual(back.Users, c.Users) || !reflect.DeepEqual(back.Repositories, c.Repositories) {
		t.Fatalf("round trip changed the configuration:\n%+v\n%+v", back.Groups, c.Groups)
	}
	// Save refuses an invalid configuration and keeps the file.
	c.Groups[0].Schedules[0].Kind = "nope"
	if err := c.Save(path); !errors.Is(err, ErrInvalid) {
		t.Fatalf("saving an invalid configuration: %v", err)
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("the file was damaged by a refused save: %v", err)
	}
}

func TestUnitsAndSecrets(t *testing.T) {
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "26h": 26 * time.Hour, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "0": 0} {
		if d, err := ParseDuration(in); err != nil || d.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, d, err)
		}
	}
	for _, bad := range []string{"soon", "-1h", "xd"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := ReadSecret(filepath.Join(dir, "pw"), ""); err != nil || s != "s3cret" {
		t.Errorf("secret file: %q %v", s, err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	if s, err := ReadSecret("", "pw"); err != nil || s != "s3cret" {
		t.Errorf("credential: %q %v", s, err)
	}
	if _, err := ReadSecret("", "../pw"); err == nil {
		t.Error("credential name with a path accepted")
	}
	if _, err := ReadSecret("", ""); !errors.Is(err, ErrNoSecret) {
		t.Errorf("no secret: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("groups: [{name: x, selectors: [any:], schedules: [{kind: backup, every: 1h}]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "f.yaml")
		if err != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("marshal a valid configuration: %v", err)
		}
		if _, err := Parse(out, "again.yaml"); err != nil {
			t.Fatalf("a valid configuration does not parse back: %v\n%s", err, out)
		}
	})
}
