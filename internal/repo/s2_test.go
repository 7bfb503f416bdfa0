package repo

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/kurabackup/kura/internal/crypto"
	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/mem"
)

// S2 payloads (format version 2): sealed when fastest, opened byte for
// byte, authenticated like zstd ones, and refused by a version 1 codec.
func TestEnvelopeS2(t *testing.T) {
	mk, _ := crypto.NewMasterKey()
	keys, _ := crypto.NewKeys(mk)
	text := bytes.Repeat([]byte("compressible text, with a little variety 0123456789 "), 80000)
	for _, keys := range []*crypto.Keys{keys, nil} {
		c, _ := newCodec(keys, true)
		v1, _ := newCodec(keys, false)
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
	v2, err := Init(ctx, mem.New(), InitOptions{ChunkSize: testCS})
	if err != nil {
		t.Fatal(err)
	}
	if c := v2.Config(); c.Version != 2 || c.Compression != "zstd+s2" {
		t.Fatalf("new repository: version %d, compression %q", c.Version, c.Compression)
	}
	if _, err := Init(ctx, mem.New(), InitOptions{Version: 3}); err == nil {
		t.Fatal("version 3 created")
	}
	v1be := mem.New()
	v1, err := Init(ctx, v1be, InitOptions{CopyOf: v2, Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if c := v1.Config(); c.Version != 1 || c.Compression != "zstd" {
		t.Fatalf("version 1 repository: version %d, compression %q", c.Version, c.Compression)
	}
	img := testImage(5, 3*testCS)
	v2.opts.Compression, v1.opts.Compression = CompressFastest, CompressFastest
	m, _ := writePoint(t, v2, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))})
	if n := countComp(t, v2.be, compS2); n == 0 {
		t.Fatal("fastest wrote no s2 chunk into a version 2 repository")
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
	readBack(t, v1, m.ID, img)
	readBack(t, v1, m1.ID, other)
	readBack(t, v2, m.ID, img)
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
