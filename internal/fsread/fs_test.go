package fsread_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/fsread/fstest"
)

// openImage opens the single (unpartitioned) volume of an image file and
// checks the detected filesystem name.
func openImage(t *testing.T, img, wantFS string) fsread.FS {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	vols, err := fsread.Volumes(ctx, f, st.Size())
	if err != nil {
		t.Fatalf("Volumes: %v", err)
	}
	if len(vols) != 1 || vols[0].Scheme != "none" || vols[0].FS != wantFS {
		t.Fatalf("Volumes = %+v, want one unpartitioned %s volume", vols, wantFS)
	}
	fsys, err := fsread.OpenFS(ctx, f, vols[0])
	if err != nil {
		t.Fatalf("OpenFS: %v", err)
	}
	if fsys.Type() != wantFS {
		t.Fatalf("Type() = %q, want %q", fsys.Type(), wantFS)
	}
	return fsys
}

func TestExt(t *testing.T) {
	cases := []struct {
		name, fsType string
		extra        []string
	}{
		{"ext4", "ext4", nil},
		{"ext4-inline", "ext4", []string{"-O", "inline_data"}},
		{"ext4-32bit-1k", "ext4", []string{"-O", "^64bit,^metadata_csum", "-b", "1024"}},
		{"ext3", "ext3", nil},
		{"ext2-1k-128", "ext2", []string{"-b", "1024", "-I", "128"}},
		{"ext4-htree", "ext4", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, tree := buildExt(t, fstest.Standard(), c.fsType, c.extra...)
			if c.name == "ext4-htree" {
				htreeIndex(t, img)
			}
			fstest.Run(t, func(t *testing.T) fsread.FS { return openImage(t, img, c.fsType) }, tree)
		})
	}
}

func TestXFS(t *testing.T) {
	cases := []struct {
		name  string
		extra []string
	}{
		{"v5", nil},
		{"v5-1k-dir8k", []string{"-b", "size=1024", "-n", "size=8192"}},
		{"v4", []string{"-m", "crc=0,finobt=0,rmapbt=0,reflink=0,bigtime=0,inobtcount=0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, tree := buildXFS(t, fstest.Standard(), c.extra...)
			fstest.Run(t, func(t *testing.T) fsread.FS { return openImage(t, img, "xfs") }, tree)
		})
	}
}

func TestNTFS(t *testing.T) {
	tree := fstest.Standard()
	tree.IgnoreMode = true
	img := buildNTFS(t, tree)
	fstest.Run(t, func(t *testing.T) fsread.FS { return openImage(t, img, "ntfs") }, tree)
}

func TestOpenFSUnknown(t *testing.T) {
	ctx := context.Background()
	zero := make([]byte, 1<<20)
	r := &memReader{b: zero}
	_, err := fsread.OpenFS(ctx, r, fsread.Volume{Index: 2, Size: int64(len(zero))})
	if !errors.Is(err, fsread.ErrUnknownFilesystem) {
		t.Fatalf("OpenFS(zeros) = %v, want ErrUnknownFilesystem", err)
	}
	_, err = fsread.OpenFS(ctx, r, fsread.Volume{Index: 2, Size: int64(len(zero)), FS: "btrfs"})
	if !errors.Is(err, fsread.ErrUnknownFilesystem) || !strings.Contains(err.Error(), "volume 2 holds btrfs") {
		t.Fatalf("OpenFS(btrfs) = %v", err)
	}
}

type memReader struct{ b []byte }

func (m *memReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// countingReader counts bytes read from the image.
type countingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// TestReadsLittle checks that listing the root and reading a small file
// touches only metadata, not the whole disk.
func TestReadsLittle(t *testing.T) {
	ext, _ := buildExt(t, fstest.Standard(), "ext4")
	xfs, _ := buildXFS(t, fstest.Standard())
	nt := buildNTFS(t, fstest.Standard())
	for name, img := range map[string]string{"ext4": ext, "xfs": xfs, "ntfs": nt} {
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		c := &countingReader{r: f}
		ctx := context.Background()
		vols, err := fsread.Volumes(ctx, c, st.Size())
		if err != nil {
			t.Fatal(err)
		}
		fsys, err := fsread.OpenFS(ctx, c, vols[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fsys.ReadDir(ctx, "/"); err != nil {
			t.Fatal(err)
		}
		file, err := fsys.Open(ctx, "/hello.txt")
		if err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(file); err != nil || string(b) != "hello, world\n" {
			t.Fatalf("%s: hello.txt = %q, %v", name, b, err)
		}
		if n := c.n.Load(); n > 1<<20 {
			t.Errorf("%s: read %d bytes of a %d-byte image for ls + small file", name, n, st.Size())
		} else {
			t.Logf("%s: %d bytes read for Volumes + OpenFS + ls / + read hello.txt", name, n)
		}
	}
}

// htreeIndex rebuilds directories as hash trees with e2fsck -D and checks
// that /many got the index flag.
func htreeIndex(t *testing.T, img string) {
	t.Helper()
	needTools(t, "e2fsck", "debugfs")
	out, err := exec.Command("e2fsck", "-f", "-y", "-D", img).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		t.Fatalf("e2fsck -D: %v\n%s", err, out)
	}
	out, err = exec.Command("debugfs", "-R", "stat "+fstest.ManyDirPath, img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Flags: 0x81000") && !strings.Contains(string(out), "Flags: 0x1000") {
		t.Fatalf("/many is not htree-indexed: %v\n%s", err, out)
	}
}

// TestExtMetaBG reads inodes whose group descriptors live in a later
// meta group (1 KiB blocks, 32 descriptors per block, few inodes per
// group so that later inodes live in groups >= 32).
func TestExtMetaBG(t *testing.T) {
	needTools(t, "mkfs.ext4")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	for d := 0; d < 10; d++ {
		sub := filepath.Join(src, fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 40; i++ {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d", i)), []byte(fmt.Sprintf("%d/%d\n", d, i)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	img := filepath.Join(dir, "metabg.img")
	run(t, "mkfs.ext4", "-q", "-F", "-b", "1024", "-I", "128", "-N", "600", "-O", "meta_bg,^resize_inode,^64bit", "-d", src, img, "600M")
	fsys := openImage(t, img, "ext4")
	ctx := context.Background()
	for _, d := range []int{0, 5, 9} {
		p := fmt.Sprintf("/d%02d/f039", d)
		f, err := fsys.Open(ctx, p)
		if err != nil {
			t.Fatalf("Open(%s): %v", p, err)
		}
		b, _ := io.ReadAll(f)
		if string(b) != fmt.Sprintf("%d/39\n", d) {
			t.Fatalf("%s = %q", p, b)
		}
	}
	// The test only means something if the last file's inode lives in a
	// group whose descriptor is in meta group 1 (group >= 32).
	out, err := exec.Command("debugfs", "-R", "stat /d09/f039", img).Output()
	var ino, perGroup int
	if err == nil {
		_, err = fmt.Sscanf(strings.SplitN(string(out)+"Inode: ", "Inode: ", 2)[1], "%d", &ino)
	}
	stats, err2 := exec.Command("debugfs", "-R", "stats", img).Output()
	if err != nil || err2 != nil {
		t.Fatalf("debugfs: %v %v", err, err2)
	}
	fmt.Sscanf(strings.SplitN(string(stats)+"Inodes per group:", "Inodes per group:", 2)[1], "%d", &perGroup)
	if perGroup == 0 || (ino-1)/perGroup < 32 {
		t.Fatalf("inode %d with %d inodes per group is not beyond meta group 0", ino, perGroup)
	}
	t.Logf("last file is inode %d (group %d)", ino, (ino-1)/perGroup)
}
