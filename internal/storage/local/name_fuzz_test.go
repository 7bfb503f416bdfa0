package local

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/storage"
)

// FuzzName checks that an accepted object name always maps to a path
// strictly inside the backend directory and outside its tmp directory, and
// that accepted names round-trip through List unchanged.
func FuzzName(f *testing.F) {
	for _, s := range []string{"config", "chunks/ab/ab12", "../x", "a/../../b", "tmp/x", "a//b", "/etc/passwd", ".", "a/.", "a/.b", "..."} {
		f.Add(s)
	}
	be, err := OpenOptions(f.TempDir(), Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := be.path(context.Background(), "fuzz", name)
		if err != nil {
			if !errors.Is(err, storage.ErrInvalidName) {
				t.Fatalf("%q: %v", name, err)
			}
			return
		}
		rel, err := filepath.Rel(be.Dir(), p)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.ToSlash(rel) != name {
			t.Fatalf("%q maps to %q (rel %q)", name, p, rel)
		}
		if rel == tmpDir || strings.HasPrefix(rel, tmpDir+"/") {
			t.Fatalf("%q maps into the tmp directory", name)
		}
	})
}
