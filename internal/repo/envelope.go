package repo

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"runtime"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/kurabackup/kura/internal/crypto"
)

// Envelope layout (see docs/design/repository-format.md):
//
//	magic "KURE" | version u8 | type u8 | compression u8 | flags u8 | plain length u32 LE
//	encrypted:   nonce(12) ‖ AES-256-GCM ciphertext ‖ tag(16), AAD = header ‖ object name
//	unencrypted: payload ‖ CRC32C(header ‖ object name ‖ payload) u32 LE
const (
	envMagic      = "KURE"
	envVersion    = 1
	envHeaderSize = 12
	flagEncrypted = 1

	compNone = 0
	compZstd = 1
	compS2   = 2 // format version 2 (config compression "zstd+s2") only

	// A compressed payload is kept only if it is below this fraction of
	// the raw size (in 1/1000).
	keepCompressedPermille = 970
)

type objType uint8

const (
	typeChunk    objType = 1
	typeIndex    objType = 2
	typeManifest objType = 3
)

func (t objType) String() string {
	switch t {
	case typeChunk:
		return "chunk"
	case typeIndex:
		return "index"
	case typeManifest:
		return "manifest"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CompressionLevel is the zstd level of metadata (indexes, manifests) and
// of chunks when the CPU is not what limits a backup (Compression). Readers
// do not depend on it. SpeedDefault (zstd level 3) was measured against
// SpeedFastest in docs/design/repository-format.md §11.2: about 10% smaller
// on text for about 25% more compression time.
const CompressionLevel = zstd.SpeedDefault

// Compression chooses how new chunks are compressed. The envelope records
// the codec of each chunk (zstd, or S2 from format version 2), so readers
// need nothing to decode any of them.
type Compression string

// Compression modes.
const (
	// CompressAuto (the default) compresses a chunk with the fastest codec
	// the repository allows (S2 from format version 2, zstd level 1 in
	// version 1) while the backup is CPU bound (chunks read wait for a
	// CPU, or the machine has less than half a CPU idle), and with zstd at
	// CompressionLevel while the CPUs wait for data.
	CompressAuto Compression = "auto"
	// CompressFastest always uses the fastest codec the repository allows.
	CompressFastest Compression = "fastest"
	// CompressDefault always uses zstd at CompressionLevel (level 3).
	CompressDefault Compression = "default"
	// CompressBetter always uses zstd's SpeedBetterCompression (level 7).
	CompressBetter Compression = "better"
)

// ParseCompression checks a mode name ("" is CompressAuto).
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(s); c {
	case "":
		return CompressAuto, nil
	case CompressAuto, CompressFastest, CompressDefault, CompressBetter:
		return c, nil
	}
	return "", fmt.Errorf("compression %q: use auto, fastest, default or better", s)
}

// compressor is one way of compressing a payload.
type compressor int

const (
	zstdDefault compressor = iota
	zstdFastest
	zstdBetter
	s2Block
)

// codec seals and opens envelopes. It is safe for concurrent use.
type codec struct {
	keys *crypto.Keys // nil: unencrypted repository
	ids  *crypto.Digester
	// s2 allows S2 payloads (format version 2): written when fastest,
	// accepted when read.
	s2   bool
	enc  *zstd.Encoder
	fast *zstd.Encoder // SpeedFastest: samples, and chunks when CPU bound
	// better is made on first use (CompressBetter only).
	betterOnce sync.Once
	better     *zstd.Encoder
	dec        *zstd.Decoder
}

func newEncoder(level zstd.EncoderLevel) (*zstd.Encoder, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true),
		zstd.WithWindowSize(zstd.MaxWindowSize/128)) // 4 MiB window is plenty for one chunk
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	return enc, nil
}

// newCodec makes the codec of a repository: its keys (nil when
// unencrypted), its ids and withS2 for format version 2 and later
// repositories (config compression "zstd+s2").
func newCodec(keys *crypto.Keys, ids *crypto.Digester, withS2 bool) (*codec, error) {
	enc, err := newEncoder(CompressionLevel)
	if err != nil {
		return nil, err
	}
	fast, err := newEncoder(zstd.SpeedFastest)
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithDecoderMaxMemory(maxPlainLen), zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &codec{keys: keys, ids: ids, s2: withS2, enc: enc, fast: fast, dec: dec}, nil
}

// compressor returns how a chunk is compressed: mode, and for
// CompressAuto whether the writer is CPU bound right now.
func (c *codec) compressor(mode Compression, cpuBound bool) compressor {
	switch mode {
	case CompressDefault:
		return zstdDefault
	case CompressBetter:
		return zstdBetter
	case CompressFastest:
	default:
		if !cpuBound {
			return zstdDefault
		}
	}
	if c.s2 {
		return s2Block
	}
	return zstdFastest
}

// zstdEncoder returns the encoder of a zstd compressor.
func (c *codec) zstdEncoder(k compressor) *zstd.Encoder {
	switch k {
	case zstdFastest:
		return c.fast
	case zstdBetter:
		c.betterOnce.Do(func() {
			if e, err := newEncoder(zstd.SpeedBetterCompression); err == nil {
				c.better = e
			}
		})
		if c.better != nil {
			return c.better
		}
	}
	return c.enc
}

// envBufSize is the size of a buffer that holds the envelope of a chunk
// of plain bytes whatever its compression, so sealing never grows it.
func envBufSize(plain int) int {
	return max(plain+plain/64, s2.MaxEncodedLen(plain)) + envHeaderSize + crypto.SealOverhead + 64
}

// compress appends the compressed form of plain to dst and names its
// envelope compression.
func (c *codec) compress(k compressor, dst, plain []byte) ([]byte, byte) {
	if k != s2Block {
		return c.zstdEncoder(k).EncodeAll(plain, dst), compZstd
	}
	start := len(dst)
	need := s2.MaxEncodedLen(len(plain))
	if need < 0 {
		return dst, compNone
	}
	if cap(dst)-start < need {
		dst = append(dst[:cap(dst)], make([]byte, start+need-cap(dst))...)
	}
	out := s2.Encode(dst[start:start+need], plain)
	return dst[:start+len(out)], compS2
}

func (c *codec) close() {
	c.enc.Close()
	c.fast.Close()
	if c.better != nil {
		c.better.Close()
	}
	c.dec.Close()
}

// digest names plaintext with the repository's id hash: keyed when
// encrypted.
func (c *codec) digest(p []byte) Digest { return c.ids.Digest(p) }

// worthCompressing guesses from three small samples whether a large buffer
// compresses at all, so incompressible data skips a full zstd pass.
// scratch is spare room for the samples' output.
func (c *codec) worthCompressing(p, scratch []byte) bool {
	const sample = 32 << 10
	if len(p) < 8*sample {
		return true
	}
	for _, at := range []int{0, len(p) / 2, len(p) - sample} {
		out := c.fast.EncodeAll(p[at:at+sample], scratch[:0])
		if len(out)*1000 < sample*keepCompressedPermille {
			return true
		}
	}
	return false
}

// seal appends the envelope of plain to dst, compressed with zstd at the
// default level.
func (c *codec) seal(dst []byte, t objType, name string, plain []byte) ([]byte, error) {
	return c.sealWith(zstdDefault, dst, t, name, plain)
}

// sealWith appends the envelope of plain to dst, compressing with k.
// The payload is compressed straight into dst and, when encrypted,
// encrypted where it lies: with enough capacity in dst, sealing allocates
// nothing and copies nothing.
func (c *codec) sealWith(k compressor, dst []byte, t objType, name string, plain []byte) ([]byte, error) {
	if len(plain) > maxPlainLen {
		return dst, fmt.Errorf("%s: object of %d bytes exceeds the %d byte limit", name, len(plain), maxPlainLen)
	}
	start := len(dst)
	var flags byte
	body := start + envHeaderSize // where the payload goes
	if c.keys != nil {
		flags = flagEncrypted
		body += crypto.NonceSize
	}
	dst = append(dst, make([]byte, body-start)...)
	comp := byte(compNone)
	// S2 gives up on incompressible input by itself at tens of GB/s: no
	// samples needed.
	if k == s2Block || c.worthCompressing(plain, dst[body:]) {
		var kind byte
		dst, kind = c.compress(k, dst, plain)
		if kind != compNone && (len(dst)-body)*1000 < len(plain)*keepCompressedPermille {
			comp = kind
		} else {
			dst = dst[:body]
		}
	}
	h := dst[start : start+envHeaderSize]
	copy(h, envMagic)
	h[4], h[5], h[6], h[7] = envVersion, byte(t), comp, flags
	binary.LittleEndian.PutUint32(h[8:], uint32(len(plain)))
	if c.keys != nil {
		aad := make([]byte, 0, envHeaderSize+len(name))
		aad = append(append(aad, h...), name...)
		if comp != compNone {
			return c.keys.SealInPlace(dst, start+envHeaderSize, aad)
		}
		return c.keys.Seal(dst[:start+envHeaderSize], plain, aad)
	}
	if comp == compNone {
		dst = append(dst, plain...)
	}
	crc := crc32.Update(0, castagnoli, h)
	crc = crc32.Update(crc, castagnoli, []byte(name))
	crc = crc32.Update(crc, castagnoli, dst[body:])
	return binary.LittleEndian.AppendUint32(dst, crc), nil
}

// openOwned is open of an envelope the caller gives up: it is decrypted
// where it lies, and an uncompressed plaintext is returned inside it (one
// allocation less per chunk read, which the reads of a restore or a file
// extraction otherwise pay in zeroing and page faults).
func (c *codec) openOwned(t objType, name string, env []byte) ([]byte, error) {
	at := envHeaderSize // where the payload, or the ciphertext, starts
	if c.keys != nil {
		at += crypto.NonceSize
	}
	in := env[min(at, len(env)):][:0]
	var out []byte
	var err error
	if len(env) > 6 && env[6] == compNone {
		out, _, err = c.open(in, nil, t, name, env)
	} else {
		out, _, err = c.open(nil, in, t, name, env) // decoded into a new buffer
	}
	return out, err
}

// header parses an envelope's header and refuses a compression the
// repository's format version does not allow.
func (c *codec) header(name string, env []byte) (envHeader, error) {
	h, err := parseEnvHeader(name, env)
	if err == nil && h.comp == compS2 && !c.s2 {
		err = corrupt(name, "s2 compression in a repository of format version 1")
	}
	return h, err
}

type envHeader struct {
	version, typ, comp, flags byte
	plainLen                  int
}

func parseEnvHeader(name string, env []byte) (envHeader, error) {
	var h envHeader
	if len(env) < envHeaderSize {
		return h, corrupt(name, "envelope of %d bytes is shorter than its header", len(env))
	}
	if string(env[:4]) != envMagic {
		return h, corrupt(name, "bad envelope magic")
	}
	h = envHeader{version: env[4], typ: env[5], comp: env[6], flags: env[7],
		plainLen: int(binary.LittleEndian.Uint32(env[8:12]))}
	if h.version != envVersion {
		return h, corrupt(name, "unknown envelope version %d", h.version)
	}
	if h.typ < byte(typeChunk) || h.typ > byte(typeManifest) {
		return h, corrupt(name, "unknown object type %d", h.typ)
	}
	if h.comp > compS2 {
		return h, corrupt(name, "unknown compression %d", h.comp)
	}
	if h.flags&^flagEncrypted != 0 {
		return h, corrupt(name, "unknown flags %#x", h.flags)
	}
	if h.plainLen > maxPlainLen {
		return h, corrupt(name, "plain length %d exceeds limit", h.plainLen)
	}
	return h, nil
}

// open authenticates env as an object of type t stored under name and
// appends its plaintext to dst[:0]. scratch holds the decrypted payload.
func (c *codec) open(dst, scratch []byte, t objType, name string, env []byte) (out, scr []byte, err error) {
	h, err := c.header(name, env)
	if err != nil {
		return dst, scratch, err
	}
	if objType(h.typ) != t {
		return dst, scratch, corrupt(name, "stored %v where a %v was expected", objType(h.typ), t)
	}
	encrypted := h.flags&flagEncrypted != 0
	if encrypted != (c.keys != nil) {
		return dst, scratch, corrupt(name, "encryption flag does not match the repository")
	}
	body := env[envHeaderSize:]
	var payload []byte
	if encrypted {
		aad := make([]byte, 0, envHeaderSize+len(name))
		aad = append(append(aad, env[:envHeaderSize]...), name...)
		if h.comp == compNone {
			// decrypt straight into the output
			if dst, err = c.keys.Open(dst[:0], body, aad); err != nil {
				return dst, scratch, corrupt(name, "authentication failed")
			}
		} else {
			if payload, err = c.keys.Open(scratch[:0], body, aad); err != nil {
				return dst, scratch, corrupt(name, "authentication failed")
			}
			scratch = payload
		}
	} else {
		if len(body) < 4 {
			return dst, scratch, corrupt(name, "envelope truncated")
		}
		payload = body[:len(body)-4]
		crc := crc32.Update(0, castagnoli, env[:envHeaderSize])
		crc = crc32.Update(crc, castagnoli, []byte(name))
		crc = crc32.Update(crc, castagnoli, payload)
		if crc != binary.LittleEndian.Uint32(body[len(body)-4:]) {
			return dst, scratch, corrupt(name, "checksum mismatch")
		}
		if h.comp == compNone {
			dst = append(dst[:0], payload...)
		}
	}
	switch h.comp {
	case compZstd:
		if cap(dst) < h.plainLen {
			dst = make([]byte, 0, h.plainLen)
		}
		dst, err = c.dec.DecodeAll(payload, dst[:0:h.plainLen])
		if err != nil {
			return dst, scratch, corrupt(name, "decompress: %v", err)
		}
	case compS2:
		// The block states its length first: checked before decoding.
		if n, err := s2.DecodedLen(payload); err != nil || n != h.plainLen {
			return dst, scratch, corrupt(name, "s2 block of length %d, header says %d (%v)", n, h.plainLen, err)
		}
		if cap(dst) < h.plainLen {
			dst = make([]byte, h.plainLen)
		}
		out, err := s2.Decode(dst[:h.plainLen], payload)
		if err != nil {
			return dst, scratch, corrupt(name, "decompress: %v", err)
		}
		dst = out
	}
	if len(dst) != h.plainLen {
		return dst, scratch, corrupt(name, "plain length %d, header says %d", len(dst), h.plainLen)
	}
	return dst, scratch, nil
}
