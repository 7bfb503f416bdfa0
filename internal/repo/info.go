package repo

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"

	"github.com/kurabackup/kura/internal/storage"
)

// Info summarises a repository.
type Info struct {
	Location      string `json:"location"`
	Backend       string `json:"backend"` // location scheme: local, s3
	Objects       int    `json:"objects"` // objects of every kind
	Config        Config `json:"config"`
	Points        int    `json:"points"`
	Chunks        int    `json:"chunks"`         // chunk objects stored
	StoredBytes   int64  `json:"stored_bytes"`   // size of every object in the repository
	ChunkBytes    int64  `json:"chunk_bytes"`    // size of chunk objects
	LogicalBytes  int64  `json:"logical_bytes"`  // sum of disk sizes over all points
	ReferencedRaw int64  `json:"referenced_raw"` // non-zero bytes of all disks of all points
	UniqueRaw     int64  `json:"unique_raw"`     // raw size of the chunks stored
	// DedupRatio is ReferencedRaw / UniqueRaw; CompressionRatio is
	// UniqueRaw / ChunkBytes.
	DedupRatio       float64 `json:"dedup_ratio"`
	CompressionRatio float64 `json:"compression_ratio"`
	// LastJob is the newest point that recorded the backend requests it
	// took (S3 repositories).
	LastJob *JobRequests `json:"last_job,omitempty"`
}

// JobRequests are the requests one point took.
type JobRequests struct {
	Point    string               `json:"point"`
	Kind     string               `json:"kind"`
	Requests storage.RequestStats `json:"requests"`
}

// Info computes repository statistics. It reads every manifest and index
// and the 12-byte header of every chunk.
func (r *Repository) Info(ctx context.Context) (*Info, error) {
	in := &Info{Location: r.be.Location(), Config: r.cfg}
	in.Backend, _ = storage.SplitLocation(in.Location)
	// Chunk names go to the header readers as they are listed, never all
	// held at once.
	names := make(chan string, 256)
	raw := make(chan rawResult, 1)
	go func() { raw <- r.rawSizes(ctx, names) }()
	err := r.be.List(ctx, "", func(oi storage.ObjectInfo) error {
		in.Objects++
		in.StoredBytes += oi.Size
		if strings.HasPrefix(oi.Name, "chunks/") {
			in.ChunkBytes += oi.Size
			in.Chunks++
			select {
			case names <- oi.Name:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	close(names)
	rr := <-raw
	if err != nil {
		return nil, fmt.Errorf("list repository: %w", err)
	}
	if rr.err != nil {
		return nil, rr.err
	}
	in.UniqueRaw = rr.total
	g, err := r.loadRefs(ctx, nil)
	if err != nil {
		return nil, err
	}
	in.Points = len(g.points)
	for _, m := range g.points {
		if m.Requests != nil && (in.LastJob == nil || m.ID > in.LastJob.Point) {
			in.LastJob = &JobRequests{Point: m.ID, Kind: m.Kind, Requests: *m.Requests}
		}
		for _, d := range m.Disks {
			in.LogicalBytes += d.Size
		}
	}
	err = r.eachIndex(ctx, g, nil, func(id string, x *Index) error {
		var raw int64
		for i, dg := range x.Digests {
			if !dg.IsZero() {
				raw += int64(x.ChunkLen(i))
			}
		}
		in.ReferencedRaw += raw * int64(len(g.indexes[id]))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if in.UniqueRaw > 0 {
		in.DedupRatio = float64(in.ReferencedRaw) / float64(in.UniqueRaw)
	}
	if in.ChunkBytes > 0 {
		in.CompressionRatio = float64(in.UniqueRaw) / float64(in.ChunkBytes)
	}
	return in, nil
}

type rawResult struct {
	total int64
	err   error
}

// rawSizes sums the plain lengths recorded in the envelope headers of the
// chunks named on names, until it is closed.
func (r *Repository) rawSizes(ctx context.Context, names <-chan string) rawResult {
	var mu sync.Mutex
	var total int64
	var firstErr error
	var wg sync.WaitGroup
	for range r.ioWorkers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range names {
				h, err := r.be.GetRange(ctx, n, 0, envHeaderSize)
				mu.Lock()
				if err == nil && len(h) == envHeaderSize {
					total += int64(binary.LittleEndian.Uint32(h[8:]))
				} else if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("read header of %s: %w", n, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return rawResult{total, firstErr}
}
