package libvirt

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/procinfo"
)

// ownerFile, in a session's scratch directory, names the kura process that
// owns the session: {"pid":…, "start":…, "created":…}, start being the
// process start time (field 22 of /proc/<pid>/stat) so that a recycled pid
// is not mistaken for the owner.
const ownerFile = "owner.json"

type sessionOwner struct {
	PID     int       `json:"pid"`
	Start   uint64    `json:"start"`
	Created time.Time `json:"created"`
}

// liveDirs holds the scratch directories of the sessions this process has
// open, across Connectors.
var liveDirs sync.Map

// writeOwner records this process as the owner of dir.
func writeOwner(dir string) error {
	b, err := json.Marshal(sessionOwner{PID: os.Getpid(), Start: procinfo.Self(), Created: time.Now().UTC()})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), b, 0o600); err != nil {
		return fmt.Errorf("record session owner: %w", err)
	}
	liveDirs.Store(dir, true)
	return nil
}

// dirOwner says which process owns scratch directory dir and whether it is
// alive. A directory of this process is alive only while its session is
// open; one without an owner file (made by a kura before owner files) is
// dead once older than a minute (a younger one may be being set up).
func dirOwner(dir string) (sessionOwner, bool) {
	var o sessionOwner
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil || json.Unmarshal(b, &o) != nil || o.PID <= 0 {
		fi, serr := os.Stat(dir)
		return o, serr == nil && time.Since(fi.ModTime()) < time.Minute
	}
	if o.PID == os.Getpid() {
		_, open := liveDirs.Load(dir)
		return o, open
	}
	return o, procinfo.Alive(o.PID, o.Start)
}

// ownerDetail describes the owner of a session for messages.
func ownerDetail(o sessionOwner) string {
	if o.PID <= 0 {
		return "a kura process"
	}
	s := fmt.Sprintf("kura process %d", o.PID)
	if !o.Created.IsZero() {
		s += " (since " + o.Created.Local().Format(time.RFC3339) + ")"
	}
	return s
}

// errNotOurs is returned when asked to touch a path outside the scratch dir.
var errNotOurs = errors.New("not in kura's scratch directory")
