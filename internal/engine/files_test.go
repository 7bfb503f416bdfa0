package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/extract"
	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/fake"
	"github.com/kurabackup/kura/internal/testenv"
)

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

// xfsImage builds an XFS image holding big.bin, sub/note.txt and a symlink.
func xfsImage(t *testing.T, big []byte) string {
	testenv.NeedTool(t, "mkfs.xfs")
	dir := t.TempDir()
	src := filepath.Join(dir, "big.src")
	note := filepath.Join(dir, "note.src")
	os.WriteFile(src, big, 0o600)
	os.WriteFile(note, []byte("xfs note\n"), 0o600)
	proto := fmt.Sprintf("/dev/null\n0 0\nd--755 0 0\nbig.bin ---640 0 0 %s\nlink l--777 0 0 big.bin\nsub d--755 0 0\nnote.txt ---644 0 0 %s\n$\n$\n", src, note)
	pf := filepath.Join(dir, "proto")
	os.WriteFile(pf, []byte(proto), 0o600)
	img := filepath.Join(dir, "xfs.img")
	runTool(t, "truncate", "-s", "320M", img)
	runTool(t, "mkfs.xfs", "-q", "-f", "-p", pf, img)
	return img
}

// ntfsImage builds an NTFS image through an ntfs-3g mount (test time only).
func ntfsImage(t *testing.T, big []byte) string {
	for _, tool := range []string{"mkntfs", "ntfs-3g", "fusermount"} {
		testenv.NeedTool(t, tool)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Need(t, "/dev/fuse", false)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "ntfs.img")
	runTool(t, "truncate", "-s", "64M", img)
	runTool(t, "mkntfs", "-q", "-F", "-f", img)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	runTool(t, "ntfs-3g", img, mnt)
	err := os.WriteFile(filepath.Join(mnt, "big.bin"), big, 0o644)
	if err == nil {
		err = os.MkdirAll(filepath.Join(mnt, "sub"), 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(mnt, "sub", "note.txt"), []byte("ntfs note\n"), 0o644)
	}
	if err == nil {
		err = os.Symlink("big.bin", filepath.Join(mnt, "link"))
	}
	runTool(t, "fusermount", "-u", mnt)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestFilesFromXFSAndNTFSPoints backs up fake VMs whose disks hold XFS and
// NTFS filesystems, then lists and extracts from the points.
func TestFilesFromXFSAndNTFSPoints(t *testing.T) {
	big := randBytes(42, 5<<20+777) // larger than one 1 MiB test chunk
	for _, tc := range []struct {
		fs    string
		build func(*testing.T, []byte) string
		note  string
	}{{"xfs", xfsImage, "xfs note\n"}, {"ntfs", ntfsImage, "ntfs note\n"}} {
		t.Run(tc.fs, func(t *testing.T) {
			ctx := context.Background()
			img := tc.build(t, big)
			data, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			w := newWorld(t)
			vm := w.conn.AddVM(fake.VMSpec{Name: "fs", UUID: uuidA, Disks: []fake.DiskSpec{{Target: "vda", Size: int64(len(data))}}})
			for off := 0; off < len(data); off += fake.BlockSize {
				if blk := data[off : off+fake.BlockSize]; !bytes.Equal(blk, make([]byte, fake.BlockSize)) {
					if err := w.conn.Write("fs", "vda", int64(off), blk); err != nil {
						t.Fatal(err)
					}
				}
			}
			m := w.backup([]hypervisor.VM{vm}, engine.BackupOptions{}).VMs[0].Point
			b, err := engine.OpenFiles(ctx, w.repo, m, "vda", 0)
			if err != nil {
				t.Fatalf("OpenFiles: %v", err)
			}
			defer b.Close()
			if b.FS.Type() != tc.fs {
				t.Fatalf("filesystem %s, want %s", b.FS.Type(), tc.fs)
			}
			ents, err := b.FS.ReadDir(ctx, "/")
			if err != nil {
				t.Fatal(err)
			}
			names := map[string]fsread.Entry{}
			for _, e := range ents {
				names[e.Name] = e
			}
			if names["big.bin"].Size != int64(len(big)) || names["link"].Type != "symlink" || names["sub"].Type != "dir" {
				t.Fatalf("root listing %+v", ents)
			}
			out := t.TempDir()
			rep, err := b.ExtractTo(ctx, []string{"/big.bin", "/sub", "/link"}, out, extract.Options{})
			if err != nil || rep.Files != 2 || rep.Symlinks != 1 || len(rep.Skipped) != 0 {
				t.Fatalf("extract: %+v, %v", rep, err)
			}
			if got, _ := os.ReadFile(filepath.Join(out, "big.bin")); !bytes.Equal(got, big) {
				t.Fatal("extracted big.bin differs")
			}
			if got, _ := os.ReadFile(filepath.Join(out, "sub", "note.txt")); string(got) != tc.note {
				t.Fatalf("extracted note %q", got)
			}
			if l, err := os.Readlink(filepath.Join(out, "link")); err != nil || l != "big.bin" {
				t.Fatalf("extracted link %q %v", l, err)
			}
			var found []string
			if err := b.Find(ctx, "*.txt", func(e fsread.Entry) error { found = append(found, e.Path); return nil }); err != nil ||
				len(found) != 1 || found[0] != "/sub/note.txt" {
				t.Fatalf("find *.txt = %v, %v", found, err)
			}
		})
	}
}
