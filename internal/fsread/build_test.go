package fsread_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/fsread/fstest"
)

// needTools skips (or, with KURA_TEST_STRICT=1, fails) when a tool is absent.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("KURA_TEST_STRICT") == "1" {
				t.Fatalf("%s not installed (KURA_TEST_STRICT=1)", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func sparseFile(t testing.TB, p string, size int64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// buildExt makes an ext2/3/4 image populated with tree via mkfs -d. The
// returned tree adds lost+found and expects the root's mtime within the
// build window (mkfs stamps it).
func buildExt(t testing.TB, tree fstest.Tree, fsType string, extra ...string) (string, fstest.Tree) {
	t.Helper()
	return buildExtSized(t, tree, fsType, "64M", extra...)
}

func buildExtSized(t testing.TB, tree fstest.Tree, fsType, size string, extra ...string) (string, fstest.Tree) {
	t.Helper()
	needTools(t, "mkfs.ext4")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := fstest.Populate(src, tree); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, fsType+".img")
	args := append([]string{"-q", "-F", "-t", fsType, "-d", src}, extra...)
	args = append(args, img, size)
	from := time.Now()
	run(t, "mkfs.ext4", args...)
	tree.MTimeWindow = [2]time.Time{from, time.Now()}
	tree.Nodes = append([]fstest.Node{{Path: "/", Type: "dir", Mode: tree.Nodes[0].Mode},
		{Path: "/lost+found", Type: "dir", Mode: 0o700}}, tree.Nodes[1:]...)
	return img, tree
}

// xfsSpacePlaceholder stands in for "dir with space": the protofile grammar
// splits on whitespace, so the name is patched into the image afterwards.
const xfsSpacePlaceholder = "dir_with_space"

// buildXFS makes an XFS image from a mkfs.xfs protofile. It returns the
// image and the tree with the expected mtimes replaced by the build window
// (protofiles do not carry timestamps).
func buildXFS(t testing.TB, tree fstest.Tree, extra ...string) (string, fstest.Tree) {
	t.Helper()
	needTools(t, "mkfs.xfs")
	dir := t.TempDir()
	var proto bytes.Buffer
	nfile := 0
	proto.WriteString("/dev/null\n0 0\n")
	children := map[string][]fstest.Node{}
	root := fstest.Node{Mode: 0o755}
	for _, n := range tree.Nodes {
		if n.Path == "/" {
			root = n
			continue
		}
		children[path.Dir(n.Path)] = append(children[path.Dir(n.Path)], n)
	}
	enc := func(s string) string { return strings.ReplaceAll(s, " ", "_") }
	var walk func(p string, n fstest.Node)
	walk = func(p string, n fstest.Node) {
		for _, c := range children[p] {
			name := enc(path.Base(c.Path))
			perm := fmt.Sprintf("%03o", c.Mode.Perm())
			switch c.Type {
			case "file":
				// Source files get space-free names; the protofile names them.
				nfile++
				src := filepath.Join(dir, fmt.Sprintf("src-%d", nfile))
				if err := os.WriteFile(src, c.Content, 0o600); err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&proto, "%s ---%s 0 0 %s\n", name, perm, src)
			case "symlink":
				fmt.Fprintf(&proto, "%s l--%s 0 0 %s\n", name, perm, enc(c.Target))
			case "dir":
				fmt.Fprintf(&proto, "%s d--%s 0 0\n", name, perm)
				walk(c.Path, c)
			}
		}
		proto.WriteString("$\n")
	}
	fmt.Fprintf(&proto, "d--%03o 0 0\n", root.Mode.Perm())
	walk("/", root)
	pf := filepath.Join(dir, "proto")
	if err := os.WriteFile(pf, proto.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "xfs.img")
	sparseFile(t, img, max(320<<20, (4*treeBytes(tree)+1<<20)&^(1<<20-1)))
	from := time.Now()
	run(t, "mkfs.xfs", append(append([]string{"-q", "-f", "-p", pf}, extra...), img)...)
	to := time.Now()
	patchImage(t, img, xfsSpacePlaceholder, "dir with space")
	return img, tree.WithoutTimes(from, to)
}

// patchImage replaces every occurrence of old with new (same length).
func patchImage(t testing.TB, img, old, new string) {
	t.Helper()
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(data, []byte(old)) == 0 {
		t.Fatalf("placeholder %q not found in %s", old, img)
	}
	data = bytes.ReplaceAll(data, []byte(old), []byte(new))
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// buildNTFS makes an NTFS image with mkntfs and populates it through an
// ntfs-3g FUSE mount (test-time only; the reader never mounts).
func buildNTFS(t testing.TB, tree fstest.Tree) string {
	t.Helper()
	return buildNTFSSized(t, tree, 64<<20)
}

func buildNTFSSized(t testing.TB, tree fstest.Tree, size int64) string {
	t.Helper()
	needTools(t, "mkntfs", "ntfs-3g", "fusermount")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("KURA_TEST_STRICT") == "1" {
			t.Fatalf("/dev/fuse missing (KURA_TEST_STRICT=1)")
		}
		t.Skip("/dev/fuse missing")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "ntfs.img")
	sparseFile(t, img, size)
	run(t, "mkntfs", "-q", "-F", "-f", img)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, "ntfs-3g", img, mnt)
	err := fstest.Populate(mnt, tree)
	run(t, "fusermount", "-u", mnt)
	if err != nil {
		t.Fatalf("populate ntfs: %v", err)
	}
	return img
}

func treeBytes(tree fstest.Tree) int64 {
	var n int64
	for _, node := range tree.Nodes {
		n += int64(len(node.Content))
	}
	return n
}
