package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kurabackup/kura/internal/storage"
)

// List walks only the directories that can hold names starting with
// prefix: "chunks/ab" reads <dir>/chunks and descends into the entries
// beginning with "ab". Entries deleted while the walk runs are skipped.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: list %q: %w", prefix, err)
	}
	if err := storage.ValidPrefix(prefix); err != nil {
		return fmt.Errorf("local: list: %w", err)
	}
	dirPart, partial := "", prefix
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dirPart, partial = prefix[:i+1], prefix[i+1:]
	}
	w := walker{ctx: ctx, root: b.dir, fn: fn}
	return w.walk(dirPart, partial)
}

type walker struct {
	ctx  context.Context
	root string
	fn   func(storage.ObjectInfo) error
}

// walk lists the directory rel (a name prefix ending in "/" or "") and
// visits entries whose names start with partial.
func (w *walker) walk(rel, partial string) error {
	d, err := os.Open(filepath.Join(w.root, filepath.FromSlash(rel)))
	if err != nil {
		if isGone(err) {
			return nil
		}
		return fmt.Errorf("local: list %q: %w", rel, err)
	}
	defer d.Close()
	for {
		entries, err := d.ReadDir(1024)
		for _, e := range entries {
			if cerr := w.ctx.Err(); cerr != nil {
				return fmt.Errorf("local: list %q: %w", rel+partial, cerr)
			}
			name := e.Name()
			if !strings.HasPrefix(name, partial) || storage.ValidName(name) != nil {
				continue
			}
			if rel == "" && name == tmpDir {
				continue
			}
			if err := w.visit(rel+name, e); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && len(entries) == 0) {
			return nil
		}
		if err != nil {
			if isGone(err) {
				return nil
			}
			return fmt.Errorf("local: list %q: %w", rel, err)
		}
	}
}

func (w *walker) visit(name string, e os.DirEntry) error {
	if e.IsDir() {
		return w.walk(name+"/", "")
	}
	if !e.Type().IsRegular() {
		return nil
	}
	fi, err := e.Info()
	if err != nil {
		if isGone(err) {
			return nil
		}
		return fmt.Errorf("local: list %q: %w", name, err)
	}
	return w.fn(storage.ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()})
}

func isGone(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, errNotDir)
}
