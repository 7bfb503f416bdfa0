package extract_test

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/extract"
	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/fsread/fidelity"
)

// openKind opens the image of a kit kind with fsread.
func openKind(t *testing.T, kit *fidelity.Kit, k fidelity.Kind) fsread.FS {
	t.Helper()
	f, err := os.Open(kit.Images[k.Name])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	ctx := context.Background()
	vols, err := fsread.Volumes(ctx, f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := fsread.OpenFS(ctx, f, vols[0])
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// extractRules are the kind's extraction rules, leaving out what the
// destination cannot hold (checked through the report instead).
func extractRules(k fidelity.Kind) fidelity.Rules {
	r := fidelity.ExtractRules(k)
	if k.FS == "ntfs" {
		base := r.IgnoreXattr
		r.IgnoreXattr = func(n string) bool { return n == fidelity.LargeStream || (base != nil && base(n)) }
	}
	return r
}

// checkNotes checks the report: nothing skipped, and nothing kept
// incompletely but the NTFS stream too large for an xattr.
func checkNotes(t *testing.T, k fidelity.Kind, rep *extract.Report, skippedOK func(extract.Note) bool) {
	t.Helper()
	for _, n := range rep.Skipped {
		if skippedOK == nil || !skippedOK(n) {
			t.Errorf("skipped %s: %s", n.Path, n.Reason)
		}
	}
	large := false
	for _, n := range rep.NotKept {
		if k.FS == "ntfs" && n.Path == fidelity.StreamFilePath && strings.Contains(n.Reason, fidelity.LargeStream) {
			large = true
			continue
		}
		t.Errorf("not kept %s: %s", n.Path, n.Reason)
	}
	if k.FS == "ntfs" && !large {
		t.Errorf("the %s stream of %s is not reported as not kept: %+v", fidelity.LargeStream, fidelity.StreamFilePath, rep.NotKept)
	}
}

// TestExtractDirFidelity extracts a whole ext4 and a whole NTFS
// filesystem ("/", into the directory itself) and compares the trees with
// the kernel's view of the images: names, types, sizes, modes, owners,
// times, symlink targets, devices, contents, xattrs, hard links,
// sparseness. (Every kind, on every disk layout, is extracted the same
// way through the repository by the e2e TestFilesFidelity.)
func TestExtractDirFidelity(t *testing.T) {
	kit := fidelity.Require(t)
	ctx := context.Background()
	for _, name := range []string{"ext4", "ntfs"} {
		k, _ := fidelity.KindByName(name)
		t.Run(k.Name, func(t *testing.T) {
			ref := kit.Reference(t, k)
			fsys := openKind(t, kit, k)
			out := filepath.Join(t.TempDir(), "out")
			sink, err := extract.NewDirSink(out, extract.Options{})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := extract.Extract(ctx, fsys, []string{"/"}, sink, extract.Options{})
			if err != nil {
				t.Fatal(err)
			}
			checkNotes(t, k, rep, nil)
			got, err := fidelity.SnapshotDir(ctx, out)
			if err != nil {
				t.Fatal(err)
			}
			fidelity.Report(t, k.Name, ref, fidelity.Compare(ref, got, extractRules(k)))
			if _, err := os.Stat(filepath.Join(out, "root")); err == nil {
				t.Errorf(`extracting "/" made a "root" folder`)
			}
			t.Logf("%d files, %d dirs, %d symlinks, %d hard links, %d special, %d data bytes in %.1fs",
				rep.Files, rep.Dirs, rep.Symlinks, rep.Hardlinks, rep.Specials, rep.DataBytes, rep.Seconds)
		})
	}
}

// TestExtractTarFidelity writes tar archives and unpacks them with GNU
// tar: the unpacked tree must equal the kernel's view, sockets aside
// (tar has none; the report names them).
func TestExtractTarFidelity(t *testing.T) {
	kit := fidelity.Require(t)
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		t.Fatal("tar not installed")
	}
	ctx := context.Background()
	for _, name := range []string{"xfs"} {
		k, _ := fidelity.KindByName(name)
		t.Run(name, func(t *testing.T) {
			ref := kit.Reference(t, k)
			dir := t.TempDir()
			arch := filepath.Join(dir, "out.tar")
			f, err := os.Create(arch)
			if err != nil {
				t.Fatal(err)
			}
			sink, err := extract.NewArchiveSink("tar", f, extract.Options{})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := extract.Extract(ctx, openKind(t, kit, k), []string{"/"}, sink, extract.Options{})
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			sockets := map[string]bool{}
			for p, n := range ref {
				if n.Type == fsread.TypeSocket {
					sockets[fsread.Escape(p)] = true
				}
			}
			checkNotes(t, k, rep, func(n extract.Note) bool { return sockets[n.Path] && strings.Contains(n.Reason, "socket") })
			if len(rep.Skipped) != len(sockets) {
				t.Errorf("skipped %v, want the %d sockets", rep.Skipped, len(sockets))
			}
			out := filepath.Join(dir, "unpacked")
			if err := os.Mkdir(out, 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(tarBin, "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner", "-xpf", arch, "-C", out)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("GNU tar: %v\n%s", err, b)
			}
			got, err := fidelity.SnapshotDir(ctx, out)
			if err != nil {
				t.Fatal(err)
			}
			// GNU tar restores no access times (the archive holds them:
			// checkTarTimes) and the unpacking directory is no entry.
			r := extractRules(k)
			r.NoATime = true
			r.Skip = func(p string) bool { return p == "/" || sockets[fsread.Escape(p)] }
			checkTarTimes(t, arch, ref)
			fidelity.Report(t, "tar of "+name, ref, fidelity.Compare(ref, got, r))
		})
	}
}

// checkTarTimes reads the archive with Go's archive/tar and checks every
// entry's modification and access times, to the nanosecond.
func checkTarTimes(t *testing.T, arch string, ref fidelity.Snapshot) {
	t.Helper()
	f, err := os.Open(arch)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		w := ref["/"+strings.TrimSuffix(h.Name, "/")]
		if w == nil {
			t.Errorf("archive entry %q not in the image", h.Name)
			continue
		}
		n++
		if !h.ModTime.Equal(w.MTime) || !h.AccessTime.Equal(w.ATime) {
			t.Errorf("%s: archived times %v/%v, want %v/%v", h.Name, h.ModTime, h.AccessTime, w.MTime, w.ATime)
		}
	}
	if n < len(ref)/2 {
		t.Errorf("only %d archive entries for %d image entries", n, len(ref))
	}
}

// TestExtractZip writes a zip and unpacks it with Info-ZIP unzip: names,
// types, contents, modes, owners, symlinks and modification times (to
// the second) equal the kernel's view; special files are skipped and
// listed, hard links are copies, xattrs are listed as not kept.
func TestExtractZip(t *testing.T) {
	kit := fidelity.Require(t)
	unzip, err := exec.LookPath("unzip")
	if err != nil {
		if os.Getenv("KURA_TEST_STRICT") == "1" {
			t.Fatal("unzip not installed (KURA_TEST_STRICT=1)")
		}
		t.Skip("unzip not installed")
	}
	ctx := context.Background()
	k, _ := fidelity.KindByName("ext4")
	ref := kit.Reference(t, k)
	dir := t.TempDir()
	arch := filepath.Join(dir, "out.zip")
	f, err := os.Create(arch)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := extract.NewArchiveSink("zip", f, extract.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Not the 1 GiB sparse file: zip would store it dense and unzip write
	// it dense.
	paths := []string{"/share", fidelity.ExtrasDir + "/links", fidelity.ExtrasDir + "/rel-link",
		fidelity.ExtrasDir + "/fifo", fidelity.ExtrasDir + "/with-xattrs.txt", fidelity.ExtrasDir + "/setuid"}
	rep, err := extract.Extract(ctx, openKind(t, kit, k), paths, sink, extract.Options{})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	ref, source := rebase(ref, paths)
	special := map[string]bool{} // by the source path (the report) and the extracted one
	xattrs := 0
	for p, n := range ref {
		switch n.Type {
		case fsread.TypeFIFO, fsread.TypeSocket, fsread.TypeCharDev, fsread.TypeBlockDev:
			special[fsread.Escape(p)] = true
			special[fsread.Escape(source[p])] = true
		}
		if len(n.Xattrs) > 0 {
			xattrs++
		}
	}
	for _, n := range rep.Skipped {
		if !special[n.Path] {
			t.Errorf("skipped %s: %s", n.Path, n.Reason)
		}
	}
	if len(rep.Skipped) != len(special)/2 {
		t.Errorf("skipped %d entries, want the %d special files", len(rep.Skipped), len(special)/2)
	}
	if len(rep.NotKept) < xattrs {
		t.Errorf("%d entries noted as not kept, want at least the %d with xattrs", len(rep.NotKept), xattrs)
	}
	out := filepath.Join(dir, "unpacked")
	if b, err := exec.Command(unzip, "-q", "-X", arch, "-d", out).CombinedOutput(); err != nil {
		t.Fatalf("unzip: %v\n%s", err, b)
	}
	got, err := fidelity.SnapshotDir(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	r := fidelity.Rules{Perms: true, Owners: true, NoATime: true, NoLinks: true, Sparse: true,
		IgnoreXattr: func(string) bool { return true },
		TimeEq:      func(w, g time.Time) bool { return w.Unix() == g.Unix() },
		Skip: func(p string) bool {
			// The unpacking directory is no entry; unzip sets no
			// directory times nor symlink owners and times.
			return p == "/" || special[fsread.Escape(p)]
		}}
	mism := fidelity.Compare(ref, got, r)
	var real []string
	for _, m := range mism {
		if strings.Contains(m, ": mtime:") && (got[strings.SplitN(m, ":", 2)[0]] == nil ||
			got[strings.SplitN(m, ":", 2)[0]].Type != fsread.TypeFile) {
			continue
		}
		if strings.Contains(m, ": owner:") && got[strings.SplitN(m, ":", 2)[0]] != nil &&
			got[strings.SplitN(m, ":", 2)[0]].Type == fsread.TypeSymlink {
			continue
		}
		real = append(real, m)
	}
	fidelity.Report(t, "zip of ext4", ref, real)
}

// rebase returns the entries of ref below paths as an extraction of
// those paths names them (each path by its base name), and each new
// path's path in ref.
func rebase(ref fidelity.Snapshot, paths []string) (fidelity.Snapshot, map[string]string) {
	out := fidelity.Snapshot{"/": ref["/"]}
	source := map[string]string{}
	for _, p := range paths {
		base := "/" + filepath.Base(p)
		for q, n := range ref {
			if q == p || strings.HasPrefix(q, p+"/") {
				m := *n
				m.Path = base + strings.TrimPrefix(q, p)
				out[m.Path] = &m
				source[m.Path] = q
			}
		}
	}
	return out, source
}
