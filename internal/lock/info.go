package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

// Kind is the kind of a lock.
type Kind string

// Lock kinds. The table of which kinds exclude which is in the package
// documentation and in docs/design/repository-format.md §8.
const (
	// Shared is held by writers (backups, copies into the repository).
	Shared Kind = "backup"
	// GC is held by garbage collection.
	GC Kind = "gc"
	// Exclusive excludes every other lock (key changes, repairs).
	Exclusive Kind = "exclusive"
	// Read is a reader lease: held by restores, exports, file reads,
	// verifies and instant recovery on the points they read. Data key
	// "points" lists those point ids, comma-separated.
	Read Kind = "read"
	// Prune is held while recovery points are deleted; it excludes GC so
	// that a deletion undone because a reader leased the point meanwhile
	// never overlaps a sweep.
	Prune Kind = "prune"
)

// Prefix is the name prefix of every lock object.
const Prefix = "locks/"

var nameRE = regexp.MustCompile(`^locks/(backup|gc|exclusive|read|prune)-([0-9a-f]{16})$`)

func (k Kind) valid() bool {
	return k == Shared || k == GC || k == Exclusive || k == Read || k == Prune
}

// Conflicts reports whether locks of kinds k and o cannot be held at once.
// An unknown kind conflicts with everything.
func (k Kind) Conflicts(o Kind) bool {
	if !k.valid() || !o.valid() {
		return true
	}
	switch {
	case k == Exclusive || o == Exclusive:
		return true
	case k == GC && (o == GC || o == Prune), o == GC && k == Prune:
		return true
	}
	return false
}

// record is the JSON stored in a lock object.
type record struct {
	Kind      Kind              `json:"kind"`
	Host      string            `json:"host"`
	PID       int               `json:"pid"`
	Created   time.Time         `json:"created"`
	Refreshed time.Time         `json:"refreshed"`
	Data      map[string]string `json:"data,omitempty"`
}

// Info describes a lock found in the repository.
type Info struct {
	ID          string // object name without "locks/"
	Kind        Kind
	Host        string
	PID         int
	Created     time.Time
	Refreshed   time.Time
	Data        map[string]string
	Stale       bool
	StaleReason string
}

func (i Info) String() string {
	return fmt.Sprintf("%s on host %s pid %d since %s", i.Kind, i.Host, i.PID, i.Created.UTC().Format(time.RFC3339))
}

// LockedError is returned by Acquire when a conflicting lock is held. It
// wraps ErrLocked.
type LockedError struct {
	Holder Info
}

func (e *LockedError) Error() string { return ErrLocked.Error() + " by " + e.Holder.String() }

// Unwrap returns ErrLocked.
func (e *LockedError) Unwrap() error { return ErrLocked }

// decode parses a lock object. Unreadable content yields an Info of
// unknown kind (conflicting with everything) dated by the object's mtime.
func decode(id string, data []byte, modTime time.Time) Info {
	var r record
	if err := json.Unmarshal(data, &r); err != nil || !r.Kind.valid() || r.Refreshed.IsZero() {
		return Info{ID: id, Kind: Kind("unknown"), Created: modTime, Refreshed: modTime}
	}
	return Info{ID: id, Kind: r.Kind, Host: r.Host, PID: r.PID, Created: r.Created,
		Refreshed: r.Refreshed, Data: r.Data}
}

// staleness fills Stale and StaleReason.
func (c *config) staleness(i *Info) {
	now := c.now()
	switch {
	case now.Sub(i.Refreshed) > c.staleAfter:
		i.Stale = true
		i.StaleReason = fmt.Sprintf("not refreshed since %s (more than %s)", i.Refreshed.UTC().Format(time.RFC3339), c.staleAfter)
	case i.Host != "" && i.Host == c.host && i.PID > 0 && !c.pidAlive(i.PID):
		i.Stale = true
		i.StaleReason = fmt.Sprintf("process %d on this host no longer exists", i.PID)
	}
}

// readAll reads every lock object, skipping ones deleted meanwhile, sorted
// by creation time.
func readAll(ctx context.Context, be storage.Backend, c *config) ([]Info, error) {
	var names []storage.ObjectInfo
	err := be.List(ctx, Prefix, func(oi storage.ObjectInfo) error {
		if nameRE.MatchString(oi.Name) {
			names = append(names, oi)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lock: list: %w", err)
	}
	infos := make([]Info, 0, len(names))
	for _, oi := range names {
		data, err := be.Get(ctx, oi.Name)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lock: read: %w", err)
		}
		info := decode(strings.TrimPrefix(oi.Name, Prefix), data, oi.ModTime)
		c.staleness(&info)
		infos = append(infos, info)
	}
	slices.SortFunc(infos, func(a, b Info) int { return a.Created.Compare(b.Created) })
	return infos, nil
}

// List returns every lock in the repository, oldest first, with its
// staleness judged now.
func List(ctx context.Context, be storage.Backend, opts ...Option) ([]Info, error) {
	return readAll(ctx, be, newConfig(opts))
}

// RemoveStale deletes every stale lock and returns those it removed.
func RemoveStale(ctx context.Context, be storage.Backend, opts ...Option) ([]Info, error) {
	c := newConfig(opts)
	infos, err := readAll(ctx, be, c)
	if err != nil {
		return nil, err
	}
	var removed []Info
	for _, i := range infos {
		if !i.Stale {
			continue
		}
		err := be.Delete(ctx, Prefix+i.ID)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return removed, fmt.Errorf("lock: remove stale %s: %w", i.ID, err)
		}
		c.logger.Info("removed stale lock", "id", i.ID, "kind", i.Kind, "host", i.Host, "pid", i.PID, "reason", i.StaleReason)
		removed = append(removed, i)
	}
	return removed, nil
}

// pidAlive reports whether a process exists on this host. A zombie counts
// as gone.
func pidAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// Format: pid (comm) state ...; comm may contain spaces and parens.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// RemoveStaleID deletes the lock id if it is (still) stale.
func RemoveStaleID(ctx context.Context, be storage.Backend, id string, opts ...Option) error {
	c := newConfig(opts)
	infos, err := readAll(ctx, be, c)
	if err != nil {
		return err
	}
	for _, i := range infos {
		if i.ID != id {
			continue
		}
		if !i.Stale {
			return fmt.Errorf("lock: %s is not stale (%s)", id, i)
		}
		if err := be.Delete(ctx, Prefix+id); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("lock: remove stale %s: %w", id, err)
		}
		c.logger.Info("removed stale lock", "id", i.ID, "kind", i.Kind, "host", i.Host, "pid", i.PID, "reason", i.StaleReason)
		return nil
	}
	return nil // gone meanwhile
}

// ProcessAlive reports whether a process exists on this host (a zombie
// counts as gone): the test lock staleness uses.
func ProcessAlive(pid int) bool { return pidAlive(pid) }
