package repo

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"runtime"

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

// codec seals and opens envelopes. It is safe for concurrent use.
// CompressionLevel is the zstd level chunks are written with. Readers do
// not depend on it. SpeedDefault (zstd level 3) was measured against
// SpeedFastest in docs/design/repository-format.md §11.2: about 10% smaller
// on text for about 25% more compression time.
const CompressionLevel = zstd.SpeedDefault

type codec struct {
	keys *crypto.Keys // nil: unencrypted repository
	enc  *zstd.Encoder
	dec  *zstd.Decoder
}

func newCodec(keys *crypto.Keys) (*codec, error) {
	n := runtime.GOMAXPROCS(0)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(CompressionLevel),
		zstd.WithEncoderConcurrency(n), zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true),
		zstd.WithWindowSize(zstd.MaxWindowSize/128)) // 4 MiB window is plenty for one chunk
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(n),
		zstd.WithDecoderMaxMemory(maxPlainLen), zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &codec{keys: keys, enc: enc, dec: dec}, nil
}

func (c *codec) close() {
	c.enc.Close()
	c.dec.Close()
}

// digest names plaintext: keyed when encrypted.
func (c *codec) digest(p []byte) Digest {
	if c.keys != nil {
		return c.keys.Digest(p)
	}
	return crypto.PlainDigest(p)
}

// worthCompressing guesses from three small samples whether a large buffer
// compresses at all, so incompressible data skips a full zstd pass.
func (c *codec) worthCompressing(p, scratch []byte) bool {
	const sample = 32 << 10
	if len(p) < 8*sample {
		return true
	}
	for _, at := range []int{0, len(p) / 2, len(p) - sample} {
		out := c.enc.EncodeAll(p[at:at+sample], scratch[:0])
		if len(out)*1000 < sample*keepCompressedPermille {
			return true
		}
	}
	return false
}

// seal appends the envelope of plain to dst. scratch is a reusable buffer
// for the compressed form; the (possibly grown) scratch is returned.
func (c *codec) seal(dst, scratch []byte, t objType, name string, plain []byte) (out, scr []byte, err error) {
	if len(plain) > maxPlainLen {
		return dst, scratch, fmt.Errorf("%s: object of %d bytes exceeds the %d byte limit", name, len(plain), maxPlainLen)
	}
	payload, comp := plain, byte(compNone)
	if c.worthCompressing(plain, scratch) {
		scratch = c.enc.EncodeAll(plain, scratch[:0])
		if len(scratch)*1000 < len(plain)*keepCompressedPermille {
			payload, comp = scratch, compZstd
		}
	}
	start := len(dst)
	var flags byte
	if c.keys != nil {
		flags = flagEncrypted
	}
	dst = append(dst, envMagic...)
	dst = append(dst, envVersion, byte(t), comp, flags)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(plain)))
	if c.keys != nil {
		aad := make([]byte, 0, envHeaderSize+len(name))
		aad = append(append(aad, dst[start:start+envHeaderSize]...), name...)
		dst, err = c.keys.Seal(dst, payload, aad)
		return dst, scratch, err
	}
	crc := crc32.Update(0, castagnoli, dst[start:start+envHeaderSize])
	crc = crc32.Update(crc, castagnoli, []byte(name))
	crc = crc32.Update(crc, castagnoli, payload)
	dst = append(dst, payload...)
	dst = binary.LittleEndian.AppendUint32(dst, crc)
	return dst, scratch, nil
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
	if h.comp > compZstd {
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
	h, err := parseEnvHeader(name, env)
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
	if h.comp == compZstd {
		if cap(dst) < h.plainLen {
			dst = make([]byte, 0, h.plainLen)
		}
		dst, err = c.dec.DecodeAll(payload, dst[:0:h.plainLen])
		if err != nil {
			return dst, scratch, corrupt(name, "decompress: %v", err)
		}
	}
	if len(dst) != h.plainLen {
		return dst, scratch, corrupt(name, "plain length %d, header says %d", len(dst), h.plainLen)
	}
	return dst, scratch, nil
}
