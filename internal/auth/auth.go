// Package auth is who may do what in kura server: users signing in with
// argon2id-hashed passwords, API tokens (shown once, stored hashed),
// roles, and the per-group scope of restore-only users.
//
// Roles: admin (everything), operator (run and cancel jobs, restore
// anything), auditor (read everything, change nothing), restore (see and
// restore only the VMs of its groups, into the storage and networks those
// groups allow). A token acts with its own role, never more than its
// owner's (checked when it is made and every time it is used, so a
// demoted owner demotes its tokens).
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/kurabackup/kura/internal/config"
)

// Sentinel errors.
var (
	// ErrBadCredentials means an unknown user, a wrong password or an
	// unknown, expired or revoked token (which one is not said).
	ErrBadCredentials = errors.New("bad credentials")
	// ErrForbidden means the principal may not do that.
	ErrForbidden = errors.New("forbidden")
	// ErrThrottled means too many failed sign-ins: wait.
	ErrThrottled = errors.New("too many failed sign-ins: try again later")
)

// Argon2id costs for new password hashes (about 0.1 s here).
var hashParams = struct {
	time, memKiB uint32
	threads      uint8
}{3, 64 << 10, 2}

// HashPassword returns the argon2id PHC string of password.
func HashPassword(password string) (string, error) {
	if len(password) < 8 {
		return "", errors.New("a password needs at least 8 characters")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	p := hashParams
	sum := argon2.IDKey([]byte(password), salt, p.time, p.memKiB, p.threads, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memKiB, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(sum)), nil
}

// CheckPassword reports whether password matches an argon2id PHC string.
// Hostile costs (from an edited configuration) are refused.
func CheckPassword(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil ||
		m < 8 || m > 1<<22 || t < 1 || t > 16 || p < 1 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) < 16 || len(want) > 64 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// TokenPrefix starts every API token: "kura_<id>_<secret>".
const TokenPrefix = "kura_"

// NewToken makes a token for a user: the secret to show once, and the
// record (with its hash) to store.
func NewToken(name, role string, expires time.Time, now time.Time) (secret string, rec config.Token, err error) {
	id := make([]byte, 6)
	key := make([]byte, 24)
	if _, err := rand.Read(id); err != nil {
		return "", config.Token{}, err
	}
	if _, err := rand.Read(key); err != nil {
		return "", config.Token{}, err
	}
	rec = config.Token{ID: hex.EncodeToString(id), Name: name, Role: role, Created: now.UTC().Truncate(time.Second), Expires: expires}
	secret = TokenPrefix + rec.ID + "_" + base64.RawURLEncoding.EncodeToString(key)
	rec.Hash = tokenHash(secret)
	return secret, rec, nil
}

// tokenHash is how a token is stored: the secret is random (192 bits), so
// a plain SHA-256 suffices (no need for a slow hash).
func tokenHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tokenID extracts the id of a token secret.
func tokenID(secret string) (string, bool) {
	rest, ok := strings.CutPrefix(secret, TokenPrefix)
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, "_")
	return id, ok && id != ""
}

// Principal is who a request acts as.
type Principal struct {
	User string
	// Role is the effective role (a token's, within its owner's).
	Role string
	// Groups are a restore user's groups.
	Groups []string
	// Token is the id of the token used ("" for a signed-in user).
	Token string
}

// Authenticator checks credentials against a configuration. It is safe
// for concurrent use when the configuration is not changed under it (the
// server swaps whole configurations).
type Authenticator struct {
	cfg *config.Config
	now func() time.Time
}

// New returns an Authenticator over cfg.
func New(cfg *config.Config, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{cfg: cfg, now: now}
}

// Password authenticates a user by password.
func (a *Authenticator) Password(user, password string) (Principal, error) {
	u, ok := a.cfg.User(user)
	if !ok || u.PasswordHash == "" {
		// Spend the same time as a real check: do not tell which users exist.
		CheckPassword("$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g", password)
		return Principal{}, ErrBadCredentials
	}
	if !CheckPassword(u.PasswordHash, password) {
		return Principal{}, ErrBadCredentials
	}
	return Principal{User: u.Name, Role: u.Role, Groups: slices.Clone(u.Groups)}, nil
}

// Token authenticates an API token.
func (a *Authenticator) Token(secret string) (Principal, error) {
	id, ok := tokenID(secret)
	if !ok {
		return Principal{}, ErrBadCredentials
	}
	h := tokenHash(secret)
	for _, u := range a.cfg.Users {
		for _, t := range u.Tokens {
			if t.ID != id || subtle.ConstantTimeCompare([]byte(t.Hash), []byte(h)) != 1 {
				continue
			}
			if !t.Expires.IsZero() && !a.now().Before(t.Expires) {
				return Principal{}, ErrBadCredentials
			}
			role := t.Role
			if role == "" || !config.RoleAtMost(role, u.Role) {
				role = u.Role // never more than the owner, whatever the record says
			}
			p := Principal{User: u.Name, Role: role, Token: t.ID}
			if role == config.RoleRestore {
				p.Groups = slices.Clone(u.Groups)
			}
			return p, nil
		}
	}
	return Principal{}, ErrBadCredentials
}
