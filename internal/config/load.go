package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kurabackup/kura/internal/instant"
	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/schedule"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid configuration")

// Problem is one thing wrong with a configuration file, where it is.
type Problem struct {
	File string
	Line int    // 0 when unknown
	Path string // e.g. groups[0].schedules[1].cron
	Msg  string
}

func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc += ":" + strconv.Itoa(p.Line)
	}
	if p.Path != "" {
		return loc + ": " + p.Path + ": " + p.Msg
	}
	return loc + ": " + p.Msg
}

// Problems is the error Load returns: every problem found, one per line.
type Problems []Problem

func (ps Problems) Error() string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (ps Problems) Unwrap() error { return ErrInvalid }

// Load reads and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(data, path)
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// Parse decodes and validates a configuration; name is used in messages.
func Parse(data []byte, name string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlProblems(name, err)
	}
	c := &Config{path: name, lines: map[string]int{}}
	if len(root.Content) > 0 {
		indexLines(root.Content[0], "", c.lines)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty document is fine: every setting has a default.
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlProblems(name, err)
	}
	if ps := c.validate(); len(ps) > 0 {
		return nil, ps
	}
	return c, nil
}

// yamlProblems turns yaml.v3's errors ("line 12: field x not found in
// type config.Group") into Problems with their lines.
func yamlProblems(name string, err error) Problems {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var ps Problems
	for _, m := range msgs {
		p := Problem{File: name, Msg: m}
		if sm := lineRE.FindStringSubmatch(m); sm != nil {
			p.Line, _ = strconv.Atoi(sm[1])
			p.Msg = strings.Replace(sm[2], "not found in type config.", "is not a setting of ", 1)
		}
		ps = append(ps, p)
	}
	return ps
}

// indexLines records the line of every mapping key and sequence item.
func indexLines(n *yaml.Node, path string, lines map[string]int) {
	if _, ok := lines[path]; !ok {
		lines[path] = n.Line
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			lines[p] = k.Line
			indexLines(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			indexLines(item, fmt.Sprintf("%s[%d]", path, i), lines)
		}
	}
}

// Line returns the line of a path in the file (0 when unknown), or of the
// nearest enclosing path that has one.
func (c *Config) Line(path string) int {
	for p := path; p != ""; {
		if l, ok := c.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// Problem makes a Problem at path, for callers that validate parts of the
// configuration themselves (schedules, notification rules).
func (c *Config) Problem(path, format string, args ...any) Problem {
	return Problem{File: c.path, Line: c.Line(path), Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Path is the file the configuration was loaded from.
func (c *Config) Path() string { return c.path }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func (c *Config) validate() Problems {
	var ps Problems
	bad := func(path, format string, args ...any) { ps = append(ps, c.Problem(path, format, args...)) }
	s := c.Server
	if s.Listen != "" {
		if _, _, err := net.SplitHostPort(s.Listen); err != nil {
			bad("server.listen", "%q is not host:port", s.Listen)
		}
	}
	switch s.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		bad("server.log_level", "%q: use debug, info, warn or error", s.LogLevel)
	}
	for _, p := range []struct{ path, v string }{{"server.state_dir", s.StateDir}, {"server.catalog", s.Catalog},
		{"server.tls.cert_file", s.TLS.CertFile}, {"server.tls.key_file", s.TLS.KeyFile}, {"server.scratch_dir", s.ScratchDir}} {
		if p.v != "" && !filepath.IsAbs(p.v) {
			bad(p.path, "%q must be an absolute path", p.v)
		}
	}
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		bad("server.tls", "give both cert_file and key_file, or neither (a certificate is generated)")
	}
	repos := map[string]bool{}
	for i, r := range c.Repositories {
		path := fmt.Sprintf("repositories[%d]", i)
		checkName(bad, path+".name", r.Name, repos)
		if r.Location == "" {
			bad(path+".location", "missing: the repository's URL or directory")
		}
		if r.PasswordFile != "" && r.PasswordCredential != "" {
			bad(path, "give password_file or password_credential, not both")
		}
	}
	if c.Server.SelfBackup.Repository != "" && !repos[c.Server.SelfBackup.Repository] {
		bad("server.self_backup.repository", "no repository %q", c.Server.SelfBackup.Repository)
	}
	conns := map[string]bool{}
	for i, cn := range c.Connections {
		path := fmt.Sprintf("connections[%d]", i)
		checkName(bad, path+".name", cn.Name, conns)
		if cn.URI == "" {
			bad(path+".uri", "missing: the hypervisor connection URI (qemu:///system)")
		}
	}
	groups := map[string]bool{}
	for i := range c.Groups {
		c.validateGroup(bad, i, repos, conns, groups)
	}
	users := map[string]bool{}
	tokens := map[string]bool{}
	for i, u := range c.Users {
		path := fmt.Sprintf("users[%d]", i)
		checkName(bad, path+".name", u.Name, users)
		if !slices.Contains([]string{RoleAdmin, RoleOperator, RoleAuditor, RoleRestore}, u.Role) {
			bad(path+".role", "%q: use admin, operator, auditor or restore", u.Role)
		}
		if u.Role == RoleRestore && len(u.Groups) == 0 {
			bad(path+".groups", "a restore user needs the groups it may restore")
		}
		for j, g := range u.Groups {
			if !groups[g] {
				bad(fmt.Sprintf("%s.groups[%d]", path, j), "no group %q", g)
			}
		}
		if u.PasswordHash != "" && !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
			bad(path+".password_hash", "not an argon2id hash (set passwords with kura server passwd)")
		}
		for j, t := range u.Tokens {
			tp := fmt.Sprintf("%s.tokens[%d]", path, j)
			if t.ID == "" || tokens[t.ID] {
				bad(tp+".id", "missing or repeated token id %q", t.ID)
			}
			tokens[t.ID] = true
			if !strings.HasPrefix(t.Hash, "sha256:") || len(t.Hash) != len("sha256:")+64 {
				bad(tp+".hash", "not a token hash (sha256:<64 hex>)")
			}
			if t.Role != "" && !roleAtMost(t.Role, u.Role) {
				bad(tp+".role", "%q exceeds the owner's role %q", t.Role, u.Role)
			}
		}
	}
	if err := c.Notifications.Validate(); err != nil {
		var fe *notify.FieldError
		for _, e := range unjoin(err) {
			if errors.As(e, &fe) {
				bad("notifications."+fe.Path, "%v", fe.Err)
			} else {
				bad("notifications", "%v", e)
			}
		}
	}
	for _, r := range c.Notifications.Rules {
		for _, g := range r.Groups {
			if !groups[g] {
				bad("notifications.rules", "no group %q", g)
			}
		}
	}
	for _, p := range []struct {
		path string
		v    int
	}{{"limits.vms_per_host", c.Limits.VMsPerHost}, {"limits.vms_per_repository", c.Limits.VMsPerRepository}, {"limits.jobs", c.Limits.Jobs}} {
		if p.v < 0 {
			bad(p.path, "must not be negative")
		}
	}
	return ps
}

func (c *Config) validateGroup(bad func(string, string, ...any), i int, repos, conns, groups map[string]bool) {
	g := c.Groups[i]
	path := fmt.Sprintf("groups[%d]", i)
	checkName(bad, path+".name", g.Name, groups)
	switch {
	case g.Repository == "" && len(c.Repositories) != 1:
		bad(path+".repository", "missing: name one of the repositories")
	case g.Repository != "" && !repos[g.Repository]:
		bad(path+".repository", "no repository %q", g.Repository)
	}
	if len(g.Connections) == 0 && len(c.Connections) != 1 {
		bad(path+".connections", "missing: name the hypervisor connections whose VMs the group selects")
	}
	for j, cn := range g.Connections {
		if !conns[cn] {
			bad(fmt.Sprintf("%s.connections[%d]", path, j), "no connection %q", cn)
		}
	}
	if len(g.Selectors) == 0 {
		bad(path+".selectors", "missing: which VMs the group protects (name:web-*, any:, ...)")
	}
	switch g.Consistency {
	case "", "auto", "application", "crash", "pause":
	default:
		bad(path+".consistency", "%q: use auto, application, crash or pause", g.Consistency)
	}
	switch g.Unprotected {
	case "", "skip", "fail":
	default:
		bad(path+".unprotected", "%q: use skip or fail", g.Unprotected)
	}
	if g.Retries != nil && *g.Retries < 0 {
		bad(path+".retries", "must not be negative")
	}
	if g.Parallel < 0 {
		bad(path+".parallel", "must not be negative")
	}
	r := g.Retention
	checkRetention(bad, path+".retention", r)
	home := g.Repository
	if home == "" && len(c.Repositories) == 1 {
		home = c.Repositories[0].Name
	}
	to := map[string]bool{}
	for j, cp := range g.Copies {
		cpath := fmt.Sprintf("%s.copies[%d]", path, j)
		switch {
		case cp.To == "":
			bad(cpath+".to", "missing: name the destination repository")
		case !repos[cp.To]:
			bad(cpath+".to", "no repository %q", cp.To)
		case cp.To == home:
			bad(cpath+".to", "%q is the group's own repository", cp.To)
		case to[cp.To]:
			bad(cpath+".to", "%q is named twice", cp.To)
		}
		to[cp.To] = true
		if cp.Latest < 0 {
			bad(cpath+".latest", "must not be negative")
		}
		checkRetention(bad, cpath+".retention", cp.Retention)
	}
	hasPrune := false
	for j, s := range g.Schedules {
		sp := fmt.Sprintf("%s.schedules[%d]", path, j)
		switch s.Kind {
		case KindBackup, KindVerify:
		case KindPrune:
			hasPrune = true
		case KindCopy:
			if len(g.Copies) == 0 {
				bad(sp+".kind", "a copy schedule needs copies (copies: [{to: REPOSITORY}])")
			}
		case KindBootVerify:
			for k, p := range s.Probes {
				if _, err := instant.ParseProbe(p); err != nil {
					bad(fmt.Sprintf("%s.probes[%d]", sp, k), "%v", err)
				}
			}
			if s.Timeout < 0 || s.Parallel < 0 {
				bad(sp, "timeout and parallel must not be negative")
			}
		default:
			bad(sp+".kind", "%q: use backup, verify, prune, copy or boot-verify", s.Kind)
		}
		if s.Kind != KindBootVerify && (len(s.Probes) > 0 || s.Timeout != 0 || s.Parallel != 0) {
			bad(sp, "probes, timeout and parallel go with kind boot-verify")
		}
		if (s.Cron == "") == (s.Every == 0) {
			bad(sp, "give cron or every (one of them)")
		} else if err := (schedule.Spec{Cron: s.Cron, Every: s.Every.D(), Timezone: s.Timezone, Window: s.Window.D(), CatchUp: s.CatchUp}).Validate(); err != nil {
			var fe *schedule.FieldError
			if errors.As(err, &fe) {
				bad(sp+"."+fe.Field, "%v", fe.Err)
			} else {
				bad(sp, "%v", err)
			}
		}
		if s.Kind != KindVerify && (s.ReadData || s.OutdatedAfter != 0) {
			bad(sp, "read_data and outdated_after go with kind verify")
		}
		if s.Kind != KindBackup && s.Full {
			bad(sp+".full", "goes with kind backup")
		}
	}
	if hasPrune && r == (Retention{}) {
		bad(path+".retention", "a prune schedule needs a retention policy (it would keep everything)")
	}
	if _, err := g.Bandwidth.Compile(); err != nil {
		bad(path+".bandwidth", "%v", err)
	}
	for j, st := range g.Restore.Storage {
		if !filepath.IsAbs(st) && !strings.HasPrefix(st, "pool:") {
			bad(fmt.Sprintf("%s.restore.storage[%d]", path, j), "%q: an absolute directory or pool:NAME", st)
		}
	}
}

// checkRetention checks the counts of a retention policy.
func checkRetention(bad func(string, string, ...any), path string, r Retention) {
	for _, f := range []struct {
		name string
		v    int
	}{{"last", r.Last}, {"hourly", r.Hourly}, {"daily", r.Daily}, {"weekly", r.Weekly}, {"monthly", r.Monthly},
		{"quarterly", r.Quarterly}, {"yearly", r.Yearly}} {
		if f.v < -1 {
			bad(path+"."+f.name, "must be a count, or -1 for all")
		}
	}
	if r.Yearly > 99 {
		bad(path+".yearly", "at most 99 years")
	}
}

// unjoin splits an errors.Join error.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func checkName(bad func(string, string, ...any), path, name string, seen map[string]bool) {
	switch {
	case name == "":
		bad(path, "missing")
	case !nameRE.MatchString(name):
		bad(path, "%q: letters, digits, '.', '_' and '-' only", name)
	case seen[name]:
		bad(path, "%q is used twice", name)
	}
	seen[name] = true
}

// roleAtMost reports whether a token of role r grants no more than its
// owner's role: the same role, or a narrower one (admin → operator or
// auditor, operator → auditor). A restore token is a restore user's.
func roleAtMost(r, owner string) bool {
	if r == owner {
		return true
	}
	switch owner {
	case RoleAdmin:
		return r == RoleOperator || r == RoleAuditor
	case RoleOperator:
		return r == RoleAuditor
	}
	return false
}

// RoleAtMost reports whether a token role r stays within its owner's role.
func RoleAtMost(r, owner string) bool { return roleAtMost(r, owner) }
