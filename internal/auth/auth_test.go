package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/config"
)

func testConfig(t *testing.T) (*config.Config, string, string) {
	t.Helper()
	hash, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	opSecret, opTok, _ := NewToken("ci", config.RoleAuditor, now.Add(24*time.Hour), now)
	rsSecret, rsTok, _ := NewToken("team", "", time.Time{}, now)
	c := &config.Config{
		Groups: []config.Group{{Name: "web", Restore: config.Rights{Storage: []string{"/srv/restore", "pool:team"}, Networks: []string{"isolated"}}}, {Name: "db"}},
		Users: []config.User{
			{Name: "ops", Role: config.RoleOperator, PasswordHash: hash, Tokens: []config.Token{opTok}},
			{Name: "webteam", Role: config.RoleRestore, Groups: []string{"web"}, Tokens: []config.Token{rsTok}},
		},
	}
	return c, opSecret, rsSecret
}

func TestPasswordsAndTokens(t *testing.T) {
	c, opSecret, rsSecret := testConfig(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	a := New(c, func() time.Time { return now })
	if p, err := a.Password("ops", "correct horse"); err != nil || p.Role != config.RoleOperator {
		t.Fatalf("good password: %+v %v", p, err)
	}
	for _, tc := range [][2]string{{"ops", "wrong horse"}, {"nobody", "correct horse"}, {"webteam", "correct horse"}} {
		if _, err := a.Password(tc[0], tc[1]); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Password(%q, %q) = %v", tc[0], tc[1], err)
		}
	}
	p, err := a.Token(opSecret)
	if err != nil || p.User != "ops" || p.Role != config.RoleAuditor || p.Token == "" {
		t.Fatalf("narrowed token: %+v %v", p, err)
	}
	if p.Allows(Run, "web") || !p.Allows(Read, "web") {
		t.Errorf("an auditor token of an operator runs jobs")
	}
	p, err = a.Token(rsSecret)
	if err != nil || p.Role != config.RoleRestore || len(p.Groups) != 1 || p.Groups[0] != "web" {
		t.Fatalf("restore token: %+v %v", p, err)
	}
	for _, bad := range []string{"", "kura_", "kura_zz_zz", opSecret + "x", strings.Replace(opSecret, "kura_", "kura_00", 1)} {
		if _, err := a.Token(bad); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Token(%q) = %v", bad, err)
		}
	}
	now = now.Add(24 * time.Hour) // the operator's token expired
	if _, err := a.Token(opSecret); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("expired token: %v", err)
	}
	// A token whose record claims more than its owner gets the owner's role.
	c.Users[1].Tokens[0].Role = config.RoleAdmin
	if p, err := a.Token(rsSecret); err != nil || p.Role != config.RoleRestore {
		t.Errorf("token above its owner: %+v %v", p, err)
	}
	if CheckPassword("$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA", "x") {
		t.Error("hostile hash cost accepted")
	}
}

func TestRolesAndRestoreScope(t *testing.T) {
	c, _, _ := testConfig(t)
	web, _ := c.Group("web")
	db, _ := c.Group("db")
	admin := Principal{User: "root", Role: config.RoleAdmin}
	auditor := Principal{User: "aud", Role: config.RoleAuditor}
	team := Principal{User: "webteam", Role: config.RoleRestore, Groups: []string{"web"}}
	ops := Principal{User: "ops", Role: config.RoleOperator}
	for _, tc := range []struct {
		p     Principal
		a     Action
		group string
		ok    bool
	}{
		{admin, Configure, "", true}, {ops, Run, "db", true}, {ops, Configure, "", false}, {ops, Audit, "", false},
		{auditor, Read, "db", true}, {auditor, Run, "db", false}, {auditor, Audit, "", true}, {auditor, Restore, "web", false},
		{team, Read, "web", true}, {team, Restore, "web", true}, {team, Read, "db", false}, {team, Restore, "db", false},
		{team, Run, "web", false}, {team, Read, "", false},
	} {
		if got := tc.p.Allows(tc.a, tc.group); got != tc.ok {
			t.Errorf("%s may %s %q: %v, want %v", tc.p.Role, tc.a, tc.group, got, tc.ok)
		}
	}
	inWeb := func(vm string) bool { return strings.HasPrefix(vm, "web-") }
	for _, tc := range []struct {
		t  RestoreTarget
		ok bool
	}{
		{RestoreTarget{Storage: []string{"/srv/restore/a"}, Networks: []string{"isolated"}}, true},
		{RestoreTarget{Storage: []string{"pool:team"}}, true},
		{RestoreTarget{Storage: []string{"/etc/cron.d"}}, false},
		{RestoreTarget{Storage: []string{"/srv/restore/../../etc"}}, false},
		{RestoreTarget{Storage: []string{"/srv/restored"}}, false},
		{RestoreTarget{Networks: []string{"default"}}, false},
		{RestoreTarget{Overwrites: []string{"web-1"}}, true},
		{RestoreTarget{Overwrites: []string{"db-1"}}, false},
	} {
		err := team.CheckRestore(web, tc.t, inWeb)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrForbidden)) {
			t.Errorf("restore user into %+v: %v, want ok=%v", tc.t, err, tc.ok)
		}
	}
	if err := team.CheckRestore(db, RestoreTarget{}, inWeb); !errors.Is(err, ErrForbidden) {
		t.Errorf("restore of another group's point: %v", err)
	}
	if err := ops.CheckRestore(db, RestoreTarget{Storage: []string{"/anywhere"}}, inWeb); err != nil {
		t.Errorf("operator restore: %v", err)
	}
}

func TestThrottle(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	th := NewThrottle(3, func() time.Time { return now })
	for i := 0; i < 3; i++ {
		if ok, _ := th.Allow("ops@1.2.3.4"); !ok {
			t.Fatalf("attempt %d refused", i)
		}
		th.Fail("ops@1.2.3.4")
	}
	if ok, _ := th.Allow("ops@1.2.3.4"); !ok {
		t.Fatal("fourth attempt refused")
	}
	th.Fail("ops@1.2.3.4")
	if ok, wait := th.Allow("ops@1.2.3.4"); ok || wait != time.Second {
		t.Fatalf("after 4 failures: %v %v", ok, wait)
	}
	if ok, _ := th.Allow("ops@5.6.7.8"); !ok {
		t.Error("another address is throttled too")
	}
	now = now.Add(time.Second)
	th.Fail("ops@1.2.3.4")
	if _, wait := th.Allow("ops@1.2.3.4"); wait != 2*time.Second {
		t.Errorf("delay does not double: %v", wait)
	}
	th.Succeed("ops@1.2.3.4")
	if ok, _ := th.Allow("ops@1.2.3.4"); !ok {
		t.Error("success does not reset")
	}
}
