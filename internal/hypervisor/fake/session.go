package fake

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/libvirt/domxml"
)

type session struct {
	c           *Connector
	st          *vmState
	disks       []hypervisor.SessionDisk
	consistency hypervisor.Consistency
	checkpoint  string
	owner       string
	notes       []string
	config      []byte

	mu       sync.Mutex
	read     int64
	failRead int64
	closed   bool
	dead     bool // its process is gone (Abandon)
}

type reader struct {
	s    *session
	data []byte
}

func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	r.s.mu.Lock()
	if r.s.closed {
		r.s.mu.Unlock()
		return 0, fmt.Errorf("fake read: session closed")
	}
	r.s.read += int64(len(p))
	fail := r.s.failRead > 0 && r.s.read > r.s.failRead
	r.s.mu.Unlock()
	if fail {
		return 0, fmt.Errorf("fake read at %d: %w", off, ErrInjected)
	}
	if off < 0 || off >= int64(len(r.data)) {
		return 0, fmt.Errorf("fake read at %d: beyond disk size %d", off, len(r.data))
	}
	n := copy(p, r.data[off:])
	if n < len(p) {
		return n, fmt.Errorf("fake read at %d: short read", off)
	}
	return n, nil
}

// BeginBackup implements hypervisor.Connector.
func (c *Connector) BeginBackup(_ context.Context, vm hypervisor.VM, opts hypervisor.BackupOptions) (hypervisor.BackupSession, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.find(vm.UUID)
	if st == nil {
		st = c.find(vm.Name)
	}
	if st == nil {
		return nil, fmt.Errorf("fake begin: %w: %s", hypervisor.ErrVMNotFound, vm.Name)
	}
	if st.spec.FailBegin != nil {
		return nil, fmt.Errorf("fake begin %s: %w", vm.Name, st.spec.FailBegin)
	}
	var notes []string
	switch {
	case st.job != nil && st.job.dead:
		// What a killed process left: reclaimed by the next backup.
		st.job = nil
		notes = append(notes, "reclaimed leftovers of a killed kura process: backup job")
	case st.job != nil:
		return nil, fmt.Errorf("fake begin %s: %w", vm.Name, hypervisor.ErrBusy)
	}
	if opts.NewCheckpoint == "" {
		return nil, fmt.Errorf("fake begin %s: no checkpoint name", vm.Name)
	}
	if st.checkpoint(opts.NewCheckpoint) >= 0 {
		return nil, fmt.Errorf("fake begin %s: checkpoint %s: %w", vm.Name, opts.NewCheckpoint, hypervisor.ErrExists)
	}
	var base *checkpoint
	if opts.BaseCheckpoint != "" {
		i := st.checkpoint(opts.BaseCheckpoint)
		if i < 0 {
			return nil, fmt.Errorf("fake begin %s: base %s: %w", vm.Name, opts.BaseCheckpoint, hypervisor.ErrCheckpointMissing)
		}
		base = st.checkpoints[i]
	}
	s := &session{c: c, st: st, checkpoint: opts.NewCheckpoint, owner: opts.Owner, failRead: st.spec.FailReadsAfter,
		config: st.domainXML(c.ImageDir), notes: notes}
	switch {
	case st.spec.State == hypervisor.PowerOff:
		s.consistency = hypervisor.ConsistencyOff
	case opts.Consistency == hypervisor.ModePause:
		s.consistency = hypervisor.ConsistencyPause
	case opts.Consistency == hypervisor.ModeCrash:
		s.consistency = hypervisor.ConsistencyCrash
	case st.spec.NoAgent && opts.Consistency == hypervisor.ModeApplication:
		return nil, fmt.Errorf("fake begin %s: %w", vm.Name, hypervisor.ErrNoAgent)
	case st.spec.NoAgent:
		s.consistency = hypervisor.ConsistencyCrash
		s.notes = append(s.notes, "guest agent not available: crash-consistent")
	default:
		s.consistency = hypervisor.ConsistencyApplication
	}
	cp := &checkpoint{name: opts.NewCheckpoint, dirty: map[string][]bool{}}
	for _, d := range st.disks {
		cp.dirty[d.spec.Target] = make([]bool, len(d.alloc))
		if d.spec.Unprotectable != "" || (len(opts.Disks) > 0 && !slices.Contains(opts.Disks, d.spec.Target)) {
			continue
		}
		sd := hypervisor.SessionDisk{Disk: st.vm(c.ImageDir).Disks[slices.Index(st.disks, d)],
			Reader: &reader{s: s, data: slices.Clone(d.data)}, Incremental: base != nil}
		for b := range d.alloc {
			kind := hypervisor.ExtentData
			clean := base != nil && !base.dirty[d.spec.Target][b]
			switch {
			case !d.alloc[b] && clean:
				kind = hypervisor.ExtentUnchangedZero
			case !d.alloc[b]:
				kind = hypervisor.ExtentZero
			case clean:
				kind = hypervisor.ExtentUnchanged
			}
			sd.Extents = appendExtent(sd.Extents, int64(b)*BlockSize, BlockSize, kind)
		}
		s.disks = append(s.disks, sd)
	}
	st.checkpoints = append(st.checkpoints, cp)
	st.job = s
	return s, nil
}

func appendExtent(ext []hypervisor.Extent, off, n int64, k hypervisor.ExtentKind) []hypervisor.Extent {
	if l := len(ext); l > 0 && ext[l-1].Kind == k && ext[l-1].Offset+ext[l-1].Length == off {
		ext[l-1].Length += n
		return ext
	}
	return append(ext, hypervisor.Extent{Offset: off, Length: n, Kind: k})
}

func (s *session) Disks() []hypervisor.SessionDisk     { return s.disks }
func (s *session) Config() ([]byte, string)            { return s.config, domxml.ConfigFormat }
func (s *session) Consistency() hypervisor.Consistency { return s.consistency }
func (s *session) Checkpoint() string                  { return s.checkpoint }
func (s *session) Notes() []string                     { return s.notes }

// Close ends the session. It is idempotent and tolerates a job already
// removed by RemoveLeftover.
func (s *session) Close(_ context.Context, success bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	c, st := s.c, s.st
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.job != s {
		return nil // removed as a leftover
	}
	st.job = nil
	i := st.checkpoint(s.checkpoint)
	if i < 0 {
		return nil
	}
	if !success {
		st.checkpoints = slices.Delete(st.checkpoints, i, i+1)
		return nil
	}
	st.checkpoints = slices.DeleteFunc(st.checkpoints, func(cp *checkpoint) bool {
		return hypervisor.Superseded(cp.name, s.owner, s.checkpoint) && st.checkpoint(cp.name) < i
	})
	return nil
}

// Leftovers implements hypervisor.Connector: abandoned jobs (a fake has no
// processes: a session not closed is abandoned), and kura checkpoints not
// in q.Keep, those of other owners as foreign.
func (c *Connector) Leftovers(_ context.Context, q hypervisor.LeftoverQuery) ([]hypervisor.Leftover, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []hypervisor.Leftover
	for _, st := range c.vms {
		if len(q.VMs) > 0 && !slices.Contains(q.VMs, st.spec.Name) && !slices.Contains(q.VMs, st.spec.UUID) {
			continue
		}
		if st.job != nil && st.job.dead {
			out = append(out, hypervisor.Leftover{VM: st.spec.Name, Kind: "backup-job", Name: st.job.checkpoint,
				Detail: "backup job of a killed process"})
		}
		for _, cp := range st.checkpoints {
			owner, ours := hypervisor.CheckpointOwner(cp.name)
			if !ours || q.Keep[cp.name] || (st.job != nil && !st.job.dead && st.job.checkpoint == cp.name) {
				continue // not kura's, still referenced, or made by a live session
			}
			l := hypervisor.Leftover{VM: st.spec.Name, Kind: "checkpoint", Name: cp.name, Owner: owner,
				Detail: "kura checkpoint not referenced by any recovery point"}
			if owner != "" && owner != q.Owner {
				l.Foreign, l.Detail = true, "checkpoint of repository "+owner+"…: kept"
			}
			out = append(out, l)
		}
	}
	return out, nil
}

// RemoveLeftover implements hypervisor.Connector.
func (c *Connector) RemoveLeftover(_ context.Context, l hypervisor.Leftover) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.find(l.VM)
	if st == nil {
		return fmt.Errorf("fake remove leftover: %w: %s", hypervisor.ErrVMNotFound, l.VM)
	}
	if l.Foreign {
		return fmt.Errorf("fake remove leftover %s: it belongs to repository %s", l.Name, l.Owner)
	}
	switch l.Kind {
	case "backup-job":
		if st.job != nil {
			st.job.mu.Lock()
			st.job.closed = true
			st.job.mu.Unlock()
			st.job = nil
		}
	case "checkpoint":
		if i := st.checkpoint(l.Name); i >= 0 {
			st.checkpoints = slices.Delete(st.checkpoints, i, i+1)
		}
	default:
		return fmt.Errorf("fake remove leftover: unknown kind %q", l.Kind)
	}
	return nil
}

// Abandon opens a backup session of vm and leaves it as a killed process
// would: never closed, its owner gone. Leftovers reports it; the next
// BeginBackup of the VM reclaims it.
func (c *Connector) Abandon(ctx context.Context, vm hypervisor.VM, opts hypervisor.BackupOptions) error {
	s, err := c.BeginBackup(ctx, vm, opts)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.(*session).dead = true
	return nil
}
