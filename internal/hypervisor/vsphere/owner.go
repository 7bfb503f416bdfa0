package vsphere

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/procinfo"
)

// A kura snapshot's description ends with an owner line naming the
// process whose session it is:
//
//	kura-owner: host=<hostname> pid=<pid> start=<clock ticks>
//
// The next backup of the VM, and kura cleanup, tell a killed session's
// snapshot (reclaimed) from a live one's (left alone) by it.
const ownerKey = "kura-owner:"

// remoteStale is the age after which a snapshot whose session this host
// cannot check (a kura process on another host, or no owner line) counts
// as a killed run's.
const remoteStale = 24 * time.Hour

type snapOwner struct {
	Host  string
	PID   int
	Start uint64
}

// liveSnaps holds the names of the snapshots of sessions this process has
// open (or is opening), across Connectors.
var liveSnaps sync.Map

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// description is the description of a new snapshot of this process.
func description() string {
	return fmt.Sprintf("kura backup snapshot: removed when the backup ends; kura cleanup removes it after a killed run\n%s host=%s pid=%d start=%d",
		ownerKey, hostname(), os.Getpid(), procinfo.Self())
}

// parseOwner reads the owner line of a description; ok is false without one
// (a snapshot of a kura before owner lines, or edited).
func parseOwner(desc string) (o snapOwner, ok bool) {
	i := strings.LastIndex(desc, ownerKey)
	if i < 0 {
		return o, false
	}
	for _, f := range strings.Fields(desc[i+len(ownerKey):]) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "host":
			o.Host = v
		case "pid":
			o.PID, _ = strconv.Atoi(v)
		case "start":
			o.Start, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	return o, o.Host != "" && o.PID > 0
}

// snapState is what is known of the session of a kura snapshot.
type snapState int

const (
	stateLive    snapState = iota // a session of a running process
	stateDead                     // its process is gone: a killed run's
	stateUnknown                  // younger than remoteStale, not checkable here
)

// kuraSnap is one kura snapshot of a VM and what is known of its session.
type kuraSnap struct {
	tree  types.VirtualMachineSnapshotTree
	owner snapOwner
	state snapState
	// repo is the owner tag of the repository the backup was for ("" for
	// names without one).
	repo string
}

// classify tells the state of a kura snapshot's session.
func classify(t types.VirtualMachineSnapshotTree) kuraSnap {
	k := kuraSnap{tree: t, state: stateUnknown}
	k.repo, _ = hypervisor.CheckpointOwner(t.Name)
	o, ok := parseOwner(t.Description)
	k.owner = o
	switch {
	case !ok || o.Host != hostname():
		if time.Since(t.CreateTime) > remoteStale {
			k.state = stateDead
		}
	case o.PID == os.Getpid():
		k.state = stateDead
		if _, open := liveSnaps.Load(t.Name); open {
			k.state = stateLive
		}
	case procinfo.Alive(o.PID, o.Start):
		k.state = stateLive
	default:
		k.state = stateDead
	}
	return k
}

// who describes the snapshot's session for messages.
func (k kuraSnap) who() string {
	if k.owner.PID == 0 {
		return "a kura run"
	}
	return fmt.Sprintf("kura process %d on %s", k.owner.PID, k.owner.Host)
}

// kuraSnapshots lists the kura snapshots of a snapshot tree.
func kuraSnapshots(tree []types.VirtualMachineSnapshotTree) []kuraSnap {
	var out []kuraSnap
	for _, n := range tree {
		if strings.HasPrefix(n.Name, Prefix) {
			out = append(out, classify(n))
		}
		out = append(out, kuraSnapshots(n.ChildSnapshotList)...)
	}
	return out
}
