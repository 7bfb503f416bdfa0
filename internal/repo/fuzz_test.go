package repo

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/kurabackup/kura/internal/crypto"
)

func FuzzDecodeIndex(f *testing.F) {
	x := &Index{ChunkSize: testCS, Size: 3*testCS + 5, Digests: make([]Digest, 4)}
	x.Digests[1][0] = 1
	f.Add(x.encode())
	f.Add((&Index{ChunkSize: testCS}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeIndex("indexes/x", b)
		if err != nil {
			return
		}
		if !bytes.Equal(got.encode(), b) {
			t.Fatal("decoded index does not re-encode to the same bytes")
		}
		if int64(len(got.Digests)) != chunkCount(got.Size, got.ChunkSize) {
			t.Fatal("entry count mismatch accepted")
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	m := &Manifest{Version: 1, ID: "20261121T233000Z-0123abcd", VM: VMInfo{Name: "a"},
		Disks: []DiskEntry{{Target: "vda", Size: 10, ChunkSize: testCS, Index: Digest{1}.String()}}}
	b, _ := m.encode()
	f.Add(b)
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeManifest("points/x", b)
		if err != nil {
			return
		}
		if !validPointID(m.ID) {
			t.Fatal("invalid id accepted")
		}
		for _, d := range m.Disks {
			if !validID(d.Index) {
				t.Fatal("invalid index id accepted")
			}
		}
	})
}

func FuzzOpenEnvelope(f *testing.F) {
	mk, _ := crypto.MasterKeyFromBytes(bytes.Repeat([]byte{7}, 64))
	encC, plainC := testCodec(mk, true), testCodec(nil, true)
	for _, c := range []*codec{encC, plainC} {
		for _, p := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte("abc"), 5000)} {
			for _, k := range []compressor{zstdDefault, s2Block} {
				env, _ := c.sealWith(k, nil, typeChunk, "chunks/x", p)
				f.Add(env, c == encC)
			}
		}
		env, _ := c.sealWith(s2Block, nil, typeChunk, "chunks/x", randomBytes(3, 30000)) // stored uncompressed
		f.Add(env, c == encC)
	}
	f.Fuzz(func(t *testing.T, env []byte, enc bool) {
		c := plainC
		if enc {
			c = encC
		}
		out, _, err := c.open(nil, nil, typeChunk, "chunks/x", env)
		// Opened in place, the envelope gives the same answer.
		owned, oerr := c.openOwned(typeChunk, "chunks/x", bytes.Clone(env))
		if (err == nil) != (oerr == nil) || !bytes.Equal(out, owned) {
			t.Fatalf("open: %d bytes, %v; in place: %d bytes, %v", len(out), err, len(owned), oerr)
		}
		if err != nil {
			return
		}
		h, _ := parseEnvHeader("x", env)
		if len(out) != h.plainLen {
			t.Fatal("length mismatch accepted")
		}
	})
}

func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(`{"magic":"kura-repository","version":1,"id":"0123456789abcdef0123456789abcdef","chunk_size":4194304,"encryption":"none","compression":"zstd"}`))
	f.Add([]byte(`{"magic":"kura-repository","version":2,"id":"0123456789abcdef0123456789abcdef","chunk_size":4194304,"encryption":"none","compression":"zstd+s2"}`))
	f.Add([]byte(`{"magic":"kura-repository","version":3,"id":"0123456789abcdef0123456789abcdef","chunk_size":4194304,"encryption":"none","compression":"zstd+s2","chunk_id":"blake3"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeConfig(b)
		if err != nil {
			return
		}
		if c.Version > MaxReadVersion || c.ChunkSize < MinChunkSize || c.ChunkSize > MaxChunkSize ||
			(c.Compression == compressionZstdS2 && c.Version < 2) ||
			(c.ChunkID != "" && (c.Version < 3 || c.IDHash() != crypto.BLAKE3)) {
			t.Fatalf("accepted bad config %+v", c)
		}
	})
}

func TestEnvelopeTamper(t *testing.T) {
	mk, _ := crypto.NewMasterKey()
	encC, plainC := testCodec(mk, false), testCodec(nil, false)
	data := bytes.Repeat([]byte("compressible text "), 10000)
	for _, c := range []*codec{encC, plainC} {
		env, err := c.seal(nil, typeChunk, "chunks/aa/a", data)
		if err != nil {
			t.Fatal(err)
		}
		if env[6] != compZstd || len(env) > len(data)/10 {
			t.Errorf("text not compressed: %d bytes", len(env))
		}
		if out, _, err := c.open(nil, nil, typeChunk, "chunks/aa/a", env); err != nil || !bytes.Equal(out, data) {
			t.Fatalf("round trip: %v", err)
		}
		if _, _, err := c.open(nil, nil, typeChunk, "chunks/aa/b", env); err == nil {
			t.Error("envelope accepted under another name")
		}
		if _, _, err := c.open(nil, nil, typeIndex, "chunks/aa/a", env); err == nil {
			t.Error("envelope accepted as another type")
		}
		for _, i := range []int{5, 9, len(env) - 1, len(env) / 2} {
			bad := bytes.Clone(env)
			bad[i] ^= 0x10
			if _, _, err := c.open(nil, nil, typeChunk, "chunks/aa/a", bad); err == nil {
				t.Errorf("flipped byte %d accepted", i)
			}
		}
	}
	// An unencrypted envelope must not be accepted by an encrypted repo.
	env, _ := plainC.seal(nil, typeChunk, "chunks/aa/a", data)
	if _, _, err := encC.open(nil, nil, typeChunk, "chunks/aa/a", env); err == nil {
		t.Error("downgrade to unencrypted envelope accepted")
	}
	rnd := randomBytes(1, 1<<20)
	env, _ = encC.seal(nil, typeChunk, "c", rnd)
	if env[6] != compNone {
		t.Error("random data stored compressed")
	}
}

func FuzzDecodeSummary(f *testing.F) {
	m := &Manifest{Version: 1, ID: "20261121T233000Z-0123abcd", VM: VMInfo{Name: "a"},
		Disks: []DiskEntry{{Target: "vda", Size: 10, ChunkSize: testCS, Index: Digest{1}.String()}}}
	b, _ := json.Marshal(summarySegment{Summary: 1, Entries: []summaryEntry{{Size: 5, Point: m}, {}}})
	f.Add(b)
	f.Add([]byte(`{"summary":1,"entries":[{"point":null}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		seg, err := decodeSummary("cache/points/x", b)
		if err != nil {
			return
		}
		if seg.Summary != summaryVersion {
			t.Fatal("unknown summary version accepted")
		}
		for _, e := range seg.Entries {
			if e.Point != nil {
				_ = e.Point.check("points/x") // entries are checked when used; must not panic
			}
		}
	})
}

func FuzzParseMarker(f *testing.F) {
	f.Add([]byte(`{"id":"20261121t000000z-00000000","created":"2026-11-21T00:00:00Z","candidates":["chunks/ab/x","indexes/y"]}`))
	f.Add([]byte(`{"candidates":[1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var names []string
		if err := parseMarker(b, func(n string) { names = append(names, n) }); err != nil {
			return
		}
		// Every candidate encoding/json sees is streamed (a repeated
		// key streams more: distrusting more is safe).
		var m gcMarker
		if json.Unmarshal(b, &m) == nil {
			for _, c := range m.Candidates {
				if !slices.Contains(names, c) {
					t.Fatalf("candidate %q not streamed (%q)", c, names)
				}
			}
		}
	})
}
