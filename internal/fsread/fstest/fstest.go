package fstest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"path"
	"sort"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/fsread"
)

// Run checks an FS against the expected tree: listings of every directory
// (sorted names, types, sizes, modes, mtimes within 1 s, symlink targets),
// file contents (whole and at random offsets, including the large, sparse
// and empty files), symlinks not being followed by Stat, non-ASCII paths,
// ErrNotExist for missing paths and clear errors for type mismatches.
func Run(t *testing.T, open func(t *testing.T) fsread.FS, want Tree) {
	t.Helper()
	ctx := context.Background()
	fsys := open(t)
	byPath := map[string]Node{}
	children := map[string][]Node{}
	for _, n := range want.Nodes {
		byPath[n.Path] = n
		if n.Path != "/" {
			children[path.Dir(n.Path)] = append(children[path.Dir(n.Path)], n)
		}
	}
	for _, special := range []string{want.Large, want.Sparse, want.Empty, want.Symlink, want.NonASCII, want.Dir} {
		if _, ok := byPath[special]; !ok || special == "" {
			t.Fatalf("tree lacks special path %q", special)
		}
	}

	t.Run("ReadDir", func(t *testing.T) {
		for dir, kids := range children {
			sort.Slice(kids, func(i, j int) bool { return path.Base(kids[i].Path) < path.Base(kids[j].Path) })
			got, err := fsys.ReadDir(ctx, dir)
			if err != nil {
				t.Errorf("ReadDir(%q): %v", dir, err)
				continue
			}
			if len(got) != len(kids) {
				t.Errorf("ReadDir(%q): %d entries, want %d: %v", dir, len(got), len(kids), names(got))
				continue
			}
			for i, e := range got {
				if e.Path != kids[i].Path {
					t.Errorf("ReadDir(%q)[%d] = %q, want %q", dir, i, e.Path, kids[i].Path)
					continue
				}
				checkEntry(t, want, e, kids[i])
			}
		}
	})

	t.Run("StatAll", func(t *testing.T) {
		for _, n := range want.Nodes {
			e, err := fsys.Stat(ctx, n.Path)
			if err != nil {
				t.Errorf("Stat(%q): %v", n.Path, err)
				continue
			}
			checkEntry(t, want, e, n)
		}
	})

	t.Run("ReadFiles", func(t *testing.T) {
		for _, n := range want.Nodes {
			if n.Type == "file" {
				checkFile(t, fsys, n)
			}
		}
	})

	t.Run("ByEntry", func(t *testing.T) {
		for dir := range children {
			checkByEntry(t, fsys, dir)
		}
	})

	t.Run("Special", func(t *testing.T) {
		if l := len(byPath[want.Large].Content); l <= 4<<20 {
			t.Errorf("large file is %d bytes, want > 4 MiB", l)
		}
		if l := len(byPath[want.Empty].Content); l != 0 {
			t.Errorf("empty file is %d bytes", l)
		}
		if !byPath[want.Sparse].Sparse {
			t.Errorf("sparse file not marked sparse")
		}
		e, err := fsys.Stat(ctx, want.Symlink)
		if err != nil || e.Type != "symlink" || e.Target != byPath[want.Symlink].Target {
			t.Errorf("Stat(symlink) = %+v, %v; want symlink to %q", e, err, byPath[want.Symlink].Target)
		}
		e, err = fsys.Stat(ctx, want.NonASCII)
		if err != nil || e.Name != path.Base(want.NonASCII) {
			t.Errorf("Stat(%q) = %+v, %v", want.NonASCII, e, err)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		for _, p := range []string{"/does-not-exist", want.Dir + "/missing", "/does-not-exist/child"} {
			if _, err := fsys.Stat(ctx, p); !errors.Is(err, fsread.ErrNotExist) {
				t.Errorf("Stat(%q) error = %v, want ErrNotExist", p, err)
			}
			if _, err := fsys.ReadDir(ctx, p); !errors.Is(err, fsread.ErrNotExist) {
				t.Errorf("ReadDir(%q) error = %v, want ErrNotExist", p, err)
			}
			if _, err := fsys.Open(ctx, p); !errors.Is(err, fsread.ErrNotExist) {
				t.Errorf("Open(%q) error = %v, want ErrNotExist", p, err)
			}
		}
		if f, err := fsys.Open(ctx, want.Dir); !errors.Is(err, fsread.ErrIsDir) {
			if f != nil {
				f.Close()
			}
			t.Errorf("Open(dir) error = %v, want ErrIsDir", err)
		}
		if _, err := fsys.ReadDir(ctx, want.Large); !errors.Is(err, fsread.ErrNotDir) {
			t.Errorf("ReadDir(file) error = %v, want ErrNotDir", err)
		}
		if _, err := fsys.Stat(ctx, want.Large+"/child"); err == nil {
			t.Errorf("Stat(file/child) succeeded")
		}
	})
}

// checkByEntry checks the entry-addressed calls against the path ones:
// List equals ReadDir, OpenEntry reads what Open reads, extents are
// sorted, inside the file and cover every non-zero byte, and Xattrs
// works on every entry.
func checkByEntry(t *testing.T, fsys fsread.FS, dir string) {
	t.Helper()
	ctx := context.Background()
	d, err := fsys.Stat(ctx, dir)
	if err != nil {
		t.Errorf("Stat(%q): %v", dir, err)
		return
	}
	byPath, err := fsys.ReadDir(ctx, dir)
	if err != nil {
		t.Errorf("ReadDir(%q): %v", dir, err)
		return
	}
	byEntry, err := fsys.List(ctx, d)
	if err != nil || len(byEntry) != len(byPath) {
		t.Errorf("List(%q) = %d entries, %v; ReadDir has %d", dir, len(byEntry), err, len(byPath))
		return
	}
	for i, e := range byEntry {
		if e.Path != byPath[i].Path || e.Ino != byPath[i].Ino || e.Type != byPath[i].Type {
			t.Errorf("List(%q)[%d] = %s (ino %d), ReadDir has %s (ino %d)", dir, i, e.Path, e.Ino, byPath[i].Path, byPath[i].Ino)
		}
		if _, err := fsys.Xattrs(ctx, e); err != nil {
			t.Errorf("Xattrs(%q): %v", e.Path, err)
		}
		if e.Type == fsread.TypeFile {
			checkExtents(t, fsys, e)
		}
	}
}

func checkExtents(t *testing.T, fsys fsread.FS, e fsread.Entry) {
	t.Helper()
	ctx := context.Background()
	f, err := fsys.OpenEntry(ctx, e)
	if err != nil {
		t.Errorf("OpenEntry(%q): %v", e.Path, err)
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.NewSectionReader(f, 0, f.Size()))
	if err != nil {
		t.Errorf("%s: read by entry: %v", e.Path, err)
		return
	}
	covered := make([]bool, len(data))
	end := int64(0)
	for _, x := range f.Extents() {
		if x.Off < end || x.Len <= 0 || x.Off+x.Len > int64(len(data)) {
			t.Errorf("%s: extent %+v after %d, size %d", e.Path, x, end, len(data))
			return
		}
		for i := x.Off; i < x.Off+x.Len; i++ {
			covered[i] = true
		}
		end = x.Off + x.Len
	}
	for i, c := range data {
		if c != 0 && !covered[i] {
			t.Errorf("%s: byte %d is data outside every extent", e.Path, i)
			return
		}
	}
}

func names(es []fsread.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Name
	}
	return out
}

func checkEntry(t *testing.T, want Tree, e fsread.Entry, n Node) {
	t.Helper()
	if e.Type != n.Type {
		t.Errorf("%s: type %q, want %q", n.Path, e.Type, n.Type)
		return
	}
	if e.Name != path.Base(n.Path) && n.Path != "/" {
		t.Errorf("%s: name %q", n.Path, e.Name)
	}
	if n.Type == "file" && e.Size != int64(len(n.Content)) {
		t.Errorf("%s: size %d, want %d", n.Path, e.Size, len(n.Content))
	}
	if n.Type == "symlink" && e.Target != n.Target {
		t.Errorf("%s: target %q, want %q", n.Path, e.Target, n.Target)
	}
	wantType := map[string]fs.FileMode{"dir": fs.ModeDir, "symlink": fs.ModeSymlink, "file": 0}[n.Type]
	if e.Mode.Type() != wantType {
		t.Errorf("%s: mode type %v, want %v", n.Path, e.Mode.Type(), wantType)
	}
	if !want.IgnoreMode && e.Mode.Perm() != n.Mode.Perm() {
		t.Errorf("%s: perm %v, want %v", n.Path, e.Mode.Perm(), n.Mode.Perm())
	}
	switch {
	case !n.ModTime.IsZero():
		if d := e.ModTime.Sub(n.ModTime); d > time.Second || d < -time.Second {
			t.Errorf("%s: mtime %v, want %v", n.Path, e.ModTime, n.ModTime)
		}
	case !want.MTimeWindow[0].IsZero() && n.Type != "symlink":
		lo, hi := want.MTimeWindow[0].Add(-time.Second), want.MTimeWindow[1].Add(time.Second)
		if e.ModTime.Before(lo) || e.ModTime.After(hi) {
			t.Errorf("%s: mtime %v outside [%v, %v]", n.Path, e.ModTime, lo, hi)
		}
	}
}

func checkFile(t *testing.T, fsys fsread.FS, n Node) {
	t.Helper()
	f, err := fsys.Open(context.Background(), n.Path)
	if err != nil {
		t.Errorf("Open(%q): %v", n.Path, err)
		return
	}
	defer f.Close()
	if f.Size() != int64(len(n.Content)) {
		t.Errorf("%s: File.Size %d, want %d", n.Path, f.Size(), len(n.Content))
	}
	got, err := io.ReadAll(f)
	if err != nil {
		t.Errorf("%s: read: %v", n.Path, err)
		return
	}
	if !bytes.Equal(got, n.Content) {
		t.Errorf("%s: content differs (got %d bytes, want %d, first diff at %d)", n.Path, len(got), len(n.Content), firstDiff(got, n.Content))
		return
	}
	size := int64(len(n.Content))
	for _, off := range []int64{0, 1, 4095, 4096, 65537, size / 3, size/2 + 7, size - 3000, size - 1} {
		if off < 0 || off >= size {
			continue
		}
		buf := make([]byte, 2500)
		k, err := f.ReadAt(buf, off)
		wantN := min(int64(len(buf)), size-off)
		if int64(k) != wantN || (k < len(buf) && err != io.EOF) || (k == len(buf) && err != nil && err != io.EOF) {
			t.Errorf("%s: ReadAt(%d) = %d, %v; want %d", n.Path, off, k, err, wantN)
			continue
		}
		if !bytes.Equal(buf[:k], n.Content[off:off+int64(k)]) {
			t.Errorf("%s: ReadAt(%d) content differs", n.Path, off)
		}
	}
	if _, err := f.ReadAt(make([]byte, 1), size); err != io.EOF {
		t.Errorf("%s: ReadAt(size) error %v, want io.EOF", n.Path, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
