package auth

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/config"
)

// Action is something a principal asks to do.
type Action string

// Actions.
const (
	// Read: see VMs, groups, points, jobs, capacity (restore users: of
	// their groups only).
	Read Action = "read"
	// Run: start, retry or cancel jobs (backup, verify, prune).
	Run Action = "run"
	// Restore: restore, export, list and download files (restore users:
	// of their groups, into what their groups allow).
	Restore Action = "restore"
	// Configure: change groups, users, notifications, settings.
	Configure Action = "configure"
	// Audit: read the audit log.
	Audit Action = "audit"
)

// Allows reports whether p may do a on something of group ("" for
// something not tied to a group: the whole server).
func (p Principal) Allows(a Action, group string) bool {
	switch p.Role {
	case config.RoleAdmin:
		return true
	case config.RoleOperator:
		return a != Configure && a != Audit
	case config.RoleAuditor:
		return a == Read || a == Audit
	case config.RoleRestore:
		return (a == Read || a == Restore) && group != "" && slices.Contains(p.Groups, group)
	}
	return false
}

// Check is Allows as an error wrapping ErrForbidden.
func (p Principal) Check(a Action, group string) error {
	if p.Allows(a, group) {
		return nil
	}
	what := "the server"
	if group != "" {
		what = "group " + group
	}
	return fmt.Errorf("%w: %s (%s) may not %s %s", ErrForbidden, p.User, p.Role, a, what)
}

// SeesAll reports whether p sees every group (everyone but restore users).
func (p Principal) SeesAll() bool { return p.Role != config.RoleRestore }

// RestoreTarget is where a restore would put a VM.
type RestoreTarget struct {
	// Storage are the directories (or pool:NAME) its disks go to.
	Storage []string
	// Networks are the networks its interfaces attach to.
	Networks []string
	// Overwrites names the VMs (by name) the restore replaces.
	Overwrites []string
}

// CheckRestore checks a restore of a point of group g by p: admins and
// operators may restore anything; a restore user only into the storage
// and networks g allows (a plan naming any other path, a host file say, is
// refused) and never over a VM outside its groups (inGroups tells whether
// a VM of that name belongs to one of them).
func (p Principal) CheckRestore(g config.Group, t RestoreTarget, inGroups func(vm string) bool) error {
	if err := p.Check(Restore, g.Name); err != nil {
		return err
	}
	if p.Role != config.RoleRestore {
		return nil
	}
	for _, s := range t.Storage {
		if !storageAllowed(g.Restore.Storage, s) {
			return fmt.Errorf("%w: group %s allows restores into %v, not %s", ErrForbidden, g.Name, g.Restore.Storage, s)
		}
	}
	for _, n := range t.Networks {
		if !slices.Contains(g.Restore.Networks, n) {
			return fmt.Errorf("%w: group %s allows networks %v, not %s", ErrForbidden, g.Name, g.Restore.Networks, n)
		}
	}
	for _, vm := range t.Overwrites {
		if !inGroups(vm) {
			return fmt.Errorf("%w: %s may not overwrite VM %s, which is outside its groups", ErrForbidden, p.User, vm)
		}
	}
	return nil
}

// storageAllowed reports whether path lies in one of the allowed
// directories (or is an allowed pool:NAME).
func storageAllowed(allowed []string, path string) bool {
	if strings.HasPrefix(path, "pool:") {
		return slices.Contains(allowed, path)
	}
	clean := filepath.Clean(path)
	if !filepath.IsAbs(clean) {
		return false
	}
	for _, a := range allowed {
		if strings.HasPrefix(a, "pool:") {
			continue
		}
		a = filepath.Clean(a)
		if clean == a || strings.HasPrefix(clean, a+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// Throttle slows down password guessing: after Free failures of a user
// from an address, each further attempt must wait twice as long as the
// previous one (from 1 s up to 15 min); a success resets it.
type Throttle struct {
	Free int
	mu   sync.Mutex
	m    map[string]*failures
	now  func() time.Time
}

type failures struct {
	n    int
	next time.Time
}

// NewThrottle returns a throttle allowing free failed attempts.
func NewThrottle(free int, now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{Free: free, m: map[string]*failures{}, now: now}
}

// Allow reports whether an attempt for key may be made now, and if not,
// when.
func (t *Throttle) Allow(key string) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[key]
	if f == nil {
		return true, 0
	}
	if wait := f.next.Sub(t.now()); wait > 0 {
		return false, wait
	}
	return true, 0
}

// Fail records a failed attempt.
func (t *Throttle) Fail(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[key]
	if f == nil {
		f = &failures{}
		t.m[key] = f
	}
	f.n++
	if f.n > t.Free {
		d := time.Second << min(f.n-t.Free-1, 10)
		f.next = t.now().Add(min(d, 15*time.Minute))
	}
	if len(t.m) > 100_000 { // bound the memory an attacker can make us use
		for k, v := range t.m {
			if t.now().After(v.next) {
				delete(t.m, k)
			}
		}
	}
}

// Succeed forgets the failures of key.
func (t *Throttle) Succeed(key string) {
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
}
