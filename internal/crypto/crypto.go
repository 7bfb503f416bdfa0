// Package crypto holds kura's cryptographic primitives: the repository
// master key (an AES-256-GCM encryption key and a mac key that names
// chunks through an IDHash, HMAC-SHA256 or keyed BLAKE3), passphrase
// wrapping of that key with argon2id (key files), and authenticated
// sealing of object payloads.
//
// Nothing here knows about object names or repository layout; the repo
// package decides what is sealed with which associated data.
package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// Sizes of the primitives.
const (
	KeySize      = 32 // AES-256 key and mac key
	MasterSize   = 2 * KeySize
	NonceSize    = 12
	TagSize      = 16
	DigestSize   = 32
	SealOverhead = NonceSize + TagSize
)

// Sentinel errors.
var (
	// ErrWrongPassword means the passphrase does not unwrap the key file.
	ErrWrongPassword = errors.New("wrong passphrase")
	// ErrAuth means a sealed payload failed authentication (tampered,
	// corrupted, or stored under another name).
	ErrAuth = errors.New("authentication failed")
	// ErrBadKeyFile means a key file could not be decoded.
	ErrBadKeyFile = errors.New("malformed key file")
)

// MasterKey is the repository secret: 32 bytes of AES-256-GCM key followed
// by 32 bytes of mac key for chunk digests (Digester).
type MasterKey struct {
	Enc [KeySize]byte
	MAC [KeySize]byte
}

// NewMasterKey returns a fresh random master key.
func NewMasterKey() (*MasterKey, error) {
	var b [MasterSize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("generate master key: %w", err)
	}
	return MasterKeyFromBytes(b[:])
}

// MasterKeyFromBytes builds a master key from its 64-byte serialisation.
func MasterKeyFromBytes(b []byte) (*MasterKey, error) {
	if len(b) != MasterSize {
		return nil, fmt.Errorf("master key is %d bytes, want %d", len(b), MasterSize)
	}
	mk := &MasterKey{}
	copy(mk.Enc[:], b[:KeySize])
	copy(mk.MAC[:], b[KeySize:])
	return mk, nil
}

// Bytes returns the 64-byte serialisation (Enc ‖ MAC).
func (mk *MasterKey) Bytes() []byte {
	out := make([]byte, 0, MasterSize)
	out = append(out, mk.Enc[:]...)
	return append(out, mk.MAC[:]...)
}

// Keys is a ready-to-use encryption key: an AEAD. It is safe for
// concurrent use.
type Keys struct {
	aead cipher.AEAD
}

// NewKeys prepares mk for use.
func NewKeys(mk *MasterKey) (*Keys, error) {
	block, err := aes.NewCipher(mk.Enc[:])
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return &Keys{aead: aead}, nil
}

// Seal appends nonce ‖ ciphertext ‖ tag of plaintext to dst, using a fresh
// random nonce and the given associated data.
func (k *Keys) Seal(dst, plaintext, aad []byte) ([]byte, error) {
	n := len(dst)
	dst = append(dst, make([]byte, NonceSize)...)
	nonce := dst[n : n+NonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return k.aead.Seal(dst, nonce, plaintext, aad), nil
}

// SealInPlace encrypts buf[at+NonceSize:] where it lies: it writes a fresh
// random nonce to buf[at:at+NonceSize], replaces the plaintext after it by
// its ciphertext and appends the tag, so that buf[at:] becomes nonce ‖
// ciphertext ‖ tag as Seal would append it. buf grows if its capacity
// lacks room for the tag.
func (k *Keys) SealInPlace(buf []byte, at int, aad []byte) ([]byte, error) {
	if at < 0 || len(buf) < at+NonceSize {
		return nil, fmt.Errorf("seal in place: %d bytes hold no nonce at %d", len(buf), at)
	}
	if cap(buf)-len(buf) < k.aead.Overhead() {
		buf = append(buf, make([]byte, k.aead.Overhead())...)[:len(buf)]
	}
	nonce := buf[at : at+NonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	pt := buf[at+NonceSize:]
	ct := k.aead.Seal(pt[:0], nonce, pt, aad)
	return buf[:at+NonceSize+len(ct)], nil
}

// Open authenticates and decrypts nonce ‖ ciphertext ‖ tag, appending the
// plaintext to dst.
func (k *Keys) Open(dst, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < SealOverhead {
		return nil, fmt.Errorf("%w: sealed data too short", ErrAuth)
	}
	out, err := k.aead.Open(dst, sealed[:NonceSize], sealed[NonceSize:], aad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}
