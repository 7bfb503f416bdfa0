package instant

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// StartOptions control Start.
type StartOptions struct {
	// Name of the new VM (default: the point's VM name + "-instant").
	Name string
	// Storage is where the overlays go: an absolute directory or a
	// storage pool (default: beside the original's disks).
	Storage string
	// NetworkMap maps networks or bridges of the saved configuration.
	NetworkMap map[string]string
	// Start boots the VM once defined.
	Start bool
}

// StartReport says what Start made.
type StartReport struct {
	Name     string      `json:"name"`
	UUID     string      `json:"uuid"`
	Point    string      `json:"point"`
	SourceVM string      `json:"source_vm"`
	Socket   string      `json:"socket"`
	Disks    []StateDisk `json:"disks"`
	Started  bool        `json:"started"`
	// ServingSeconds is the time until the disks were served, Seconds
	// until the VM was defined (and started).
	ServingSeconds float64 `json:"serving_seconds"`
	Seconds        float64 `json:"seconds"`
}

// Start makes an instant VM of point: its disks are served from the
// repository (by a process Launch starts), local overlays on them take
// every write, and the VM is defined (and started with opts.Start). If any
// step fails, what was made is removed.
func (m *Manager) Start(ctx context.Context, point string, opts StartOptions) (rep *StartReport, err error) {
	t0 := time.Now()
	host, err := m.host()
	if err != nil {
		return nil, err
	}
	lease, pm, err := m.openPoint(ctx, "instant setup", point)
	if err != nil {
		return nil, err
	}
	defer func() { _ = lease.Release(context.WithoutCancel(ctx)) }()
	name := opts.Name
	if name == "" {
		name = pm.VM.Name + "-instant"
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if _, err := m.Conn.LookupVM(ctx, name); err == nil {
		return nil, fmt.Errorf("vm %s: %w", name, ErrExists)
	} else if !errors.Is(err, hypervisor.ErrVMNotFound) {
		return nil, err
	}
	storage, err := m.storageDir(ctx, pm, opts.Storage)
	if err != nil {
		return nil, err
	}
	unlock, err := m.lockName(name, true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer func() {
		// Failed before any state was written: leave no empty directory.
		if _, serr := os.Stat(m.statePath(name)); serr != nil {
			_ = os.RemoveAll(m.vmDir(name))
		}
	}()
	if _, err := os.Stat(m.statePath(name)); err == nil {
		return nil, fmt.Errorf("instant vm %s: %w (see kura instant list)", name, ErrExists)
	}
	st := &State{Name: name, Point: pm.ID, SourceVM: pm.VM.Name, SourceUUID: pm.VM.UUID, Repo: m.RepoLocation,
		RepoID: m.Repo.Config().ID, Phase: PhaseStarting, Created: time.Now().UTC()}
	for _, d := range pm.Disks {
		ov := filepath.Join(storage, name+"-"+d.Target+".instant.qcow2")
		if _, err := os.Lstat(ov); err == nil {
			return nil, fmt.Errorf("overlay %s: %w", ov, ErrExists)
		}
		st.Disks = append(st.Disks, StateDisk{Target: d.Target, Index: d.Index, Size: d.Size, Overlay: ov})
	}
	tag := hypervisor.InstantTag{Role: hypervisor.RoleInstant, Point: pm.ID, Source: pm.VM.UUID}
	if st.Dir, err = host.InstantDir(ctx, "kura-instant-"+randomID(), tag); err != nil {
		return nil, err
	}
	st.Socket = filepath.Join(st.Dir, "nbd.sock")
	tag.Dir = st.Dir
	if err := m.save(st); err != nil {
		return nil, err
	}
	defined := false
	defer func() {
		if err != nil {
			m.undoStart(context.WithoutCancel(ctx), st, defined)
		}
	}()
	if err := m.launch(ctx, name); err != nil {
		return nil, fmt.Errorf("start serving %s: %w", name, err)
	}
	if err := m.waitReady(ctx, st); err != nil {
		return nil, err
	}
	served := time.Since(t0)
	disks := make([]hypervisor.InstantDisk, len(st.Disks))
	for i, d := range st.Disks {
		disks[i] = hypervisor.InstantDisk{Target: d.Target, Overlay: d.Overlay, Size: d.Size, Socket: st.Socket, Export: d.Target}
		if err := host.CreateOverlay(ctx, disks[i]); err != nil {
			return nil, err
		}
	}
	vm, err := host.DefineInstant(ctx, hypervisor.InstantSpec{Config: pm.Config, Name: name, Disks: disks,
		NetworkMap: opts.NetworkMap, Tag: tag})
	if err != nil {
		return nil, err
	}
	defined = true
	st.UUID, st.Phase = vm.UUID, PhaseServing
	if err := m.save(st); err != nil {
		return nil, err
	}
	rep = &StartReport{Name: name, UUID: vm.UUID, Point: pm.ID, SourceVM: pm.VM.Name, Socket: st.Socket, Disks: st.Disks,
		ServingSeconds: served.Seconds()}
	if opts.Start {
		if err := m.Conn.StartVM(ctx, name); err != nil {
			return nil, fmt.Errorf("start vm %s: %w", name, err)
		}
		rep.Started = true
	}
	rep.Seconds = time.Since(t0).Seconds()
	m.log().Info("instant vm ready", "vm", name, "point", pm.ID, "seconds", rep.Seconds)
	return rep, nil
}

// undoStart removes what a failed Start made.
func (m *Manager) undoStart(ctx context.Context, st *State, defined bool) {
	if defined {
		if err := m.Conn.UndefineVM(ctx, st.Name); err != nil && !errors.Is(err, hypervisor.ErrVMNotFound) {
			m.log().Warn("undo instant vm: undefine", "vm", st.Name, "err", err)
		}
	}
	st.Phase = PhaseStopped
	_ = m.save(st)
	if err := m.StopServing(ctx, st.Name); err != nil {
		m.log().Warn("undo instant vm: stop serving", "vm", st.Name, "err", err)
	}
	for _, d := range st.Disks {
		_ = os.Remove(d.Overlay)
	}
	_ = os.RemoveAll(st.Dir)
	_ = os.RemoveAll(m.vmDir(st.Name))
}

// MigrateOptions control Migrate.
type MigrateOptions struct {
	// Storage is where the local images go (default: beside the overlays).
	Storage string
	// Format is qcow2 (default) or raw.
	Format string
	// Bandwidth limits each disk's copy, in bytes per second (0: none).
	Bandwidth int64
	// Progress is called as the copy advances.
	Progress func(target string, done, total int64)
}

// MigrateReport says where the disks went.
type MigrateReport struct {
	Name    string      `json:"name"`
	Disks   []StateDisk `json:"disks"`
	Seconds float64     `json:"seconds"`
}

// Migrate copies the disks of running instant VM name to local images
// while it runs, switches the VM to them, and stops serving: the VM
// becomes an ordinary one. On failure or cancellation the VM keeps
// running from the repository with every write, and Migrate can run again.
func (m *Manager) Migrate(ctx context.Context, name string, opts MigrateOptions) (*MigrateReport, error) {
	t0 := time.Now()
	host, err := m.host()
	if err != nil {
		return nil, err
	}
	if opts.Format == "" {
		opts.Format = "qcow2"
	}
	if opts.Format != "qcow2" && opts.Format != "raw" {
		return nil, fmt.Errorf("format %q: use qcow2 or raw", opts.Format)
	}
	unlock, err := m.lockName(name, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := m.load(name)
	if err != nil {
		return nil, err
	}
	if st.Phase != PhaseServing && st.Phase != PhaseMigrating {
		return nil, fmt.Errorf("instant vm %s is %s, not serving", name, st.Phase)
	}
	vm, err := m.Conn.LookupVM(ctx, st.UUID)
	if err != nil {
		return nil, err
	}
	if vm.State != hypervisor.PowerOn {
		return nil, fmt.Errorf("migrate %s: %w (%s): the disks are copied while it runs; start it first", name, ErrNotRunning, vm.State)
	}
	if m.serverPID(name) == 0 && m.localServer(name) == nil {
		return nil, fmt.Errorf("migrate %s: nobody serves its disks: run kura instant serve %s first", name, name)
	}
	dir := opts.Storage
	if dir == "" {
		dir = filepath.Dir(st.Disks[0].Overlay)
	} else if !filepath.IsAbs(dir) {
		if dir, err = host.StoragePoolPath(ctx, dir); err != nil {
			return nil, fmt.Errorf("storage pool %s: %w", opts.Storage, err)
		}
	}
	var copies []hypervisor.DiskCopy
	for i := range st.Disks {
		d := &st.Disks[i]
		if d.Migrated {
			continue
		}
		dest := filepath.Join(dir, name+"-"+d.Target+"."+opts.Format)
		if _, err := os.Lstat(dest); err == nil {
			if d.Dest != dest {
				return nil, fmt.Errorf("migrate %s disk %s: %s: %w", name, d.Target, dest, ErrExists)
			}
			// The partial copy of an attempt that was killed.
			if err := os.Remove(dest); err != nil {
				return nil, err
			}
		}
		d.Dest, d.Format = dest, opts.Format
		copies = append(copies, hypervisor.DiskCopy{Target: d.Target, Dest: dest, Format: opts.Format})
	}
	st.Phase, st.Error = PhaseMigrating, ""
	if err := m.save(st); err != nil {
		return nil, err
	}
	cerr := host.CopyDisks(ctx, st.UUID, copies, hypervisor.CopyOptions{Bandwidth: opts.Bandwidth, Progress: opts.Progress})
	bg := context.WithoutCancel(ctx)
	if now, err := m.Conn.LookupVM(bg, st.UUID); err == nil {
		for i := range st.Disks {
			for _, vd := range now.Disks {
				if vd.Target == st.Disks[i].Target && st.Disks[i].Dest != "" && vd.Source == st.Disks[i].Dest {
					st.Disks[i].Migrated = true
				}
			}
		}
	}
	if cerr != nil {
		st.Phase, st.Error = PhaseServing, cerr.Error()
		_ = m.save(st)
		return nil, fmt.Errorf("migration of %s stopped; the vm keeps running from the repository with every write kept: "+
			"run kura instant migrate %s again: %w", name, name, cerr)
	}
	for _, d := range st.Disks {
		if !d.Migrated {
			st.Phase = PhaseServing
			_ = m.save(st)
			return nil, fmt.Errorf("migration of %s: disk %s is not on its copy after the switch", name, d.Target)
		}
	}
	if err := host.FinishInstant(bg, st.UUID); err != nil {
		return nil, err
	}
	st.Phase = PhaseMigrated
	if err := m.save(st); err != nil {
		return nil, err
	}
	if err := m.StopServing(bg, name); err != nil {
		m.log().Warn("stop serving a migrated vm", "vm", name, "err", err)
	}
	for _, d := range st.Disks {
		_ = os.Remove(d.Overlay)
	}
	_ = os.RemoveAll(st.Dir)
	_ = os.RemoveAll(m.vmDir(name))
	m.log().Info("instant vm migrated to local disks", "vm", name)
	return &MigrateReport{Name: name, Disks: st.Disks, Seconds: time.Since(t0).Seconds()}, nil
}

func (m *Manager) localServer(name string) *localServer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.local[name]
}

// StopOptions control Stop.
type StopOptions struct {
	// Discard removes the overlays (the guest's writes); otherwise they
	// are kept and reported.
	Discard bool
	// Force powers a running VM off first.
	Force bool
}

// StopReport says what Stop left.
type StopReport struct {
	Name string `json:"name"`
	// Kept are the overlays left on disk (their backing is the point).
	Kept []string `json:"kept,omitempty"`
}

// Stop ends instant VM name: the VM is undefined (refused while it runs
// unless opts.Force), serving stops, the overlays are removed with
// opts.Discard.
func (m *Manager) Stop(ctx context.Context, name string, opts StopOptions) (*StopReport, error) {
	unlock, err := m.lockName(name, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := m.load(name)
	if err != nil {
		return nil, err
	}
	key := st.UUID
	if key == "" {
		key = name
	}
	vm, err := m.Conn.LookupVM(ctx, key)
	switch {
	case err == nil:
		if vm.State != hypervisor.PowerOff && !opts.Force {
			return nil, fmt.Errorf("stop %s: %w", name, ErrRunning)
		}
		if err := m.Conn.UndefineVM(ctx, key); err != nil {
			return nil, err
		}
	case !errors.Is(err, hypervisor.ErrVMNotFound):
		return nil, err
	}
	st.Phase = PhaseStopped
	if err := m.save(st); err != nil {
		return nil, err
	}
	if err := m.StopServing(ctx, name); err != nil {
		return nil, err
	}
	rep := &StopReport{Name: name}
	for _, d := range st.Disks {
		if opts.Discard {
			if err := os.Remove(d.Overlay); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		} else if _, err := os.Stat(d.Overlay); err == nil {
			rep.Kept = append(rep.Kept, d.Overlay)
		}
	}
	_ = os.RemoveAll(st.Dir)
	_ = os.RemoveAll(m.vmDir(name))
	return rep, nil
}

// Entry describes one instant VM for List.
type Entry struct {
	State
	VMState hypervisor.PowerState `json:"vm_state"`
	// ServerPID is the serving process (0: not served).
	ServerPID int `json:"server_pid"`
	// OverlayBytes is the space the overlays use (the guest's writes).
	OverlayBytes int64 `json:"overlay_bytes"`
	// BytesServed and BytesHoles count what the server answered.
	BytesServed int64 `json:"bytes_served"`
	BytesHoles  int64 `json:"bytes_holes"`
}

// List describes every instant VM.
func (m *Manager) List(ctx context.Context) ([]Entry, error) {
	names, err := m.names()
	if err != nil {
		return nil, err
	}
	out := []Entry{}
	for _, n := range names {
		st, err := m.load(n)
		if err != nil {
			m.log().Warn("instant vm state", "vm", n, "err", err)
			continue
		}
		e := Entry{State: *st, ServerPID: m.serverPID(n), VMState: "missing"}
		if ls := m.localServer(n); ls != nil && e.ServerPID == 0 {
			e.ServerPID = os.Getpid()
		}
		if st.UUID != "" {
			if vm, err := m.Conn.LookupVM(ctx, st.UUID); err == nil {
				e.VMState = vm.State
			}
		}
		for _, d := range st.Disks {
			e.OverlayBytes += allocated(d.Overlay)
		}
		for _, x := range m.readStats(n).Exports {
			e.BytesServed += x.BytesRead
			e.BytesHoles += x.BytesHoles
		}
		out = append(out, e)
	}
	return out, nil
}
