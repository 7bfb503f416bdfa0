package fsread_test

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/fsread/fstest"
)

// TestMeasure times ls of the root and a 256 MiB sequential read per
// filesystem. It builds ~1 GiB of images, so it only runs with
// KURA_FSREAD_MEASURE=1.
func TestMeasure(t *testing.T) {
	if os.Getenv("KURA_FSREAD_MEASURE") != "1" {
		t.Skip("set KURA_FSREAD_MEASURE=1 to measure")
	}
	big := make([]byte, 256<<20)
	rand.NewChaCha8([32]byte{1}).Read(big)
	want := sha256.Sum256(big)
	tree := fstest.Standard()
	tree.Nodes = append(tree.Nodes, fstest.Node{Path: "/huge.bin", Type: "file", Mode: 0o644,
		ModTime: time.Unix(1600000000, 0), Content: big})
	builders := map[string]func() string{
		"ext4": func() string {
			img, _ := buildExtSized(t, tree, "ext4", "600M")
			return img
		},
		// mkfs.xfs 6.1 protofiles mis-handle a file larger than an AG
		// (it clobbers the next AG), so use two large AGs.
		"xfs": func() string { img, _ := buildXFS(t, tree, "-d", "agcount=2"); return img },
		"ntfs": func() string {
			return buildNTFSSized(t, tree, 600<<20)
		},
	}
	for _, name := range []string{"ext4", "xfs", "ntfs"} {
		img := builders[name]()
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		ctx := context.Background()
		start := time.Now()
		vols, err := fsread.Volumes(ctx, f, st.Size())
		if err != nil {
			t.Fatal(err)
		}
		fsys, err := fsread.OpenFS(ctx, f, vols[0])
		if err != nil {
			t.Fatal(err)
		}
		opened := time.Since(start)
		start = time.Now()
		ents, err := fsys.ReadDir(ctx, "/")
		if err != nil {
			t.Fatal(err)
		}
		ls := time.Since(start)
		start = time.Now()
		many, err := fsys.ReadDir(ctx, fstest.ManyDirPath)
		if err != nil {
			t.Fatal(err)
		}
		lsMany := time.Since(start)
		file, err := fsys.Open(ctx, "/huge.bin")
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		start = time.Now()
		n, err := io.CopyBuffer(h, file, make([]byte, 1<<20))
		el := time.Since(start)
		if err != nil || n != int64(len(big)) || [32]byte(h.Sum(nil)) != want {
			t.Fatalf("%s: read %d bytes, %v, hash match %v", name, n, err, [32]byte(h.Sum(nil)) == want)
		}
		// Same read without hashing, to separate reader cost from sha256.
		start = time.Now()
		buf := make([]byte, 1<<20)
		for off := int64(0); off < n; off += int64(len(buf)) {
			if _, err := file.ReadAt(buf, off); err != nil && err != io.EOF {
				t.Fatal(err)
			}
		}
		raw := time.Since(start)
		t.Logf("%s: open %v; ls / (%d entries) %v; ls %s (%d entries) %v; 256 MiB read+sha256 %.0f MB/s, ReadAt only %.0f MB/s",
			name, opened.Round(time.Microsecond), len(ents), ls.Round(time.Microsecond), fstest.ManyDirPath, len(many),
			lsMany.Round(time.Microsecond), float64(n)/el.Seconds()/1e6, float64(n)/raw.Seconds()/1e6)
		f.Close()
		os.Remove(img)
	}
}
