package repo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kurabackup/kura/internal/lock"
	"github.com/kurabackup/kura/internal/storage"
)

// copyKeys gives a new repository src's master key and key files.
func (r *Repository) copyKeys(ctx context.Context, src *Repository) error {
	if src.mk == nil {
		return nil
	}
	names, err := src.listNames(ctx, "keys/")
	if err != nil {
		return err
	}
	for _, n := range names {
		data, err := src.be.Get(ctx, n)
		if err != nil {
			return fmt.Errorf("read %s: %w", n, err)
		}
		if err := r.putMeta(ctx, n, data); err != nil {
			return fmt.Errorf("copy key file: %w", err)
		}
	}
	r.mk, r.keyID, r.kdf = src.mk, src.keyID, src.kdf
	return nil
}

// CopyOptions select what Copy copies.
type CopyOptions struct {
	// Points are point ids or unique prefixes; empty = every point.
	Points []string
	// VMs keeps only points of VMs with these names or UUIDs (empty = all).
	VMs []string
	// Latest keeps only the newest N points of each VM (0 = all).
	Latest int
	// Verify re-reads and re-hashes every object this copy wrote.
	Verify bool
}

// CopiedPoint is one point of a CopyReport.
type CopiedPoint struct {
	ID      string `json:"id"`
	VM      string `json:"vm"`
	Skipped bool   `json:"skipped"` // already in the destination
	Chunks  int64  `json:"chunks"`  // chunks written
	Reused  int64  `json:"reused"`  // chunks the destination had
	Bytes   int64  `json:"bytes"`   // bytes written
}

// CopyReport is the result of Copy.
type CopyReport struct {
	Raw      bool          `json:"raw"` // encrypted chunks copied as they are (same keys)
	Points   []CopiedPoint `json:"points"`
	Copied   int           `json:"copied"`
	Skipped  int           `json:"skipped"`
	Bytes    int64         `json:"bytes"`
	Verified int64         `json:"verified"` // objects re-read and re-hashed
}

// SameKeys reports whether chunks of src are valid, byte for byte, in dst:
// same chunk size, encryption and id hash, and the same master key.
func SameKeys(src, dst *Repository) bool {
	if src.cfg.ChunkSize != dst.cfg.ChunkSize || src.cfg.Encrypted != dst.cfg.Encrypted ||
		src.cfg.IDHash() != dst.cfg.IDHash() {
		return false
	}
	if src.mk == nil {
		return true
	}
	return dst.mk != nil && bytes.Equal(src.mk.Bytes(), dst.mk.Bytes())
}

// Copy copies recovery points from src into dst, keeping their ids, and
// only the chunks dst lacks. Each point is committed by its manifest, put
// last, so an interrupted copy leaves nothing half-visible and a new run
// continues where it stopped (points present in dst are skipped, present
// chunks are not sent again). With the same keys (SameKeys: dst was
// initialised with CopyOf), chunk and index objects are copied as they
// are, after authenticating them; otherwise disks are re-chunked and
// re-encrypted with dst's keys. src is held by a shared lock, so its gc
// defers while the copy runs; dst is written like a backup (gc-safe,
// immutable retention applied).
func Copy(ctx context.Context, src, dst *Repository, opts CopyOptions) (*CopyReport, error) {
	if src.cfg.ID == dst.cfg.ID {
		return nil, errors.New("source and destination are the same repository")
	}
	points, err := src.selectPoints(ctx, opts)
	if err != nil {
		return nil, err
	}
	lk, err := lock.Acquire(ctx, src.be, lock.Shared, map[string]string{"purpose": "copy source"})
	if err != nil {
		return nil, fmt.Errorf("take lock on the source: %w", err)
	}
	defer func() { _ = lk.Release(context.WithoutCancel(ctx)) }()
	rep := &CopyReport{Raw: SameKeys(src, dst), Points: []CopiedPoint{}}
	for _, m := range points {
		cp := CopiedPoint{ID: m.ID, VM: m.VM.Name}
		if _, err := dst.be.Stat(ctx, pointName(m.ID)); err == nil {
			cp.Skipped = true
			rep.Skipped++
			rep.Points = append(rep.Points, cp)
			continue
		} else if !errors.Is(err, storage.ErrNotFound) {
			return rep, fmt.Errorf("check point %s in the destination: %w", m.ID, err)
		}
		if err := copyPoint(ctx, src, dst, m, rep.Raw, &cp); err != nil {
			return rep, fmt.Errorf("copy point %s: %w", m.ID, err)
		}
		if err := lk.Err(); err != nil {
			return rep, fmt.Errorf("source lock lost: %w", err)
		}
		rep.Copied++
		rep.Bytes += cp.Bytes
		rep.Points = append(rep.Points, cp)
		if opts.Verify {
			n, err := dst.verifyPoint(ctx, m.ID)
			rep.Verified += n
			if err != nil {
				return rep, fmt.Errorf("verify copied point %s: %w", m.ID, err)
			}
		}
	}
	return rep, nil
}

// selectPoints loads the points Copy should copy, oldest first.
func (r *Repository) selectPoints(ctx context.Context, opts CopyOptions) ([]*Manifest, error) {
	var points []*Manifest
	if len(opts.Points) > 0 {
		for _, p := range opts.Points {
			m, err := r.LoadPoint(ctx, p)
			if err != nil {
				return nil, err
			}
			if !slices.ContainsFunc(points, func(o *Manifest) bool { return o.ID == m.ID }) {
				points = append(points, m)
			}
		}
	} else {
		all, err := r.ListPoints(ctx)
		if err != nil {
			return nil, err
		}
		points = all
	}
	if len(opts.VMs) > 0 {
		points = slices.DeleteFunc(points, func(m *Manifest) bool {
			return !slices.Contains(opts.VMs, m.VM.Name) && (m.VM.UUID == "" || !slices.Contains(opts.VMs, m.VM.UUID))
		})
	}
	sort.Slice(points, func(i, j int) bool { return points[i].ID < points[j].ID })
	if opts.Latest > 0 {
		perVM := map[string]int{}
		var keep []*Manifest
		for i := len(points) - 1; i >= 0; i-- {
			k := points[i].VM.UUID + "/" + points[i].VM.Name
			if perVM[k] < opts.Latest {
				perVM[k]++
				keep = append(keep, points[i])
			}
		}
		slices.Reverse(keep)
		points = keep
	}
	return points, nil
}

// copyPoint copies one point's disks, then commits its manifest in dst.
func copyPoint(ctx context.Context, src, dst *Repository, m *Manifest, raw bool, cp *CopiedPoint) error {
	w, err := dst.NewWriter(ctx, "copy of "+m.ID)
	if err != nil {
		return err
	}
	defer w.Close()
	out := *m
	out.Disks = slices.Clone(m.Disks)
	out.RetainUntil, out.Requests = time.Time{}, nil
	out.Notes = append(slices.Clone(m.Notes), fmt.Sprintf("copied from repository %s on %s", src.cfg.ID, time.Now().UTC().Format(time.RFC3339)))
	for i, d := range m.Disks {
		x, err := src.LoadIndex(ctx, d.Index)
		if err != nil {
			return err
		}
		if raw {
			err = w.copyDiskRaw(ctx, src, d.Index, x, cp)
		} else {
			out.Disks[i].Index, out.Disks[i].ChunkSize, err = w.copyDiskReencode(ctx, src, x, cp)
		}
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.Target, err)
		}
	}
	return w.Commit(ctx, &out)
}

// copyDiskRaw copies the chunks dst lacks and the index object as they are.
func (w *Writer) copyDiskRaw(ctx context.Context, src *Repository, indexID string, x *Index, cp *CopiedPoint) error {
	var distinct []Digest
	seen := map[Digest]bool{}
	for _, d := range x.Digests {
		if !d.IsZero() && !seen[d] {
			seen[d] = true
			distinct = append(distinct, d)
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var written, reused, bytes atomic.Int64
	jobs := make(chan Digest)
	var wg sync.WaitGroup
	for range w.r.ioWorkers() {
		wg.Go(func() {
			for d := range jobs {
				n, err := w.copyRaw(ctx, src, typeChunk, chunkName(d), &d)
				if err != nil {
					cancel(err)
					continue
				}
				if n == 0 {
					reused.Add(1)
				} else {
					written.Add(1)
					bytes.Add(int64(n))
				}
			}
		})
	}
	for _, d := range distinct {
		select {
		case jobs <- d:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	n, err := w.copyRaw(ctx, src, typeIndex, indexName(indexID), nil)
	if err != nil {
		return err
	}
	cp.Chunks += written.Load()
	cp.Reused += reused.Load()
	cp.Bytes += bytes.Load() + int64(n)
	return nil
}

// copyRaw copies one chunk (d set) or index object unless dst has it. The
// envelope is authenticated (not decompressed) before it is written, so a
// damaged source object is reported rather than copied. It returns the
// bytes written, 0 when dst had the object. (--verify decodes and
// re-hashes what was written.)
func (w *Writer) copyRaw(ctx context.Context, src *Repository, t objType, name string, d *Digest) (int, error) {
	if d != nil {
		known, err := w.known(ctx, *d)
		if err != nil || known {
			return 0, err
		}
	} else if fi, err := w.r.be.Stat(ctx, name); err == nil {
		return 0, w.keep(ctx, name, fi.RetainUntil, nil)
	}
	env, err := src.be.Get(ctx, name)
	if err != nil {
		if d != nil {
			w.forget(*d)
		}
		return 0, fmt.Errorf("read %s from the source: %w", name, err)
	}
	if _, err := src.codec.authenticate(nil, t, name, env); err != nil {
		if d != nil {
			w.forget(*d)
		}
		return 0, fmt.Errorf("source object damaged, not copied (run kura verify --read-data on the source): %w", err)
	}
	if env, err = w.resealFor(ctx, src, t, name, env); err != nil {
		if d != nil {
			w.forget(*d)
		}
		return 0, err
	}
	if err := w.put(ctx, name, env); err != nil {
		if d != nil {
			w.forget(*d)
		}
		return 0, putError(name, err)
	}
	if d != nil && w.ret != nil {
		w.ret.note(w.ret.until, d)
	}
	return len(env), nil
}

// resealFor returns env as the destination may hold it: as it is, or,
// for an S2 payload going into a format version 1 repository (which
// allows zstd only), decoded and sealed again with zstd under the same
// name (same keys: a raw copy).
func (w *Writer) resealFor(ctx context.Context, src *Repository, t objType, name string, env []byte) ([]byte, error) {
	if env[6] != compS2 || w.r.codec.s2 {
		return env, nil
	}
	plain, _, err := src.codec.open(nil, nil, t, name, env)
	if err != nil {
		return nil, fmt.Errorf("source object damaged, not copied (run kura verify --read-data on the source): %w", err)
	}
	return w.r.codec.sealWith(w.r.codec.compressor(w.compression, false), nil, t, name, plain)
}

// copyDiskReencode writes the disk again through dst's chunker, reading it
// from src (zero windows are not read). It returns the new index id.
func (w *Writer) copyDiskReencode(ctx context.Context, src *Repository, x *Index, cp *CopiedPoint) (string, int, error) {
	dr := src.openIndex(x)
	defer dr.Close()
	var exts []Extent
	for i, d := range x.Digests {
		k := ExtentData
		if d.IsZero() {
			k = ExtentZero
		}
		off, n := int64(i)*int64(x.ChunkSize), int64(x.ChunkLen(i))
		if l := len(exts); l > 0 && exts[l-1].Kind == k {
			exts[l-1].Length += n
		} else {
			exts = append(exts, Extent{Offset: off, Length: n, Kind: k})
		}
	}
	id, st, err := w.WriteDisk(ctx, DiskSource{Reader: dr, Size: x.Size, Extents: exts}, nil)
	if err != nil {
		return "", 0, err
	}
	cp.Chunks += st.ChunksNew
	cp.Reused += st.ChunksReused
	cp.Bytes += st.BytesStored
	return id, w.r.cfg.ChunkSize, nil
}

// verifyPoint re-reads every object of one point and re-hashes its chunks.
// It returns the number of objects checked.
func (r *Repository) verifyPoint(ctx context.Context, id string) (int64, error) {
	m, err := r.loadManifest(ctx, id)
	if err != nil {
		return 0, err
	}
	n := int64(1)
	for _, d := range m.Disks {
		x, err := r.LoadIndex(ctx, d.Index)
		if err != nil {
			return n, err
		}
		n++
		var ds []Digest
		seen := map[Digest]bool{}
		for _, dg := range x.Digests {
			if !dg.IsZero() && !seen[dg] {
				seen[dg] = true
				ds = append(ds, dg)
			}
		}
		problems := r.readAll(ctx, ds, nil, len(ds), &VerifyReport{}, VerifyOptions{ReadData: true})
		n += int64(len(ds))
		if len(problems) > 0 {
			p := problems[0]
			return n, fmt.Errorf("%d objects damaged, first %s: %s: %w", len(problems), p.Object, p.Detail, ErrCorrupt)
		}
	}
	return n, ctx.Err()
}

// authenticate checks an envelope as open does (header, type, encryption
// flag, authentication tag or CRC) without decompressing it: enough to
// know that a raw copy carries what the repository's writer sealed.
func (c *codec) authenticate(scratch []byte, t objType, name string, env []byte) ([]byte, error) {
	h, err := c.header(name, env)
	if err != nil {
		return scratch, err
	}
	if objType(h.typ) != t {
		return scratch, corrupt(name, "stored %v where a %v was expected", objType(h.typ), t)
	}
	encrypted := h.flags&flagEncrypted != 0
	if encrypted != (c.keys != nil) {
		return scratch, corrupt(name, "encryption flag does not match the repository")
	}
	body := env[envHeaderSize:]
	if encrypted {
		aad := make([]byte, 0, envHeaderSize+len(name))
		aad = append(append(aad, env[:envHeaderSize]...), name...)
		if scratch, err = c.keys.Open(scratch[:0], body, aad); err != nil {
			return scratch, corrupt(name, "authentication failed")
		}
		return scratch, nil
	}
	if len(body) < 4 {
		return scratch, corrupt(name, "envelope truncated")
	}
	crc := crc32.Update(0, castagnoli, env[:envHeaderSize])
	crc = crc32.Update(crc, castagnoli, []byte(name))
	crc = crc32.Update(crc, castagnoli, body[:len(body)-4])
	if crc != binary.LittleEndian.Uint32(body[len(body)-4:]) {
		return scratch, corrupt(name, "checksum mismatch")
	}
	return scratch, nil
}
