package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
)

// closeTimeout bounds how long ending a hypervisor session may take after
// the job's context was cancelled.
const closeTimeout = 2 * time.Minute

// backupVM takes one recovery point of vm. Nothing is visible in the
// repository unless it returns nil.
func (e *Engine) backupVM(ctx context.Context, jobID string, vm hypervisor.VM, parent *repo.Manifest, opts BackupOptions) (*repo.Manifest, error) {
	targets, notes, err := protectedDisks(vm, opts.Unprotected)
	if err != nil {
		return nil, err
	}
	started := e.now()
	id := repo.NewPointID(started)
	// Checkpoints belong to this repository: another repository backing
	// up the same VM keeps its own chain.
	owner := hypervisor.OwnerTag(e.Repo.Config().ID)
	hopts := hypervisor.BackupOptions{
		Consistency:   opts.Consistency,
		NewCheckpoint: hypervisor.CheckpointName(owner, id),
		Owner:         owner,
		Disks:         targets,
		Preexisting:   opts.Preexisting,
	}
	switch {
	case parent == nil:
	case opts.Full:
		notes = append(notes, "full backup requested")
	case parent.Checkpoint == "":
		notes = append(notes, fmt.Sprintf("previous point %s has no checkpoint: read all allocated data", parent.ID))
	default:
		hopts.BaseCheckpoint = parent.Checkpoint
		for _, d := range parent.Disks {
			if d.ChangeID != "" {
				if hopts.BaseChangeIDs == nil {
					hopts.BaseChangeIDs = map[string]string{}
				}
				hopts.BaseChangeIDs[d.Target] = d.ChangeID
			}
		}
	}
	sess, err := e.Conn.BeginBackup(ctx, vm, hopts)
	if errors.Is(err, hypervisor.ErrCheckpointMissing) && hopts.BaseCheckpoint != "" {
		notes = append(notes, fmt.Sprintf("repair: checkpoint %s of point %s is missing or broken (%v); read all allocated data, deduplicated against that point",
			hopts.BaseCheckpoint, parent.ID, err))
		e.log().Warn("checkpoint chain broken, reading in full", "vm", vm.Name, "checkpoint", hopts.BaseCheckpoint, "err", err)
		hopts.BaseCheckpoint, hopts.BaseChangeIDs = "", nil
		sess, err = e.Conn.BeginBackup(ctx, vm, hopts)
	}
	if err != nil {
		return nil, fmt.Errorf("begin backup of %s: %w", vm.Name, err)
	}
	success := false
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		t0 := time.Now()
		if cerr := sess.Close(cctx, success); cerr != nil {
			e.log().Warn("ending backup session failed; run kura cleanup", "vm", vm.Name, "err", cerr)
		}
		e.log().Debug("backup session closed", "vm", vm.Name, "took", time.Since(t0).Round(time.Millisecond))
	}()

	w, err := e.Repo.NewWriter(ctx, "backup "+vm.Name)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if len(opts.Distrust) > 0 {
		w.Distrust(opts.Distrust)
	}

	m := &repo.Manifest{
		ID:          id,
		VM:          repo.VMInfo{Name: vm.Name, UUID: vm.UUID, Hypervisor: e.Conn.Capabilities().Kind, URI: e.Conn.URI()},
		Consistency: string(sess.Consistency()),
		Checkpoint:  sess.Checkpoint(),
		Started:     started,
		Tags:        opts.Tags,
		Kind:        "full",
	}
	if host, herr := e.Conn.Host(ctx); herr == nil {
		m.VM.Host = host
	}
	if h, herr := os.Hostname(); herr == nil {
		m.KuraHost = h
	}
	m.Config, m.ConfigFormat = sess.Config()
	if parent != nil {
		m.Parent = parent.ID
	}
	recs, err := e.backupDisks(ctx, jobID, w, vm, sess.Disks(), parent, opts)
	if err != nil {
		return nil, err
	}
	for _, rec := range recs {
		if rec.Incremental {
			m.Kind = "incremental"
		}
		m.Disks = append(m.Disks, rec)
		m.Stats.Add(rec.Stats)
	}
	m.Notes = append(notes, sess.Notes()...)
	m.Finished = e.now()
	t0 := time.Now()
	if err := w.Commit(ctx, m); err != nil {
		return nil, fmt.Errorf("commit recovery point: %w", err)
	}
	e.log().Debug("point committed", "vm", vm.Name, "point", m.ID, "disks_took", m.Finished.Sub(m.Started).Round(time.Millisecond),
		"commit_took", time.Since(t0).Round(time.Millisecond))
	success = true
	e.recordPoint(ctx, m)
	return m, nil
}

// backupDisks stores every disk of a session at once (the writer's
// buffers bound the memory whatever their number); the first failure
// cancels the others.
func (e *Engine) backupDisks(ctx context.Context, jobID string, w *repo.Writer, vm hypervisor.VM,
	disks []hypervisor.SessionDisk, parent *repo.Manifest, opts BackupOptions) ([]repo.DiskEntry, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recs := make([]repo.DiskEntry, len(disks))
	errs := make([]error, len(disks))
	var wg sync.WaitGroup
	for i, sd := range disks {
		if opts.Throttle != nil {
			sd.Reader = opts.Throttle.ReaderAt(ctx, sd.Reader)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if recs[i], err = e.backupDisk(ctx, jobID, w, vm, sd, parent); err != nil {
				errs[i] = fmt.Errorf("disk %s: %w", sd.Target, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	// The disk that failed first, not one cancelled because of it.
	var first error
	for _, err := range errs {
		if err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	return recs, first
}

// backupDisk stores one disk of a session, reusing the parent's index for
// unchanged extents.
func (e *Engine) backupDisk(ctx context.Context, jobID string, w *repo.Writer, vm hypervisor.VM,
	sd hypervisor.SessionDisk, parent *repo.Manifest) (repo.DiskEntry, error) {
	var pidx *repo.Index
	if parent != nil {
		for _, pd := range parent.Disks {
			if pd.Target == sd.Target && pd.Size == sd.Size {
				idx, err := e.Repo.LoadIndex(ctx, pd.Index)
				if err != nil {
					return repo.DiskEntry{}, fmt.Errorf("load index of parent point %s: %w", parent.ID, err)
				}
				pidx = idx
			}
		}
	}
	incremental := sd.Incremental && pidx != nil
	exts := make([]repo.Extent, len(sd.Extents))
	for i, x := range sd.Extents {
		k := repo.ExtentData
		switch x.Kind {
		case hypervisor.ExtentZero:
			k = repo.ExtentZero
		case hypervisor.ExtentUnchanged:
			if incremental {
				k = repo.ExtentUnchanged
			}
		case hypervisor.ExtentUnchangedZero:
			k = repo.ExtentZero
			if incremental {
				k = repo.ExtentUnchangedZero
			}
		}
		exts[i] = repo.Extent{Offset: x.Offset, Length: x.Length, Kind: k}
	}
	e.emit(progress.Event{Kind: "disk-start", Job: jobID, VM: vm.Name, Disk: sd.Target, Total: sd.Size})
	last := time.Time{}
	src := repo.DiskSource{Reader: sd.Reader, Size: sd.Size, Extents: exts, Parent: pidx}
	if pidx != nil {
		src.ParentRetainUntil = parent.RetainUntil
	}
	idxID, st, err := w.WriteDisk(ctx, src,
		func(done, total int64) {
			now := e.now()
			if now.Sub(last) < 100*time.Millisecond && done < total {
				return
			}
			last = now
			e.emit(progress.Event{Kind: "disk-progress", Job: jobID, VM: vm.Name, Disk: sd.Target,
				Done: done, Total: total})
		})
	if err != nil {
		return repo.DiskEntry{}, err
	}
	e.emit(progress.Event{Kind: "disk-done", Job: jobID, VM: vm.Name, Disk: sd.Target, Done: sd.Size, Total: sd.Size,
		Data: map[string]any{"bytes_read": st.BytesRead, "bytes_new": st.BytesNew, "bytes_stored": st.BytesStored}})
	return repo.DiskEntry{
		Target:      sd.Target,
		Source:      sd.Source,
		Format:      sd.Format,
		Size:        sd.Size,
		ChunkSize:   e.Repo.Config().ChunkSize,
		Index:       idxID,
		Stats:       st,
		Incremental: incremental,
		ChangeID:    sd.ChangeID,
	}, nil
}

// latestPoints returns the newest recovery point of each of vms (by
// UUID), the parent of its next backup. The newest is found in the point
// summaries (format spec §6.2) and its manifest read: the parent's
// checkpoint and indexes are taken from the manifest itself.
func (e *Engine) latestPoints(ctx context.Context, vms []hypervisor.VM) (map[string]*repo.Manifest, error) {
	points, err := e.Repo.PointSummaries(ctx)
	if err != nil {
		return nil, fmt.Errorf("list recovery points: %w", err)
	}
	want := map[string]bool{}
	for _, vm := range vms {
		want[vm.UUID] = true
	}
	newest := map[string]*repo.Manifest{}
	for _, p := range points {
		if !want[p.VM.UUID] {
			continue
		}
		if l := newest[p.VM.UUID]; l == nil || p.Started.After(l.Started) {
			newest[p.VM.UUID] = p
		}
	}
	latest := map[string]*repo.Manifest{}
	for uuid, p := range newest {
		m, err := e.Repo.LoadPoint(ctx, p.ID)
		if errors.Is(err, repo.ErrPointNotFound) || errors.Is(err, repo.ErrMissing) {
			continue // deleted since the listing: a full backup
		}
		if err != nil {
			return nil, fmt.Errorf("load point %s: %w", p.ID, err)
		}
		latest[uuid] = m
	}
	return latest, nil
}
