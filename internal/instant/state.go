package instant

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kurabackup/kura/internal/nbd"
)

// Phases of an instant VM.
const (
	PhaseStarting  = "starting"  // being set up by kura instant
	PhaseServing   = "serving"   // running from the repository
	PhaseMigrating = "migrating" // disks being copied to local storage
	PhaseMigrated  = "migrated"  // on local disks; serving ends
	PhaseStopped   = "stopped"   // removed; serving ends
)

// State is what kura remembers of one instant VM (StateDir/NAME/state.json).
type State struct {
	Name     string `json:"name"`
	UUID     string `json:"uuid"`
	Point    string `json:"point"`
	SourceVM string `json:"source_vm"`
	// SourceUUID is the UUID of the VM the point was taken of.
	SourceUUID string `json:"source_uuid,omitempty"`
	// Repo is the repository location and RepoID its id.
	Repo   string `json:"repo"`
	RepoID string `json:"repo_id"`
	// Dir is the directory of the NBD socket (made by the hypervisor
	// connector) and Socket the socket.
	Dir     string      `json:"dir"`
	Socket  string      `json:"socket"`
	Disks   []StateDisk `json:"disks"`
	Phase   string      `json:"phase"`
	Created time.Time   `json:"created"`
	// Error is the last migration failure.
	Error string `json:"error,omitempty"`
}

// StateDisk is one disk of an instant VM.
type StateDisk struct {
	Target  string `json:"target"`
	Index   string `json:"index"`
	Size    int64  `json:"size"`
	Overlay string `json:"overlay"`
	// Dest and Format are where migration copies the disk; Migrated
	// once the VM runs on the copy.
	Dest     string `json:"dest,omitempty"`
	Format   string `json:"format,omitempty"`
	Migrated bool   `json:"migrated,omitempty"`
}

// Stats is what the server last wrote about its exports.
type Stats struct {
	Updated time.Time                  `json:"updated"`
	Exports map[string]nbd.ExportStats `json:"exports"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("instant vm name %q: use 1-64 letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

func (m *Manager) vmDir(name string) string { return filepath.Join(m.StateDir, name) }

func (m *Manager) statePath(name string) string { return filepath.Join(m.vmDir(name), "state.json") }

// LogPath is where the serving process of name writes its log.
func (m *Manager) LogPath(name string) string { return filepath.Join(m.vmDir(name), "server.log") }

func (m *Manager) statsPath(name string) string { return filepath.Join(m.vmDir(name), "stats.json") }

// pidPath holds the PID of the process serving name. It is written
// without the state lock, which kura instant holds while it waits for
// the server.
func (m *Manager) pidPath(name string) string { return filepath.Join(m.vmDir(name), "server.pid") }

// serverPID returns the PID of the live process serving name (0 if none).
func (m *Manager) serverPID(name string) int {
	b, err := os.ReadFile(m.pidPath(name))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !pidAlive(pid) {
		return 0
	}
	return pid
}

// load reads the state of name.
func (m *Manager) load(name string) (*State, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(m.statePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read state of instant vm %s: %w", name, err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state of instant vm %s (%s) is damaged: %w", name, m.statePath(name), err)
	}
	return &st, nil
}

// writeJSON replaces path atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (m *Manager) save(st *State) error {
	if err := writeJSON(m.statePath(st.Name), st); err != nil {
		return fmt.Errorf("write state of instant vm %s: %w", st.Name, err)
	}
	return nil
}

// lockName takes the exclusive lock of name's state (created with its
// directory when create is true). Unlock with the returned function.
func (m *Manager) lockName(name string, create bool) (func(), error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	dir := m.vmDir(name)
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock instant vm %s: %w", name, err)
	}
	return func() { f.Close() }, nil
}

// names lists the instant VMs with a state.
func (m *Manager) names() ([]string, error) {
	ents, err := os.ReadDir(m.StateDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if _, err := os.Stat(m.statePath(e.Name())); e.IsDir() && err == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (m *Manager) readStats(name string) Stats {
	var s Stats
	if b, err := os.ReadFile(m.statsPath(name)); err == nil {
		_ = json.Unmarshal(b, &s)
	}
	return s
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// allocated is the disk space a file uses (0 when it is missing).
func allocated(path string) int64 {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return 0
	}
	return st.Blocks * 512
}
