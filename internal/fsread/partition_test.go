package fsread_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/fsread/fstest"
)

// copyInto writes the non-zero 64 KiB chunks of src into disk at off.
func copyInto(t *testing.T, disk string, off int64, src string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	buf := make([]byte, 64<<10)
	zero := make([]byte, len(buf))
	for pos := int64(0); ; pos += int64(len(buf)) {
		n, err := in.ReadAt(buf, pos)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := out.WriteAt(buf[:n], off+pos); werr != nil {
				t.Fatal(werr)
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

type partedPart struct{ index, start, size int64 }

// partedParts lists partitions as parted reports them (bytes).
func partedParts(t *testing.T, disk string) map[int64]partedPart {
	t.Helper()
	out, err := exec.Command("parted", "-s", "-m", disk, "unit", "B", "print").Output()
	if err != nil {
		t.Fatalf("parted print: %v", err)
	}
	parts := map[int64]partedPart{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 4 {
			continue
		}
		idx, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		start, _ := strconv.ParseInt(strings.TrimSuffix(f[1], "B"), 10, 64)
		size, _ := strconv.ParseInt(strings.TrimSuffix(f[3], "B"), 10, 64)
		parts[idx] = partedPart{idx, start, size}
	}
	return parts
}

func mkswap(t *testing.T) string {
	needTools(t, "mkswap")
	p := filepath.Join(t.TempDir(), "swap.img")
	sparseFile(t, p, 8<<20)
	run(t, "mkswap", "-q", p)
	return p
}

// checkDisk opens each volume and compares against parted and wantFS.
func checkDisk(t *testing.T, disk, scheme string, wantFS map[int]string) {
	t.Helper()
	ctx := context.Background()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	vols, err := fsread.Volumes(ctx, f, st.Size())
	if err != nil {
		t.Fatalf("Volumes: %v", err)
	}
	parts := partedParts(t, disk)
	got := map[int]bool{}
	tree := fstest.Standard()
	for _, v := range vols {
		got[v.Index] = true
		p, ok := parts[int64(v.Index)]
		if !ok || p.start != v.Offset || p.size != v.Size || v.Scheme != scheme {
			t.Errorf("volume %+v does not match parted %+v", v, p)
		}
		if v.FS != wantFS[v.Index] {
			t.Errorf("volume %d fs %q, want %q", v.Index, v.FS, wantFS[v.Index])
		}
		fsys, err := fsread.OpenFS(ctx, f, v)
		switch v.FS {
		case "ext4", "xfs", "ntfs":
			if err != nil {
				t.Errorf("OpenFS(%d): %v", v.Index, err)
				continue
			}
			checkHello(t, fsys, tree)
		default:
			if !errors.Is(err, fsread.ErrUnknownFilesystem) {
				t.Errorf("OpenFS(%d, %q) = %v, want ErrUnknownFilesystem", v.Index, v.FS, err)
			}
		}
	}
	for i := range wantFS {
		if !got[i] {
			t.Errorf("volume %d missing from %+v", i, vols)
		}
	}
	if len(vols) != len(wantFS) {
		t.Errorf("%d volumes, want %d: %+v", len(vols), len(wantFS), vols)
	}
}

func checkHello(t *testing.T, fsys fsread.FS, tree fstest.Tree) {
	t.Helper()
	ctx := context.Background()
	file, err := fsys.Open(ctx, fstest.NonASCIIPath)
	if err != nil {
		t.Errorf("%s: Open: %v", fsys.Type(), err)
		return
	}
	defer file.Close()
	b, err := io.ReadAll(file)
	if err != nil || string(b) != "non-ascii name\n" {
		t.Errorf("%s: read %q, %v", fsys.Type(), b, err)
	}
}

func TestGPTDisk(t *testing.T) {
	needTools(t, "parted")
	ext, _ := buildExt(t, fstest.Standard(), "ext4")
	xfs, _ := buildXFS(t, fstest.Standard())
	swap := mkswap(t)
	disk := filepath.Join(t.TempDir(), "gpt.img")
	sparseFile(t, disk, 420<<20)
	run(t, "parted", "-s", disk, "mklabel", "gpt",
		"mkpart", "root", "ext4", "1MiB", "65MiB",
		"mkpart", "data", "xfs", "65MiB", "400MiB",
		"mkpart", "swap", "linux-swap", "400MiB", "408MiB",
		"mkpart", "empty", "408MiB", "416MiB")
	parts := partedParts(t, disk)
	copyInto(t, disk, parts[1].start, ext)
	copyInto(t, disk, parts[2].start, xfs)
	copyInto(t, disk, parts[3].start, swap)
	checkDisk(t, disk, "gpt", map[int]string{1: "ext4", 2: "xfs", 3: "swap", 4: ""})

	// Labels come from the GPT entries.
	f, _ := os.Open(disk)
	defer f.Close()
	vols, err := fsread.Volumes(context.Background(), f, 420<<20)
	if err != nil || vols[0].Label != "root" || vols[0].Type != "0FC63DAF-8483-4772-8E79-3D69D8477DE4" {
		t.Errorf("gpt volume 1 = %+v, %v", vols[0], err)
	}
}

func TestMBRDisk(t *testing.T) {
	needTools(t, "parted")
	ext, _ := buildExt(t, fstest.Standard(), "ext4")
	nt := buildNTFS(t, fstest.Standard())
	swap := mkswap(t)
	disk := filepath.Join(t.TempDir(), "mbr.img")
	sparseFile(t, disk, 200<<20)
	run(t, "parted", "-s", disk, "mklabel", "msdos",
		"mkpart", "primary", "ext4", "1MiB", "65MiB",
		"mkpart", "extended", "65MiB", "199MiB",
		"mkpart", "logical", "ntfs", "66MiB", "131MiB",
		"mkpart", "logical", "linux-swap", "132MiB", "141MiB")
	parts := partedParts(t, disk)
	copyInto(t, disk, parts[1].start, ext)
	copyInto(t, disk, parts[5].start, nt)
	copyInto(t, disk, parts[6].start, swap)
	// The extended container (2) is not a volume.
	checkDisk(t, disk, "mbr", map[int]string{1: "ext4", 5: "ntfs", 6: "swap"})
}
