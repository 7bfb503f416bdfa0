package catalog_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/catalog/catalogtest"
)

// TestConformance runs the catalog conformance suite on SQLite.
func TestConformance(t *testing.T) {
	catalogtest.Run(t, catalogtest.Target{New: func(t *testing.T) func(catalog.Options) catalog.Catalog {
		path := filepath.Join(t.TempDir(), "catalog.db")
		return func(opts catalog.Options) catalog.Catalog {
			c, err := catalog.OpenWith(context.Background(), path, opts)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}})
}
