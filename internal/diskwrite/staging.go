package diskwrite

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// StagingDir creates a private directory (mode 0700) named prefix plus a
// random suffix under scratch (the system's temporary directory when
// empty), where an image is written before it is uploaded elsewhere.
func StagingDir(scratch, prefix string) (string, error) {
	if scratch == "" {
		scratch = os.TempDir()
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	dir := filepath.Join(scratch, prefix+hex.EncodeToString(b[:]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("staging directory: %w", err)
	}
	return dir, nil
}
