package extract_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
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

// TestHardlinksAndOwnerMap: hard links stay links (one copy of the data)
// unless NoHardlinks; UIDMap and GIDMap change numeric owners (as root).
func TestHardlinksAndOwnerMap(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		if os.Getenv("KURA_TEST_STRICT") == "1" {
			t.Fatal("mkfs.ext4 not installed (KURA_TEST_STRICT=1)")
		}
		t.Skip("mkfs.ext4 not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "a"), 0o755)
	os.MkdirAll(filepath.Join(src, "b"), 0o755)
	if err := os.WriteFile(filepath.Join(src, "a", "one"), []byte("shared\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "a", "one"), filepath.Join(src, "b", "two")); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		os.Lchown(filepath.Join(src, "a", "one"), 1234, 5678)
	}
	img := filepath.Join(dir, "img")
	if out, err := exec.Command(mkfs, "-q", "-F", "-d", src, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v %s", err, out)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	fsys, err := fsread.OpenFS(context.Background(), f, fsread.Volume{Size: st.Size()})
	if err != nil {
		t.Fatal(err)
	}
	for _, noLinks := range []bool{false, true} {
		opt := extract.Options{NoHardlinks: noLinks, UIDMap: map[uint32]uint32{1234: 4321}, GIDMap: map[uint32]uint32{5678: 8765}}
		out := filepath.Join(dir, "out", strconv.FormatBool(noLinks))
		sink, err := extract.NewDirSink(out, opt)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := extract.Extract(context.Background(), fsys, []string{"/a", "/b"}, sink, opt)
		if err != nil {
			t.Fatal(err)
		}
		one, err1 := os.Stat(filepath.Join(out, "a", "one"))
		two, err2 := os.Stat(filepath.Join(out, "b", "two"))
		if err1 != nil || err2 != nil {
			t.Fatalf("extracted: %v %v", err1, err2)
		}
		same := os.SameFile(one, two)
		if same == noLinks || (noLinks && rep.Hardlinks != 0) || (!noLinks && (rep.Hardlinks != 1 || rep.Files != 1)) {
			t.Errorf("NoHardlinks=%v: same inode %v, report %+v", noLinks, same, rep)
		}
		if os.Geteuid() == 0 {
			sys := one.Sys().(*syscall.Stat_t)
			if sys.Uid != 4321 || sys.Gid != 8765 {
				t.Errorf("owner %d:%d, want the mapped 4321:8765", sys.Uid, sys.Gid)
			}
		}
	}
}
