package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoSecret means a secret was asked for but none is configured.
var ErrNoSecret = errors.New("no secret configured")

// ReadSecret reads a secret from a file, or from a systemd credential
// (the file of that name in $CREDENTIALS_DIRECTORY, set by systemd's
// LoadCredential=); a trailing newline is dropped. With neither set it
// returns ErrNoSecret.
func ReadSecret(file, credential string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read secret: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case credential != "":
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return "", fmt.Errorf("credential %q: CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential=%s:FILE)", credential, credential)
		}
		if strings.ContainsAny(credential, "/\\") {
			return "", fmt.Errorf("credential %q: not a credential name", credential)
		}
		b, err := os.ReadFile(filepath.Join(dir, credential))
		if err != nil {
			return "", fmt.Errorf("read credential %q: %w", credential, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", ErrNoSecret
}

// Password returns a connection's login password; ErrNoSecret when none is
// configured.
func (c Connection) Password() (string, error) {
	pw, err := ReadSecret(c.PasswordFile, c.PasswordCredential)
	if err != nil && !errors.Is(err, ErrNoSecret) {
		return "", fmt.Errorf("connection %s: %w", c.Name, err)
	}
	return pw, err
}

// Password returns a repository's passphrase ("" when none is configured:
// an unencrypted repository).
func (r Repository) Password() (string, error) {
	pw, err := ReadSecret(r.PasswordFile, r.PasswordCredential)
	if errors.Is(err, ErrNoSecret) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("repository %s: %w", r.Name, err)
	}
	return pw, nil
}
