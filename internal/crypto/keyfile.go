package crypto

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/crypto/argon2"
)

// KDFParams are argon2id cost parameters.
type KDFParams struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// DefaultKDF is the cost used for new key files: 3 passes over 64 MiB with
// 2 lanes.
func DefaultKDF() KDFParams { return KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 2} }

// Bounds a key file's parameters must respect (a hostile key file must not
// make kura allocate unbounded memory or spin forever).
const (
	maxKDFTime   = 64
	maxKDFMemKiB = 4 << 20 // 4 GiB
	saltSize     = 16
)

func (p KDFParams) validate() error {
	if p.Time < 1 || p.Time > maxKDFTime || p.MemoryKiB < 8 || p.MemoryKiB > maxKDFMemKiB ||
		p.Threads < 1 || p.MemoryKiB < 8*uint32(p.Threads) {
		return fmt.Errorf("%w: argon2id parameters out of bounds (time %d, memory %d KiB, threads %d)",
			ErrBadKeyFile, p.Time, p.MemoryKiB, p.Threads)
	}
	return nil
}

// KeyFileVersion is the only key file version this code reads and writes.
const KeyFileVersion = 1

// KeyFile is the stored, passphrase-wrapped form of the master key.
type KeyFile struct {
	Version    int       `json:"version"`
	KDF        string    `json:"kdf"`
	Params     KDFParams `json:"params"`
	Salt       []byte    `json:"salt"`
	Nonce      []byte    `json:"nonce"`
	Ciphertext []byte    `json:"ciphertext"`
	Created    time.Time `json:"created"`
	Host       string    `json:"host,omitempty"`
	User       string    `json:"user,omitempty"`
}

// WrapMasterKey seals mk with a key derived from password.
func WrapMasterKey(mk *MasterKey, password string, p KDFParams, host, user string) (*KeyFile, error) {
	if p == (KDFParams{}) {
		p = DefaultKDF()
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	kf := &KeyFile{Version: KeyFileVersion, KDF: "argon2id", Params: p,
		Salt: make([]byte, saltSize), Nonce: make([]byte, NonceSize),
		Created: time.Now().UTC().Truncate(time.Second), Host: host, User: user}
	if _, err := rand.Read(kf.Salt); err != nil {
		return nil, fmt.Errorf("salt: %w", err)
	}
	if _, err := rand.Read(kf.Nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	aead, err := kf.aead(password)
	if err != nil {
		return nil, err
	}
	kf.Ciphertext = aead.Seal(nil, kf.Nonce, mk.Bytes(), kf.aad())
	return kf, nil
}

func (kf *KeyFile) aad() []byte { return []byte("kura key file v1") }

func (kf *KeyFile) aead(password string) (interface {
	Seal(dst, nonce, plaintext, aad []byte) []byte
	Open(dst, nonce, ciphertext, aad []byte) ([]byte, error)
}, error) {
	prefault(int(kf.Params.MemoryKiB) << 10)
	wrap := argon2.IDKey([]byte(password), kf.Salt, kf.Params.Time, kf.Params.MemoryKiB, kf.Params.Threads, KeySize)
	var mk MasterKey
	copy(mk.Enc[:], wrap)
	k, err := NewKeys(&mk)
	if err != nil {
		return nil, err
	}
	return k.aead, nil
}

// prefault gives the heap n bytes of memory that is mapped already, for
// the KDF's allocation that follows: the argon2id lanes, left to fault
// fresh pages in themselves, fault them from two threads at once, and each
// fault then flushes the other CPU's TLB (an inter-processor interrupt,
// costly in a VM). Measured on this project's 2-CPU VM, in a fresh
// process: the KDF took 211-230 ms (213-305 ms of system time) without,
// 100-136 ms (29-44 ms) with. One thread writing a byte per page maps the
// memory without those flushes; collected at once, it is what the KDF's
// allocation gets.
func prefault(n int) {
	b := make([]byte, n+64<<10)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	runtime.KeepAlive(b)
	runtime.GC()
}

// Unwrap derives the wrapping key from password and opens the master key.
func (kf *KeyFile) Unwrap(password string) (*MasterKey, error) {
	aead, err := kf.aead(password)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, kf.Nonce, kf.Ciphertext, kf.aad())
	if err != nil {
		return nil, ErrWrongPassword
	}
	return MasterKeyFromBytes(plain)
}

// Encode returns the JSON form of the key file.
func (kf *KeyFile) Encode() ([]byte, error) { return json.MarshalIndent(kf, "", "  ") }

// ParseKeyFile decodes and validates a key file. It never runs the KDF.
func ParseKeyFile(data []byte) (*KeyFile, error) {
	var kf KeyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKeyFile, err)
	}
	if kf.Version != KeyFileVersion {
		return nil, fmt.Errorf("%w: version %d not supported", ErrBadKeyFile, kf.Version)
	}
	if kf.KDF != "argon2id" {
		return nil, fmt.Errorf("%w: kdf %q not supported", ErrBadKeyFile, kf.KDF)
	}
	if err := kf.Params.validate(); err != nil {
		return nil, err
	}
	if len(kf.Salt) < 8 || len(kf.Salt) > 64 || len(kf.Nonce) != NonceSize ||
		len(kf.Ciphertext) != MasterSize+TagSize {
		return nil, fmt.Errorf("%w: salt, nonce or ciphertext has the wrong length", ErrBadKeyFile)
	}
	return &kf, nil
}

// Equal reports whether two master keys are identical (constant time).
func (mk *MasterKey) Equal(o *MasterKey) bool {
	return subtle.ConstantTimeCompare(mk.Bytes(), o.Bytes()) == 1
}
