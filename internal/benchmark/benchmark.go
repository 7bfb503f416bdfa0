// Package benchmark measures what bounds kura's speed on this machine: the
// primitives (SHA-256, keyed SHA-256, zstd, AES-256-GCM) and end-to-end
// repository ingest, duplicate ingest and restore of a disk image, the way
// `proxmox-backup-client benchmark` does for PBS. The repository steps do
// what a user's commands do: each ingest commits a point and syncs the
// repository like a backup, and the restore writes the disk into an image
// file (raw, thin, synced) like kura export, checked against the image.
package benchmark

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/kurabackup/kura/internal/crypto"
	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/procinfo"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/local"
)

// Options selects what to measure.
type Options struct {
	// Image is a disk image file to ingest; empty = a synthetic image of
	// ImageSize bytes (half random, half text).
	Image     string
	ImageSize int64
	// Dir holds the temporary repository (default: the OS temp dir).
	Dir string
	// Location, when set, is a store (an s3: location, a directory) where
	// the temporary repository is made instead, under a fresh prefix that
	// is removed afterwards: it measures the backend.
	Location  string
	ChunkSize int
	// Compression is the zstd level mode of the ingests ("": the default,
	// repo.CompressAuto).
	Compression repo.Compression
	// Primitives only: skip the repository measurements.
	Primitives bool
	// Progress, when set, is told which step runs.
	Progress func(step string)
}

// Throughput is one measurement.
type Throughput struct {
	Name    string  `json:"name"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	MBps    float64 `json:"mb_per_s"`
	// CommitSeconds is the part of Seconds an ingest spent committing its
	// point (syncing the repository to disk, writing the manifest).
	CommitSeconds float64 `json:"commit_seconds,omitempty"`
}

// Result of a benchmark run.
type Result struct {
	Primitives  []Throughput `json:"primitives"`
	Repository  []Throughput `json:"repository,omitempty"`
	StoredBytes int64        `json:"stored_bytes,omitempty"`
	ImageBytes  int64        `json:"image_bytes,omitempty"`
	PeakRSS     int64        `json:"peak_rss_bytes,omitempty"`
	Backend     string       `json:"backend,omitempty"` // where the repository was
	// Requests the backend served for the whole run (S3).
	Requests *storage.RequestStats `json:"requests,omitempty"`
}

func measure(name string, bytesPer int64, minDur time.Duration, fn func()) Throughput {
	var n int64
	start := time.Now()
	for time.Since(start) < minDur {
		fn()
		n++
	}
	s := time.Since(start).Seconds()
	return Throughput{Name: name, Bytes: n * bytesPer, Seconds: s, MBps: float64(n*bytesPer) / s / 1e6}
}

// Run performs the measurements.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.ImageSize == 0 {
		opts.ImageSize = 1 << 30
	}
	step := func(s string) {
		if opts.Progress != nil {
			opts.Progress(s)
		}
	}
	res := &Result{}
	step("primitives")
	prim, err := primitives()
	if err != nil {
		return nil, err
	}
	res.Primitives = prim
	if opts.Primitives {
		return res, nil
	}
	if err := repository(ctx, opts, res, step); err != nil {
		return nil, err
	}
	res.PeakRSS = procinfo.PeakRSS()
	return res, nil
}

func primitives() ([]Throughput, error) {
	const size = 4 << 20
	random := make([]byte, size)
	if _, err := rand.Read(random); err != nil {
		return nil, err
	}
	text := make([]byte, size)
	Image{Size: 2 * size, Seed: 1}.fill(text, size)
	const d = 300 * time.Millisecond
	out := []Throughput{measure("sha256", size, d, func() { sha256.Sum256(random) })}
	mk, err := crypto.MasterKeyFromBytes(random[:crypto.MasterSize])
	if err != nil {
		return nil, err
	}
	for _, h := range []struct {
		name string
		id   crypto.IDHash
	}{{"sha256-keyed (hmac), ids of format 1-2", crypto.HMACSHA256}, {"blake3-keyed, ids of format 3", crypto.BLAKE3}} {
		dg, err := crypto.NewDigester(h.id, mk)
		if err != nil {
			return nil, err
		}
		out = append(out, measure(h.name, size, d, func() { dg.Digest(random) }))
	}
	fast, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(repo.CompressionLevel), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	var buf []byte
	out = append(out, measure("zstd-1 compress text", size, d, func() { buf = fast.EncodeAll(text, buf[:0]) }))
	out = append(out, measure("zstd-3 compress text", size, d, func() { buf = enc.EncodeAll(text, buf[:0]) }))
	comp := bytes.Clone(buf)
	out = append(out, measure("zstd-decompress text", size, d, func() { buf, _ = dec.DecodeAll(comp, buf[:0]) }))
	sbuf := make([]byte, s2.MaxEncodedLen(len(text)))
	out = append(out, measure("s2 compress text", size, d, func() { comp = s2.Encode(sbuf, text) }))
	comp = bytes.Clone(comp)
	out = append(out, measure("s2 decompress text", size, d, func() { buf, _ = s2.Decode(buf[:cap(buf)], comp) }))
	out = append(out, measure("zstd-1 compress random", size, d, func() { buf = fast.EncodeAll(random, buf[:0]) }))
	block, err := aes.NewCipher(random[:32])
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	sealed := gcm.Seal(nil, nonce, random, nil)
	out = append(out, measure("aes-256-gcm seal", size, d, func() { buf = gcm.Seal(buf[:0], nonce, random, nil) }))
	out = append(out, measure("aes-256-gcm open", size, d, func() { buf, _ = gcm.Open(buf[:0], nonce, sealed, nil) }))
	return out, nil
}

func repository(ctx context.Context, opts Options, res *Result, step func(string)) error {
	dir, err := os.MkdirTemp(opts.Dir, "kura-benchmark-")
	if err != nil {
		return fmt.Errorf("benchmark repository: %w", err)
	}
	defer os.RemoveAll(dir)
	path := opts.Image
	if path == "" {
		// Materialise the synthetic image so that generating it is not
		// what is measured.
		step("write synthetic image")
		path = filepath.Join(dir, "image.raw")
		if err := WriteImageFile(path, opts.ImageSize); err != nil {
			return err
		}
	}
	var src io.ReaderAt
	var size int64
	{
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		src, size = f, st.Size()
	}
	res.ImageBytes = size
	be, cleanup, err := benchBackend(ctx, opts, dir)
	if err != nil {
		return err
	}
	defer cleanup()
	res.Backend = be.Location()
	r, err := repo.Init(ctx, be, repo.InitOptions{Password: "benchmark", ChunkSize: opts.ChunkSize, Encrypt: true})
	if err != nil {
		return err
	}
	defer r.Close()
	// Each ingest is a backup as kura runs it: a writer under the backup
	// lock, the disk, then the commit of a point (manifest, with the
	// repository synced before and after).
	ingest := func(name string) (*repo.Manifest, error) {
		step(name)
		start := time.Now()
		w, err := r.NewWriter(ctx, "benchmark")
		if err != nil {
			return nil, err
		}
		defer w.Close()
		if opts.Compression != "" {
			w.SetCompression(opts.Compression)
		}
		id, st, err := w.WriteDisk(ctx, repo.DiskSource{Reader: src, Size: size}, nil)
		if err != nil {
			return nil, err
		}
		m := &repo.Manifest{VM: repo.VMInfo{Name: "benchmark"}, Kind: "full", Stats: st,
			Disks: []repo.DiskEntry{{Target: "vda", Format: "raw", Size: size, ChunkSize: r.Config().ChunkSize, Index: id, Stats: st}}}
		committing := time.Now()
		if err := w.Commit(ctx, m); err != nil {
			return nil, err
		}
		t := rate(name, size, time.Since(start))
		t.CommitSeconds = time.Since(committing).Seconds()
		res.Repository = append(res.Repository, t)
		return m, nil
	}
	m, err := ingest("ingest (new data)")
	if err != nil {
		return err
	}
	err = be.List(ctx, "chunks/", func(oi storage.ObjectInfo) error { res.StoredBytes += oi.Size; return nil })
	if err != nil {
		return err
	}
	if _, err := ingest("ingest (all duplicates)"); err != nil {
		return err
	}
	// Read back as a user gets it: the disk restored into an image file
	// (raw, thin, synced), then compared with the image. The first restore
	// reads the chunks from the store (a local repository writes them past
	// the page cache); the second finds them cached.
	for i, name := range []string{"restore to a file", "restore to a file, chunks cached"} {
		if err := restoreOnce(ctx, r, m, path, filepath.Join(dir, fmt.Sprintf("restored-%d", i)), name, res, step); err != nil {
			return err
		}
	}
	if c, ok := be.(storage.Counter); ok {
		q := c.Requests()
		res.Requests = &q
	}
	return nil
}

// restoreOnce exports the disk of m into a raw image file under out,
// records its rate as name, checks it against the image at path and
// removes it.
func restoreOnce(ctx context.Context, r *repo.Repository, m *repo.Manifest, path, out, name string, res *Result, step func(string)) error {
	step(name)
	start := time.Now()
	e := &engine.Engine{Repo: r}
	rep, err := e.Export(ctx, m, engine.ExportOptions{OutDir: out, Format: "raw", Disk: "vda"})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer os.RemoveAll(out)
	res.Repository = append(res.Repository, rate(name, m.Disks[0].Size, time.Since(start)))
	if len(rep.Disks) != 1 {
		return fmt.Errorf("%s wrote %d images", name, len(rep.Disks))
	}
	if err := sameContent(path, rep.Disks[0].Path); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// sameContent compares two files by SHA-256.
func sameContent(a, b string) error {
	sum := func(p string) ([]byte, error) {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return nil, err
		}
		return h.Sum(nil), nil
	}
	x, err := sum(a)
	if err != nil {
		return err
	}
	y, err := sum(b)
	if err != nil {
		return err
	}
	if !bytes.Equal(x, y) {
		return fmt.Errorf("%s differs from %s", b, a)
	}
	return nil
}

// benchBackend opens the store the repository steps use: a directory in
// dir, or a fresh prefix of opts.Location. cleanup deletes what was stored.
func benchBackend(ctx context.Context, opts Options, dir string) (storage.Backend, func(), error) {
	if opts.Location == "" {
		if err := os.Mkdir(filepath.Join(dir, "repo"), 0o700); err != nil {
			return nil, nil, err
		}
		be, err := local.OpenOptions(filepath.Join(dir, "repo"), local.Options{Batch: true, Direct: true})
		return be, func() {}, err
	}
	scheme, rest := storage.SplitLocation(opts.Location)
	base, query, _ := strings.Cut(rest, "?")
	loc := scheme + ":" + strings.TrimSuffix(base, "/") + "/kura-benchmark-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if query != "" {
		loc += "?" + query
	}
	be, err := storage.Open(ctx, loc, storage.OpenOptions{Create: true})
	if err != nil {
		return nil, nil, fmt.Errorf("benchmark location: %w", err)
	}
	return be, func() {
		dctx := context.WithoutCancel(ctx)
		var names []string
		_ = be.List(dctx, "", func(oi storage.ObjectInfo) error { names = append(names, oi.Name); return nil })
		for _, n := range names {
			_ = be.Delete(dctx, n)
		}
		_ = be.Close()
	}, nil
}

// WriteImageFile writes a synthetic image (half random, half text) of size
// bytes to path.
func WriteImageFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (Image{Size: size, Seed: 42}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func rate(name string, n int64, d time.Duration) Throughput {
	return Throughput{Name: name, Bytes: n, Seconds: d.Seconds(), MBps: float64(n) / d.Seconds() / 1e6}
}
