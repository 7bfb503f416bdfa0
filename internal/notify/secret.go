package notify

import (
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// maxSecret bounds what a secret file may hold.
const maxSecret = 64 << 10

// readSecret returns a secret from a file or, when file is "", from the
// systemd credential of that name ($CREDENTIALS_DIRECTORY/credential),
// without its trailing line break. A file every user may read is used,
// with a warning.
func readSecret(log *slog.Logger, what, file, credential string) (string, error) {
	path := file
	if path == "" {
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return "", fmt.Errorf("%w: %s: credential %q: CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential=%s:FILE)",
				ErrSecretFile, what, credential, credential)
		}
		path = filepath.Join(dir, credential)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrSecretFile, what, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrSecretFile, what, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s: %s is not a regular file", ErrSecretFile, what, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecret+1))
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrSecretFile, what, err)
	}
	if len(b) > maxSecret {
		return "", fmt.Errorf("%w: %s: %s is larger than %d bytes", ErrSecretFile, what, path, maxSecret)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%w: %s: %s is empty", ErrSecretFile, what, path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%w: %s: %s holds more than one line", ErrSecretFile, what, path)
	}
	if st.Mode().Perm()&0o004 != 0 {
		log.Warn("secret file is readable by every user: chmod o-r it", "secret", what, "file", path)
	}
	return s, nil
}

// loadCAs reads PEM certificates to trust; "" means the system roots (nil).
func loadCAs(what, path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", what, path)
	}
	return pool, nil
}
