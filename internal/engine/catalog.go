package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/phase"
	"github.com/kurabackup/kura/internal/repo"
)

// The catalog is a cache: failing to update it never fails a job (the
// repository is the truth and `kura catalog rebuild` restores the cache).

// heartbeatInterval is how often a running job tells the catalog it is
// alive (so that a job whose process died is recognised as interrupted).
const heartbeatInterval = 30 * time.Second

func (e *Engine) startJob(ctx context.Context, kind string) string {
	if e.Job != "" {
		return e.Job // the caller's job: it runs the heartbeat
	}
	if e.Catalog == nil {
		return ""
	}
	j, err := e.Catalog.StartJob(ctx, kind)
	if err != nil {
		e.log().Warn("catalog: record job start", "err", err)
		return ""
	}
	stop := make(chan struct{})
	e.heartbeats.Store(j.ID, stop)
	go func() {
		t := time.NewTicker(heartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := e.Catalog.Heartbeat(context.WithoutCancel(ctx), j.ID); err != nil {
					e.log().Warn("catalog: job heartbeat", "job", j.ID, "err", err)
				}
			}
		}
	}()
	return j.ID
}

func (e *Engine) finishJob(ctx context.Context, id string, state phase.Job, summary any) {
	if e.Catalog == nil || id == "" || id == e.Job {
		return
	}
	if stop, ok := e.heartbeats.LoadAndDelete(id); ok {
		close(stop.(chan struct{}))
	}
	if err := e.Catalog.FinishJob(context.WithoutCancel(ctx), id, state, summary); err != nil {
		e.log().Warn("catalog: record job end", "err", err)
	}
}

func (e *Engine) recordJobVM(ctx context.Context, jobID string, r VMResult) {
	if e.Catalog == nil || jobID == "" {
		return
	}
	jv := catalog.JobVM{JobID: jobID, VMName: r.VM, VMUUID: r.UUID, State: r.State, Attempts: r.Attempts, Error: r.Error}
	if r.Point != nil {
		jv.PointID = r.Point.ID
	}
	if err := e.Catalog.RecordJobVM(context.WithoutCancel(ctx), jv); err != nil {
		e.log().Warn("catalog: record vm result", "err", err)
	}
}

func (e *Engine) recordPoint(ctx context.Context, m *repo.Manifest) {
	if e.Catalog == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if err := e.Catalog.UpsertVM(ctx, vmRecord(m)); err != nil {
		e.log().Warn("catalog: record vm", "err", err)
	}
	if err := e.Catalog.AddPoint(ctx, CatalogPoint(e.Repo.Config().ID, m)); err != nil {
		e.log().Warn("catalog: record point", "err", err)
	}
}

func vmRecord(m *repo.Manifest) catalog.VM {
	return catalog.VM{UUID: m.VM.UUID, Name: m.VM.Name, Hypervisor: m.VM.Hypervisor, URI: m.VM.URI, Host: m.VM.Host,
		FirstSeen: m.Started, LastSeen: m.Started}
}

// CatalogPoint maps a manifest to its catalog record.
func CatalogPoint(repoID string, m *repo.Manifest) catalog.Point {
	p := catalog.Point{
		ID: m.ID, RepoID: repoID, VMUUID: m.VM.UUID, VMName: m.VM.Name, Kind: m.Kind, Parent: m.Parent,
		Consistency: m.Consistency, Checkpoint: m.Checkpoint, Started: m.Started, Finished: m.Finished,
		BytesRead: m.Stats.BytesRead, BytesNew: m.Stats.BytesNew, BytesStored: m.Stats.BytesStored,
		Tags: m.Tags, Notes: m.Notes,
	}
	for _, d := range m.Disks {
		p.Disks = append(p.Disks, catalog.PointDisk{Target: d.Target, Source: d.Source, Format: d.Format, IndexID: d.Index,
			Size: d.Size, BytesRead: d.Stats.BytesRead, BytesNew: d.Stats.BytesNew, BytesStored: d.Stats.BytesStored,
			Incremental: d.Incremental})
	}
	return p
}

// RebuildCatalog recreates the catalog's view of the repository from the
// manifests alone. It returns the number of points recorded.
func RebuildCatalog(ctx context.Context, r *repo.Repository, c catalog.Catalog) (int, error) {
	points, err := r.PointSummaries(ctx)
	if err != nil {
		return 0, fmt.Errorf("list recovery points: %w", err)
	}
	recs := make([]catalog.Point, 0, len(points))
	vms := map[string]catalog.VM{}
	for _, m := range points {
		recs = append(recs, CatalogPoint(r.Config().ID, m))
		v, ok := vms[m.VM.UUID]
		if !ok {
			v = vmRecord(m)
		}
		if m.Started.Before(v.FirstSeen) {
			v.FirstSeen = m.Started
		}
		if m.Started.After(v.LastSeen) {
			v.LastSeen, v.Name = m.Started, m.VM.Name
		}
		vms[m.VM.UUID] = v
	}
	list := make([]catalog.VM, 0, len(vms))
	for _, v := range vms {
		list = append(list, v)
	}
	if err := c.Rebuild(ctx, r.Config().ID, recs, list); err != nil {
		return 0, fmt.Errorf("rebuild catalog: %w", err)
	}
	return len(recs), nil
}
