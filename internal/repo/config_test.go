package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/storage/local"
)

// editConfig rewrites the stored config through fn.
func editConfig(t *testing.T, be storage.Backend, fn func(map[string]any)) {
	t.Helper()
	ctx := context.Background()
	data, err := be.Get(ctx, configName)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	data, _ = json.Marshal(m)
	if err := be.Put(ctx, configName, data); err != nil {
		t.Fatal(err)
	}
}

// TestConfigAuthenticated: editing the config's chunk size or id is
// detected — at open through the config's MAC, and, when the MAC was
// removed as well, by every point written since, which carries it.
func TestConfigAuthenticated(t *testing.T) {
	ctx := context.Background()
	for _, encrypt := range []bool{true, false} {
		r, be := newTestRepo(t, encrypt)
		m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(randomBytes(31, testCS)), Size: testCS})
		if r.Config().MAC == "" || m.ConfigMAC != r.Config().MAC {
			t.Fatalf("config mac %q, point's %q", r.Config().MAC, m.ConfigMAC)
		}
		orig, _ := be.Get(ctx, configName)
		for name, edit := range map[string]func(map[string]any){
			"chunk size":           func(c map[string]any) { c["chunk_size"] = 2 * testCS },
			"id":                   func(c map[string]any) { c["id"] = "00000000000000000000000000000000" },
			"chunk size, mac gone": func(c map[string]any) { c["chunk_size"] = 2 * testCS; delete(c, "mac") },
		} {
			editConfig(t, be, edit)
			r2, err := Open(ctx, be, "secret", OpenOptions{})
			if err == nil {
				_, err = r2.LoadPoint(ctx, m.ID)
			}
			if !errors.Is(err, ErrConfigChanged) {
				t.Errorf("encrypted=%v, %s edited: %v, want ErrConfigChanged", encrypt, name, err)
			}
			if err := be.Put(ctx, configName, orig); err != nil {
				t.Fatal(err)
			}
		}
		r2, err := Open(ctx, be, "secret", OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r2.LoadPoint(ctx, m.ID); err != nil {
			t.Fatalf("the original config: %v", err)
		}
	}
}

// TestConfigMACUpgrade: a repository made before config MACs (the v1
// fixture) opens and reads as before; its first writer authenticates the
// config, and older readers are unaffected (they ignore the new fields).
func TestConfigMACUpgrade(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "v1", "encrypted"))); err != nil {
		t.Fatal(err)
	}
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, be, fixturePassword, OpenOptions{})
	if err != nil || r.Config().MAC != "" {
		t.Fatalf("fixture: %v, mac %q", err, r.Config().MAC)
	}
	w, err := r.NewWriter(ctx, "upgrade")
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	r2, err := Open(ctx, be, fixturePassword, OpenOptions{})
	if err != nil || r2.Config().MAC == "" {
		t.Fatalf("after the first writer: %v, mac %q", err, r2.Config().MAC)
	}
	ps, err := r2.ListPoints(ctx)
	if err != nil || len(ps) != 1 {
		t.Fatalf("fixture points after the upgrade: %d, %v", len(ps), err)
	}
	editConfig(t, be, func(c map[string]any) { c["chunk_size"] = 128 << 10 })
	if _, err := Open(ctx, be, fixturePassword, OpenOptions{}); !errors.Is(err, ErrConfigChanged) {
		t.Fatalf("edited after the upgrade: %v", err)
	}
}
