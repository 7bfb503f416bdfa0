package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/kurabackup/kura/internal/storage"
)

func init() { storage.Register("local", openLocation) }

// openLocation opens "local:<dir>" (or a bare directory) in batch sync
// mode, which the repository's per-point Sync makes safe, with a reserve
// for opts.ReserveFor. With opts.Create the directory is created.
func openLocation(_ context.Context, dir string, opts storage.OpenOptions) (storage.Backend, error) {
	if strings.HasPrefix(dir, "//") {
		dir = dir[1:] // local://srv/kura reads as local:/srv/kura
	}
	if dir == "" {
		return nil, errors.New("local: empty directory")
	}
	if opts.Create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create repository directory: %w", err)
		}
	} else if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("no kura repository at %s: %w (run kura repo init)", dir, err)
	}
	o := Options{Batch: true, Direct: true}
	if opts.ReserveFor != nil {
		o.Reserve, o.ReserveFor = DefaultReserve, opts.ReserveFor
	}
	return OpenOptions(dir, o)
}
