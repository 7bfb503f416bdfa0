package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kurabackup/kura/internal/diskwrite"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
)

// DiskRestore is the outcome of writing one disk image.
type DiskRestore struct {
	Target string `json:"target"`
	Path   string `json:"path"`
	Format string `json:"format"`
	// Size is the virtual size in bytes.
	Size int64 `json:"size"`
	// DataBytes were written; ZeroBytes were left unallocated.
	DataBytes int64   `json:"data_bytes"`
	ZeroBytes int64   `json:"zero_bytes"`
	Seconds   float64 `json:"seconds"`
	// Rate is the virtual size restored per second (bytes/s).
	Rate float64 `json:"rate"`
	// Kept is true when an existing file was kept (conflict policy keep)
	// and nothing was written.
	Kept bool `json:"kept,omitempty"`
}

// diskJob is one image to write from one disk of a recovery point.
type diskJob struct {
	entry     repo.DiskEntry
	path      string
	format    string
	overwrite bool
}

// createFunc starts one image: the target connector's CreateDisk, or local
// files for an export.
type createFunc func(ctx context.Context, d hypervisor.NewDisk) (hypervisor.DiskSink, error)

// localImage creates an image file on this host (exports).
func localImage(log *slog.Logger) createFunc {
	return func(ctx context.Context, d hypervisor.NewDisk) (hypervisor.DiskSink, error) {
		if err := os.MkdirAll(filepath.Dir(d.Path), 0o755); err != nil {
			return nil, fmt.Errorf("create directory of %s: %w", d.Path, err)
		}
		return diskwrite.Create(ctx, diskwrite.Target{Path: d.Path, Format: d.Format, Size: d.Size},
			diskwrite.Options{Overwrite: d.Overwrite, Logger: log, ScratchDir: d.ScratchDir})
	}
}

// pendingDisks are images fully written, not yet committed.
type pendingDisks struct {
	sinks   []hypervisor.DiskSink
	results []DiskRestore
}

// abort removes every image written (and undoes what committed images
// can undo).
func (p *pendingDisks) abort(ctx context.Context) {
	for _, s := range p.sinks {
		_ = s.Abort(ctx)
	}
}

// commit makes every image visible at its path, in order; on failure every
// image is aborted.
func (p *pendingDisks) commit(ctx context.Context) error {
	for _, s := range p.sinks {
		if err := s.Commit(ctx); err != nil {
			p.abort(ctx)
			return err
		}
	}
	return nil
}

// writeDisks writes every job's image. Nothing is committed: on error every
// image written so far is removed.
func (e *Engine) writeDisks(ctx context.Context, jobID, vm string, jobs []diskJob, scratch string, workers int, create createFunc) (*pendingDisks, error) {
	p := &pendingDisks{}
	if scratch != "" && len(jobs) > 0 {
		if err := os.MkdirAll(scratch, 0o700); err != nil {
			return nil, fmt.Errorf("scratch directory: %w", err)
		}
	}
	for _, j := range jobs {
		res, sink, err := e.writeDisk(ctx, jobID, vm, j, scratch, workers, create)
		if sink != nil {
			p.sinks = append(p.sinks, sink)
		}
		if err != nil {
			p.abort(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("disk %s: %w", j.entry.Target, err)
		}
		p.results = append(p.results, res)
	}
	return p, nil
}

// writeDisk streams one disk of a point into a new image: chunks are
// fetched and decoded in parallel by the repository, written by several
// writers at once, and zero chunks are skipped (the image is fresh).
func (e *Engine) writeDisk(ctx context.Context, jobID, vm string, j diskJob, scratch string, workers int, create createFunc) (DiskRestore, hypervisor.DiskSink, error) {
	res := DiskRestore{Target: j.entry.Target, Path: j.path, Format: j.format, Size: j.entry.Size}
	started := time.Now()
	dr, err := e.Repo.OpenDisk(ctx, j.entry.Index)
	if err != nil {
		return res, nil, err
	}
	defer dr.Close()
	res.Size = dr.Size()
	w, err := create(ctx, hypervisor.NewDisk{Path: j.path, Format: j.format, Size: res.Size, Overwrite: j.overwrite, ScratchDir: scratch})
	if err != nil {
		return res, nil, err
	}
	e.emit(progress.Event{Kind: progress.DiskStart, Job: jobID, VM: vm, Disk: j.entry.Target, Total: res.Size})
	if workers <= 0 {
		workers = max(2, runtime.GOMAXPROCS(0))
	}
	if err := e.pump(ctx, jobID, vm, j.entry.Target, dr, w, workers); err != nil {
		return res, w, err
	}
	res.DataBytes, res.ZeroBytes = w.DataBytes(), res.Size-w.DataBytes()
	res.Seconds = time.Since(started).Seconds()
	if res.Seconds > 0 {
		res.Rate = float64(res.Size) / res.Seconds
	}
	e.emit(progress.Event{Kind: progress.DiskDone, Job: jobID, VM: vm, Disk: j.entry.Target, Done: res.Size, Total: res.Size,
		Data: map[string]any{"path": j.path, "data_bytes": res.DataBytes, "seconds": res.Seconds}})
	return res, w, nil
}

// pump writes the disk reader's chunks into the writer: several writers
// take chunks straight from the stream's buffers (no copy) and hand them
// back when written.
func (e *Engine) pump(ctx context.Context, jobID, vm, target string, dr *repo.DiskReader, w hypervisor.DiskSink, workers int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs := dr.Index().ChunkSize
	size := dr.Size()
	type piece struct {
		off     int64
		data    []byte
		release func()
	}
	writers := min(workers, 4)
	pieces := make(chan piece, writers)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		writeErr error
		done     atomic.Int64
	)
	fail := func(err error) {
		errOnce.Do(func() { writeErr = err; cancel() })
	}
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range pieces {
				if ctx.Err() == nil {
					if err := w.WriteAt(ctx, p.data, p.off); err != nil {
						fail(err)
					}
				}
				done.Add(int64(len(p.data)))
				p.release()
			}
		}()
	}
	last := time.Time{}
	streamErr := dr.StreamChunks(ctx, workers, 2*writers, func(off int64, data []byte, zero bool, release func()) error {
		if zero {
			done.Add(min(int64(cs), size-off))
		} else {
			select {
			case pieces <- piece{off, data, release}:
			case <-ctx.Done():
				release()
				return ctx.Err()
			}
		}
		if now := time.Now(); now.Sub(last) >= 100*time.Millisecond {
			last = now
			e.emit(progress.Event{Kind: progress.DiskProgress, Job: jobID, VM: vm, Disk: target, Done: done.Load(), Total: size})
		}
		return nil
	})
	close(pieces)
	wg.Wait()
	if writeErr != nil && !errors.Is(writeErr, context.Canceled) {
		return writeErr
	}
	if streamErr != nil {
		return streamErr
	}
	return writeErr
}
