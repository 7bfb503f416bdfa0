package extract_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kurabackup/kura/internal/extract"
	"github.com/kurabackup/kura/internal/fsread"
)

// TestNameWithSlash: a name holding "/" (only a crafted image has one)
// is skipped and reported by its escaped name; everything else is
// extracted, and extracting "/" makes no "root" folder.
func TestNameWithSlash(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		if os.Getenv("KURA_TEST_STRICT") == "1" {
			t.Fatal("mkfs.ext4 not installed (KURA_TEST_STRICT=1)")
		}
		t.Skip("mkfs.ext4 not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	for _, p := range []string{"d/slash_here", "d/ok.txt", "top.txt"} {
		os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(src, p), []byte(p+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "img")
	if out, err := exec.Command(mkfs, "-q", "-F", "-d", src, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v %s", err, out)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// The directory entry's name (the file's content says "d/slash_here").
	if bytes.Count(data, []byte("slash_here")) < 2 {
		t.Fatal("name not found in the image")
	}
	i := bytes.Index(data, []byte("slash_here"))
	if bytes.HasPrefix(data[i-2:], []byte("d/")) {
		i = bytes.Index(data[i+1:], []byte("slash_here")) + i + 1
	}
	copy(data[i:], "slash/here")
	fsys, err := fsread.OpenFS(context.Background(), bytes.NewReader(data), fsread.Volume{Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	ents, err := fsys.ReadDir(context.Background(), "/d")
	if err != nil || len(ents) != 2 || ents[1].Name != "slash/here" || fsread.EscapeName(ents[1].Name) != `slash\x2fhere` {
		t.Fatalf("listing of /d: %+v, %v", ents, err)
	}
	out := filepath.Join(dir, "out")
	sink, err := extract.NewDirSink(out, extract.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := extract.Extract(context.Background(), fsys, []string{"/"}, sink, extract.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Skipped) != 1 || rep.Skipped[0].Path != `/d/slash\x2fhere` || rep.Files != 2 {
		t.Fatalf("report %+v", rep)
	}
	for _, p := range []string{"d/ok.txt", "top.txt"} {
		if b, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(b) != p+"\n" {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "root")); err == nil {
		t.Error(`extracting "/" made a "root" folder`)
	}
}
