package local

import (
	"testing"

	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		be, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return be
	})
}

func TestConformanceNoSync(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		be, err := OpenOptions(t.TempDir(), Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		return be
	})
}

func TestConformanceDirect(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		be, err := OpenOptions(t.TempDir(), Options{Batch: true, Direct: true})
		if err != nil {
			t.Fatal(err)
		}
		return be
	})
}
