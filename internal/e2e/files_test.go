package e2e

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/extract"
	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/fsread/fidelity"
	"github.com/kurabackup/kura/internal/testenv"
)

// kitTargets maps the fidelity kit's disks to the test VM's disk targets.
var kitTargets = map[string]string{"mbr": "vda", "gpt": "vdb", "whole": "vdc", "lvm": "vdd"}

// TestFilesFidelity backs up a shut-off VM whose four disks (MBR, GPT,
// whole, LVM) hold the fidelity kit's ext2, ext3, ext4, ext4 inline,
// XFS and NTFS filesystems of 10,000+ real files, then compares, through
// the repository, every entry kura lists and every entry kura files get
// extracts with what a loop mount of the same image shows.
func TestFilesFidelity(t *testing.T) {
	env := testenv.RequireLibvirt(t)
	testenv.NeedTool(t, "qemu-nbd")
	kit := fidelity.Require(t)
	ctx := context.Background()
	disks, err := kit.Disks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var specs []testenv.DiskSpec
	for _, name := range []string{"mbr", "gpt", "whole", "lvm"} {
		specs = append(specs, testenv.DiskSpec{Target: kitTargets[name], Format: "raw", Path: disks[name]})
	}
	g := env.NewGuest(t, testenv.GuestOptions{Disks: specs})
	c := newCLIRepo(t)
	c.backup(t, 0, g.Name(), "--retries", "0")
	ps := c.points(t)
	if len(ps) != 1 {
		t.Fatalf("%d points", len(ps))
	}
	point := ps[0].ID
	m := &ps[0]
	r := c.open(t, ctx)

	refs := map[string]fidelity.Snapshot{}
	for _, pl := range fidelity.Placements {
		k, _ := fidelity.KindByName(pl.Kind)
		name := pl.Disk + "-" + strings.ReplaceAll(pl.Volume, "/", "-") + "-" + pl.Kind
		t.Run(name, func(t *testing.T) {
			ref := refs[pl.Kind]
			if ref == nil {
				ref = kit.Reference(t, k)
				refs[pl.Kind] = ref
			}
			target := kitTargets[pl.Disk]
			b, err := engine.OpenFilesVolume(ctx, r, m, target, pl.Volume)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.Volume.Scheme != pl.Scheme || b.FS.Type() != k.FS {
				t.Errorf("volume %s: scheme %s fs %s, want %s %s", pl.Volume, b.Volume.Scheme, b.FS.Type(), pl.Scheme, k.FS)
			}
			got, err := fidelity.SnapshotFS(ctx, b.FS)
			if err != nil {
				t.Fatal(err)
			}
			fidelity.Report(t, "listing", ref, fidelity.Compare(ref, got, fidelity.ListingRules(k)))

			out := filepath.Join(t.TempDir(), "out")
			var rep extract.Report
			if err := lastJSON(c.ok(t, "files", "get", point, "/", "--disk", target, "--volume", pl.Volume,
				"--out", out, "--json"), &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Skipped) > 0 {
				t.Errorf("skipped: %+v", rep.Skipped)
			}
			rules := fidelity.ExtractRules(k)
			if k.FS == "ntfs" {
				rules.IgnoreXattr = func(n string) bool { return n == fidelity.LargeStream }
				if len(rep.NotKept) != 1 || rep.NotKept[0].Path != fidelity.StreamFilePath {
					t.Errorf("not kept: %+v, want only %s's large stream", rep.NotKept, fidelity.StreamFilePath)
				}
			} else if len(rep.NotKept) > 0 {
				t.Errorf("not kept: %+v", rep.NotKept)
			}
			extracted, err := fidelity.SnapshotDir(ctx, out)
			if err != nil {
				t.Fatal(err)
			}
			fidelity.Report(t, "files get", ref, fidelity.Compare(ref, extracted, rules))
		})
	}

	t.Run("names", func(t *testing.T) { checkNames(t, c, point, refs["ext4"]) })
	t.Run("stream", func(t *testing.T) { checkStream(t, c, point, refs["ntfs"]) })
	t.Run("archives", func(t *testing.T) { checkArchives(t, c, point, refs["xfs"]) })
	t.Run("volumes", func(t *testing.T) {
		var vols []fsread.Volume
		if err := json.Unmarshal([]byte(c.ok(t, "files", "volumes", point, "--disk", "vdd", "--json")), &vols); err != nil {
			t.Fatal(err)
		}
		if len(vols) != 3 || vols[0].FS != "lvm2" || vols[1].LV != fidelity.LVMGroup+"/root" || vols[1].FS != "ext4" ||
			vols[2].LV != fidelity.LVMGroup+"/spacer" {
			t.Errorf("volumes of the LVM disk: %+v", vols)
		}
	})
}

// checkNames: ls shows names escaped (reversibly), JSON unescapes to the
// exact bytes, and an escaped path given back extracts the file.
func checkNames(t *testing.T, c *cliRepo, point string, ref fidelity.Snapshot) {
	dir := fidelity.ExtrasDir
	text := c.ok(t, "files", "ls", point, dir, "--disk", "vdb", "--volume", "1")
	for _, want := range []string{`\xff\xfe-latin1-\xe9.txt`, `tab\x09here`, `new\x0aline`, `back\\slash`, "日本語 ディレクトリ"} {
		if !strings.Contains(text, want) {
			t.Errorf("ls %s lacks %q:\n%s", dir, want, text)
		}
	}
	var ents []fsread.Entry
	if err := json.Unmarshal([]byte(c.ok(t, "files", "ls", point, dir, "--disk", "vdb", "--volume", "1", "--json")), &ents); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range ents {
		seen[e.Path] = true
		if ref[e.Path] == nil {
			t.Errorf("JSON name %q is not in the image", e.Path)
		}
	}
	if !seen[fidelity.NonUTF8Path] {
		t.Errorf("JSON listing lacks %q", fidelity.NonUTF8Path)
	}
	out := t.TempDir()
	c.ok(t, "files", "get", point, fsread.Escape(fidelity.NonUTF8Path), "--disk", "vdb", "--volume", "1", "--out", out)
	if b, err := os.ReadFile(filepath.Join(out, filepath.Base(fidelity.NonUTF8Path))); err != nil || string(b) != "not utf-8\n" {
		t.Errorf("extracting the escaped path: %q, %v", b, err)
	}
}

// checkStream reads an NTFS stream too large for an xattr as FILE:STREAM.
func checkStream(t *testing.T, c *cliRepo, point string, ref fidelity.Snapshot) {
	stream := strings.TrimPrefix(fidelity.LargeStream, "user.")
	want := ref[fidelity.StreamFilePath].Xattrs[fidelity.LargeStream]
	if len(want) < 32<<10 {
		t.Fatalf("the image's %s stream is %d bytes", stream, len(want))
	}
	text := c.ok(t, "files", "ls", point, filepath.Dir(fidelity.StreamFilePath), "--disk", "vda", "--volume", "5")
	if !strings.Contains(text, filepath.Base(fidelity.StreamFilePath)+":"+stream) {
		t.Errorf("ls lacks the stream:\n%s", text)
	}
	out := t.TempDir()
	c.ok(t, "files", "get", point, fidelity.StreamFilePath+":"+stream, "--disk", "vda", "--volume", "5", "--out", out)
	if b, err := os.ReadFile(filepath.Join(out, filepath.Base(fidelity.StreamFilePath)+":"+stream)); err != nil || string(b) != want {
		t.Errorf("extracted stream: %d bytes, %v; want %d bytes", len(b), err, len(want))
	}
}

// checkArchives: --archive tar - streams a tar to standard output (its
// report on standard error), --archive zip --out FILE writes a zip; both
// hold every file of the image with its content.
func checkArchives(t *testing.T, c *cliRepo, point string, ref fidelity.Snapshot) {
	sub := subtree(ref, "/share", 300)
	stdout, stderr, code := c.run("files", "get", point, sub, "--disk", "vdb", "--volume", "2", "--archive", "tar", "-")
	if code != 0 {
		t.Fatalf("files get --archive tar -: exit %d: %s", code, stderr)
	}
	files := 0
	tr := tar.NewReader(strings.NewReader(stdout))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tar from standard output: %v", err)
		}
		w := ref[filepath.Dir(sub)+"/"+strings.TrimSuffix(h.Name, "/")]
		if w == nil {
			t.Errorf("tar entry %q not in the image", h.Name)
			continue
		}
		if h.Typeflag == tar.TypeReg {
			files++
			checkContent(t, "tar "+h.Name, tr, w)
		}
	}
	if files < 300 || !strings.Contains(stderr, "extracted") {
		t.Errorf("tar held %d files; stderr %q", files, stderr)
	}
	zf := filepath.Join(t.TempDir(), "sub.zip")
	c.ok(t, "files", "get", point, sub, "--disk", "vdb", "--volume", "2", "--archive", "zip", "--out", zf)
	z, err := zip.OpenReader(zf)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	n := 0
	for _, f := range z.File {
		if f.Mode().IsRegular() {
			w := ref[filepath.Dir(sub)+"/"+f.Name]
			rc, err := f.Open()
			if err != nil || w == nil {
				t.Fatalf("zip %s: %v (in image: %v)", f.Name, err, w != nil)
			}
			checkContent(t, "zip "+f.Name, rc, w)
			rc.Close()
			n++
		}
	}
	if n != files {
		t.Errorf("zip holds %d files, tar %d", n, files)
	}
}

// checkContent compares an archived file's content with the image's.
func checkContent(t *testing.T, what string, r io.Reader, w *fidelity.Node) {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if sum, _ := fidelity.Digest(bytes.NewReader(b), int64(len(b))); sum != w.SHA256 {
		t.Errorf("%s: content differs (%d bytes, want %d)", what, len(b), w.Size)
	}
}

// subtree picks the directory right below top holding the fewest files
// among those holding at least least of them.
func subtree(ref fidelity.Snapshot, top string, least int) string {
	count := map[string]int{}
	for p, n := range ref {
		if n.Type == fsread.TypeFile && strings.HasPrefix(p, top+"/") {
			rest := strings.TrimPrefix(p, top+"/")
			if i := strings.IndexByte(rest, '/'); i > 0 {
				count[top+"/"+rest[:i]]++
			}
		}
	}
	best := top
	for d, n := range count {
		if n >= least && (best == top || n < count[best] || (n == count[best] && d < best)) {
			best = d
		}
	}
	return best
}
