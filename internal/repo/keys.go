package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/crypto"
	"github.com/kurabackup/kura/internal/storage"
)

// KeyInfo describes one key file.
type KeyInfo struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Host    string    `json:"host"`
	User    string    `json:"user"`
	Current bool      `json:"current"` // the key that opened this Repository
}

type keyFile struct {
	id string
	kf *crypto.KeyFile
}

// badKey is a key file that does not decode.
type badKey struct {
	name string
	err  error
}

func keyName(id string) string { return "keys/" + id }

func (r *Repository) keyFiles(ctx context.Context) ([]keyFile, error) {
	kfs, _, err := r.readKeyFiles(ctx)
	return kfs, err
}

// readKeyFiles returns the key files that decode, and those that do not.
func (r *Repository) readKeyFiles(ctx context.Context) ([]keyFile, []badKey, error) {
	var names []string
	err := r.be.List(ctx, "keys/", func(oi storage.ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list keys: %w", err)
	}
	sort.Strings(names)
	var out []keyFile
	var bad []badKey
	for _, n := range names {
		data, err := r.be.Get(ctx, n)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", n, err)
		}
		kf, err := crypto.ParseKeyFile(data)
		if err != nil {
			r.log.Warn("skipping unreadable key file", "name", n, "err", err)
			bad = append(bad, badKey{name: n, err: err})
			continue
		}
		out = append(out, keyFile{id: strings.TrimPrefix(n, "keys/"), kf: kf})
	}
	return out, bad, nil
}

// putKey wraps the master key with password and stores a new key file.
func (r *Repository) putKey(ctx context.Context, password, host, usr string) (string, error) {
	if password == "" {
		return "", errors.New("the passphrase must not be empty")
	}
	kf, err := crypto.WrapMasterKey(r.mk, password, r.kdf, host, usr)
	if err != nil {
		return "", err
	}
	data, err := kf.Encode()
	if err != nil {
		return "", err
	}
	id := randomHex(8)
	if err := r.putMeta(ctx, keyName(id), data); err != nil {
		return "", fmt.Errorf("write key file: %w", err)
	}
	return id, r.syncBackend(ctx)
}

// Keys lists the key files of the repository.
func (r *Repository) Keys(ctx context.Context) ([]KeyInfo, error) {
	kfs, err := r.keyFiles(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]KeyInfo, 0, len(kfs))
	for _, k := range kfs {
		out = append(out, KeyInfo{ID: k.id, Created: k.kf.Created, Host: k.kf.Host, User: k.kf.User, Current: k.id == r.keyID})
	}
	return out, nil
}

// AddKey stores a new key file opening the repository with newPassword.
func (r *Repository) AddKey(ctx context.Context, newPassword string) (string, error) {
	if r.mk == nil {
		return "", errors.New("repository is not encrypted: it has no keys")
	}
	if err := r.checkWritable(); err != nil {
		return "", err
	}
	host, usr := defaultIdentity("", "")
	return r.putKey(ctx, newPassword, host, usr)
}

// RemoveKey deletes a key file. It refuses to remove the key that opened
// the repository and the last remaining key.
func (r *Repository) RemoveKey(ctx context.Context, id string) error {
	if err := r.checkWritable(); err != nil {
		return err
	}
	kfs, err := r.keyFiles(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, k := range kfs {
		found = found || k.id == id
	}
	if !found {
		return fmt.Errorf("key %q: %w", id, ErrMissing)
	}
	if id == r.keyID || len(kfs) < 2 {
		return fmt.Errorf("key %q: %w: add another key first or open with another passphrase", id, ErrKeyInUse)
	}
	return r.be.Delete(ctx, keyName(id))
}

// ChangePassword replaces the key in use with one for newPassword. The new
// key is written before the old one is removed.
func (r *Repository) ChangePassword(ctx context.Context, newPassword string) error {
	id, err := r.AddKey(ctx, newPassword)
	if err != nil {
		return err
	}
	old := r.keyID
	r.keyID = id
	if old != "" {
		if err := r.be.Delete(ctx, keyName(old)); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("remove old key %s: %w", old, err)
		}
	}
	return nil
}
