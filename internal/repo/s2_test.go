package repo

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/kurabackup/kura/internal/crypto"
	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/mem"
)

// S2 payloads (format version 2): sealed when fastest, opened byte for
// byte, authenticated like zstd ones, and refused by a version 1 codec.
func TestEnvelopeS2(t *testing.T) {
	key, _ := crypto.NewMasterKey()
	text := bytes.Repeat([]byte("compressible text, with a little variety 0123456789 "), 80000)
	for _, mk := range []*crypto.MasterKey{key, nil} {
		c, v1 := testCodec(mk, true), testCodec(mk, false)
		if k := c.compressor(CompressAuto, true); k != s2Block {
			t.Fatalf("auto while CPU bound: %v, want s2", k)
		}
		if k := v1.compressor(CompressAuto, true); k != zstdFastest {
			t.Fatalf("format 1, auto while CPU bound: %v, want zstd fastest", k)
		}
		if k := c.compressor(CompressAuto, false); k != zstdDefault {
			t.Fatalf("auto while waiting for data: %v, want zstd default", k)
		}
		buf := make([]byte, 0, envBufSize(len(text)))
		env, err := c.sealWith(s2Block, buf, typeChunk, "chunks/aa/a", text)
		if err != nil {
			t.Fatal(err)
		}
		if env[6] != compS2 || len(env) > len(text)/4 || &env[0] != &buf[:1][0] {
			t.Fatalf("text not sealed as s2 in place: compression %d, %d bytes", env[6], len(env))
		}
		out, _, err := c.open(nil, nil, typeChunk, "chunks/aa/a", env)
		if err != nil || !bytes.Equal(out, text) {
			t.Fatalf("round trip: %v", err)
		}
		if _, _, err := v1.open(nil, nil, typeChunk, "chunks/aa/a", env); !errors.Is(err, ErrCorrupt) {
			t.Errorf("format 1 codec opened an s2 payload: %v", err)
		}
		for _, i := range []int{6, 9, 13, len(env) - 1, len(env) / 2} {
			bad := bytes.Clone(env)
			bad[i] ^= 0x10
			if _, _, err := c.open(nil, nil, typeChunk, "chunks/aa/a", bad); err == nil {
				t.Errorf("flipped byte %d accepted", i)
			}
		}
		rnd := randomBytes(2, 1<<20)
		if env, _ := c.sealWith(s2Block, nil, typeChunk, "c", rnd); env[6] != compNone {
			t.Error("random data stored compressed")
		}
	}
}

// New repositories are format version 2 (zstd and S2); version 1 can be
// asked for, writes zstd only, and receives a version 2 repository's S2
// chunks re-sealed by a raw copy.
func TestFormatVersions(t *testing.T) {
	ctx := context.Background()
	v3, err := Init(ctx, mem.New(), InitOptions{ChunkSize: testCS, Password: "pw", Encrypt: true, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	if c := v3.Config(); c.Version != 3 || c.Compression != "zstd+s2" || c.ChunkID != "blake3" {
		t.Fatalf("new repository: version %d, compression %q, chunk id %q", c.Version, c.Compression, c.ChunkID)
	}
	if _, err := Init(ctx, mem.New(), InitOptions{Version: 4}); err == nil {
		t.Fatal("version 4 created")
	}
	if _, err := Init(ctx, mem.New(), InitOptions{CopyOf: v3, Version: 2}); err == nil {
		t.Fatal("a version 2 copy of a repository with BLAKE3 ids")
	}
	v2be := mem.New()
	v2, err := Init(ctx, v2be, InitOptions{ChunkSize: testCS, Version: 2})
	if err != nil {
		t.Fatal(err)
	}
	if c := v2.Config(); c.Version != 2 || c.Compression != "zstd+s2" || c.ChunkID != "" {
		t.Fatalf("version 2 repository: %+v", c)
	}
	v1be := mem.New()
	v1, err := Init(ctx, v1be, InitOptions{CopyOf: v2, Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if c := v1.Config(); c.Version != 1 || c.Compression != "zstd" || c.ChunkID != "" {
		t.Fatalf("version 1 repository: %+v", c)
	}
	img := testImage(5, 3*testCS)
	v3.opts.Compression, v2.opts.Compression, v1.opts.Compression = CompressFastest, CompressFastest, CompressFastest
	m3, _ := writePoint(t, v3, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
	// Version 3 names a chunk by the keyed BLAKE3 of its plaintext.
	ids, _ := crypto.NewDigester(crypto.BLAKE3, v3.mk)
	if _, err := v3.be.Stat(ctx, chunkName(Digest(ids.Digest(img[:testCS])))); err != nil {
		t.Fatalf("chunk not named by keyed BLAKE3: %v", err)
	}
	m, _ := writePoint(t, v2, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
	if n := countComp(t, v2be, compS2); n == 0 {
		t.Fatal("fastest wrote no s2 chunk into a version 2 repository")
	}
	plain, _ := crypto.NewDigester(crypto.HMACSHA256, nil)
	if _, err := v2be.Stat(ctx, chunkName(Digest(plain.Digest(img[:testCS])))); err != nil {
		t.Fatalf("version 2 chunk not named by SHA-256: %v", err)
	}
	other := testImage(6, 2*testCS)
	m1, _ := writePoint(t, v1, DiskSource{Reader: bytes.NewReader(other), Size: int64(len(other))})
	if n := countComp(t, v1be, compS2); n != 0 {
		t.Fatalf("%d s2 chunks in a version 1 repository", n)
	}
	rep, err := Copy(ctx, v2, v1, CopyOptions{Points: []string{m.ID}, Verify: true})
	if err != nil || !rep.Raw {
		t.Fatalf("copy: %v (raw %v)", err, rep != nil && rep.Raw)
	}
	if n := countComp(t, v1be, compS2); n != 0 {
		t.Fatalf("raw copy put %d s2 chunks into a version 1 repository", n)
	}
	// A version 3 copy of a version 2 repository keeps its id hash, and
	// takes its chunks raw.
	v3c, err := Init(ctx, mem.New(), InitOptions{CopyOf: v2})
	if err != nil {
		t.Fatal(err)
	}
	if c := v3c.Config(); c.Version != 3 || c.ChunkID != "" {
		t.Fatalf("version 3 copy of version 2: %+v", c)
	}
	if rep, err := Copy(ctx, v2, v3c, CopyOptions{Points: []string{m.ID}, Verify: true}); err != nil || !rep.Raw {
		t.Fatalf("copy into the version 3 copy: %v (raw %v)", err, rep != nil && rep.Raw)
	}
	readBack(t, v3c, m.ID, img)
	// Other keys and id hash: the copy re-chunks.
	rep, err = Copy(ctx, v3, v2, CopyOptions{Points: []string{m3.ID}, Verify: true})
	if err != nil || rep.Raw {
		t.Fatalf("copy from version 3: %v (raw %v)", err, rep != nil && rep.Raw)
	}
	readBack(t, v1, m.ID, img)
	readBack(t, v1, m1.ID, other)
	readBack(t, v2, m.ID, img)
	readBack(t, v2, m3.ID, img)
	readBack(t, v3, m3.ID, img)
}

// A version 3 config names its id hash, authenticated by the config's mac:
// removed, the repository does not open; in version 2 it is corrupt.
func TestConfigChunkID(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	if _, err := Init(ctx, be, InitOptions{ChunkSize: testCS, Password: "pw", Encrypt: true, KDF: cheapKDF}); err != nil {
		t.Fatal(err)
	}
	orig, _ := be.Get(ctx, configName)
	edit := func(from, to string) {
		t.Helper()
		if err := be.Put(ctx, configName, bytes.Replace(orig, []byte(from), []byte(to), 1)); err != nil {
			t.Fatal(err)
		}
	}
	edit(`"chunk_id": "blake3"`, `"chunk_id": ""`)
	if _, err := Open(ctx, be, "pw", OpenOptions{}); !errors.Is(err, ErrConfigChanged) {
		t.Errorf("chunk id removed: %v, want ErrConfigChanged", err)
	}
	edit(`"version": 3`, `"version": 2`)
	if _, err := Open(ctx, be, "pw", OpenOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("blake3 in version 2: %v, want ErrCorrupt", err)
	}
	edit(`"chunk_id": "blake3"`, `"chunk_id": "md5"`)
	if _, err := Open(ctx, be, "pw", OpenOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("unknown chunk id: %v, want ErrCorrupt", err)
	}
}

// countComp counts the chunks of a backend stored with compression comp.
func countComp(t *testing.T, be storage.Backend, comp byte) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	err := be.List(ctx, "chunks/", func(fi storage.ObjectInfo) error {
		env, err := be.Get(ctx, fi.Name)
		if err != nil {
			return err
		}
		if env[6] == comp {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// CompressAuto takes the fastest codec when the CPUs are what the backup
// waits for: windows queued, half the CPUs storing, or little idle CPU on
// the machine; zstd level 3 when the CPUs wait for the reads.
func TestAutoCPUBound(t *testing.T) {
	w := &Writer{}
	few := 0.5 / float64(runtime.NumCPU())
	for _, c := range []struct {
		queued, storing int
		idle            float64
		want            bool
	}{
		{0, 1, 0.9, false},
		{0, 1, -1, false}, // idle unknown: the pipeline alone decides
		{0, 1, few * 0.9, true},
		{0, 1, few * 1.1, false},
		{1, 1, 0.9, true},
		{0, max(1, maxProcs()/2) + 1, 0.9, true},
	} {
		w.idle = func() float64 { return c.idle }
		if got := w.cpuBound(c.queued, c.storing); got != c.want {
			t.Errorf("queued %d, storing %d, idle %.2f: cpu bound %v, want %v", c.queued, c.storing, c.idle, got, c.want)
		}
	}
}
