package repo

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kurabackup/kura/internal/crypto"
)

// Format versions. A kura reads repositories whose version is in
// [MinReadVersion, MaxReadVersion] and writes into those in
// [MinWriteVersion, MaxWriteVersion]. New repositories get CurrentVersion.
// Version 2 adds S2 chunk payloads (envelope compression 2) to version 1;
// version 3 adds BLAKE3 ids (config chunk_id "blake3") to version 2.
const (
	CurrentVersion  = 3
	MinReadVersion  = 1
	MaxReadVersion  = 3
	MinWriteVersion = 1
	MaxWriteVersion = 3
)

// Config compression values: the codecs a repository's envelopes may use.
const (
	compressionZstd   = "zstd"    // format version 1: zstd only
	compressionZstdS2 = "zstd+s2" // format version 2: zstd and S2
)

// compressionOf is the compression of a new repository of a version.
func compressionOf(version int) string {
	if version >= 2 {
		return compressionZstdS2
	}
	return compressionZstd
}

// Repository limits.
const (
	DefaultChunkSize = 4 << 20
	MinChunkSize     = 64 << 10
	MaxChunkSize     = 64 << 20
	maxPlainLen      = 64 << 20
	configName       = "config"
	configMagic      = "kura-repository"
)

// Config is the plaintext repository configuration stored in "config".
type Config struct {
	Magic       string    `json:"magic"`
	Version     int       `json:"version"`
	ID          string    `json:"id"`
	ChunkSize   int       `json:"chunk_size"`
	Encryption  string    `json:"encryption"`
	Compression string    `json:"compression"`
	Created     time.Time `json:"created"`
	// MAC authenticates the fields that never change (spec §2): hex of
	// the keyed digest of canonical(); absent in repositories made before
	// it, which the first writer upgrades.
	MAC string `json:"mac,omitempty"`
	// Immutable is set for repositories whose objects the store locks
	// (S3 Object Lock); see Immutability.
	Immutable *Immutability `json:"immutable,omitempty"`
	// CopyOf is the id of the repository this one was initialised as a
	// copy of (same chunk size, id hash and master key).
	CopyOf string `json:"copy_of,omitempty"`
	// ChunkID names the id hash (spec §4): "blake3" (format version 3),
	// or absent for HMAC-SHA256.
	ChunkID string `json:"chunk_id,omitempty"`

	// Encrypted is derived from Encryption.
	Encrypted bool `json:"-"`
}

// canonical is what MAC authenticates: every field but the version (a
// later format version upgrades it in place) and the MAC itself.
func (c Config) canonical() []byte {
	out := fmt.Appendf(nil, "kura config v1\nmagic=%s\nid=%s\nchunk_size=%d\nencryption=%s\ncompression=%s\ncreated=%s\n",
		c.Magic, c.ID, c.ChunkSize, c.Encryption, c.Compression, c.Created.UTC().Format(time.RFC3339Nano))
	// Optional fields, only when set: configs without them keep their MAC.
	if im := c.Immutable; im != nil {
		out = fmt.Appendf(out, "immutable=%d/%d\n", im.RetainSeconds, im.SlackSeconds)
	}
	if c.CopyOf != "" {
		out = fmt.Appendf(out, "copy_of=%s\n", c.CopyOf)
	}
	if c.ChunkID != "" {
		out = fmt.Appendf(out, "chunk_id=%s\n", c.ChunkID)
	}
	return out
}

// IDHash is the function that names the repository's chunks and indexes.
func (c Config) IDHash() crypto.IDHash {
	if c.ChunkID == "" {
		return crypto.HMACSHA256
	}
	return crypto.IDHash(c.ChunkID)
}

// chunkIDOf is the id hash of a new repository of a version.
func chunkIDOf(version int) string {
	if version >= 3 {
		return string(crypto.BLAKE3)
	}
	return ""
}

// encrypted reports whether the repository encrypts its objects.
func (c Config) encrypted() bool { return c.Encryption == "aes-256-gcm" }

func decodeConfig(data []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return c, corrupt(configName, "%v", err)
	}
	if c.Magic != configMagic {
		return c, fmt.Errorf("%w: object %q is not a kura repository config", ErrNotRepository, configName)
	}
	if c.Version > MaxReadVersion {
		return c, fmt.Errorf("format version %d, this kura reads up to %d: %w",
			c.Version, MaxReadVersion, ErrNewerFormat)
	}
	if c.Version < MinReadVersion {
		return c, corrupt(configName, "format version %d is not valid", c.Version)
	}
	if c.ChunkSize < MinChunkSize || c.ChunkSize > MaxChunkSize || c.ChunkSize%4096 != 0 {
		return c, corrupt(configName, "chunk size %d out of bounds", c.ChunkSize)
	}
	if c.Encryption != "aes-256-gcm" && c.Encryption != "none" {
		return c, corrupt(configName, "unknown encryption %q", c.Encryption)
	}
	switch {
	case c.Compression == compressionZstd:
	case c.Compression == compressionZstdS2 && c.Version >= 2:
	default:
		return c, corrupt(configName, "compression %q is not valid in format version %d", c.Compression, c.Version)
	}
	if c.ChunkID != "" && (c.ChunkID != string(crypto.BLAKE3) || c.Version < 3) {
		return c, corrupt(configName, "chunk id %q is not valid in format version %d", c.ChunkID, c.Version)
	}
	if len(c.ID) != 32 {
		return c, corrupt(configName, "repository id %q is not 32 hex digits", c.ID)
	}
	return c, nil
}
