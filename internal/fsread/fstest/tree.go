// Package fstest is the conformance suite every fsread.FS implementation
// must pass, plus a standard tree that exercises the awkward cases (a file
// larger than 4 MiB, a sparse file, an empty file, symlinks, names with
// spaces and non-ASCII characters, a directory spanning several blocks).
package fstest

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Node is one expected file, directory or symlink.
type Node struct {
	Path    string // absolute, slash-separated
	Type    string // file, dir, symlink
	Mode    fs.FileMode
	ModTime time.Time // zero: check against Tree.MTimeWindow instead
	Content []byte    // files
	Target  string    // symlinks
	// Sparse marks a file whose zero regions should be holes when the
	// filesystem builder supports them.
	Sparse bool
}

// Tree is the expected content of a filesystem.
type Tree struct {
	Nodes []Node
	// IgnoreMode skips permission checks (NTFS has no unix modes).
	IgnoreMode bool
	// MTimeWindow bounds the mtime of nodes whose ModTime is zero (e.g.
	// builders that stamp the creation time). Both zero: mtime unchecked.
	MTimeWindow [2]time.Time
	// Special paths the suite exercises explicitly.
	Large, Sparse, Empty, Symlink, NonASCII, Dir string
}

// Well-known paths of the Standard tree.
const (
	LargePath      = "/big.bin"
	SparsePath     = "/sparse.bin"
	EmptyPath      = "/empty"
	SymlinkPath    = "/link"
	DirPath        = "/dir with space"
	NonASCIIPath   = "/dir with space/ファイル-ü.txt"
	ManyDirPath    = "/many"
	FragmentedPath = "/fragmented.bin"
	ManyCount      = 300
)

// Standard returns the standard conformance tree. Symlinks carry no
// expected mtime.
func Standard() Tree {
	base := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	at := func(h int) time.Time { return base.Add(time.Duration(h) * time.Hour) }
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 5<<20+1234)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	sparse := make([]byte, 8<<20)
	copy(sparse[3<<20:], strings.Repeat("data in the middle of a hole ", 200))
	copy(sparse[len(sparse)-100:], strings.Repeat("Z", 100))
	// Data in every other 4 KiB block: many extents (an ext4 extent tree
	// deeper than the inode, many NTFS runs). It ends in data because
	// mke2fs -d with inline_data drops a trailing hole from i_size.
	frag := make([]byte, 256<<10)
	for off := 4096; off < len(frag); off += 8 << 10 {
		copy(frag[off:off+4096], big[off:off+4096])
	}
	t := Tree{
		Large: LargePath, Sparse: SparsePath, Empty: EmptyPath, Symlink: SymlinkPath,
		NonASCII: NonASCIIPath, Dir: DirPath,
		Nodes: []Node{
			{Path: "/", Type: "dir", Mode: 0o755, ModTime: at(0)},
			{Path: "/hello.txt", Type: "file", Mode: 0o644, ModTime: at(1), Content: []byte("hello, world\n")},
			{Path: EmptyPath, Type: "file", Mode: 0o600, ModTime: at(2), Content: []byte{}},
			{Path: LargePath, Type: "file", Mode: 0o644, ModTime: at(3), Content: big},
			{Path: SparsePath, Type: "file", Mode: 0o640, ModTime: at(4), Content: sparse, Sparse: true},
			{Path: FragmentedPath, Type: "file", Mode: 0o644, ModTime: at(12), Content: frag, Sparse: true},
			{Path: "/script.sh", Type: "file", Mode: 0o755, ModTime: at(5), Content: []byte("#!/bin/sh\necho hi\n")},
			{Path: DirPath, Type: "dir", Mode: 0o750, ModTime: at(6)},
			{Path: NonASCIIPath, Type: "file", Mode: 0o644, ModTime: at(7), Content: []byte("non-ascii name\n")},
			{Path: DirPath + "/nested", Type: "dir", Mode: 0o700, ModTime: at(8)},
			{Path: DirPath + "/nested/deep.txt", Type: "file", Mode: 0o600, ModTime: at(9), Content: []byte("deep\n")},
			{Path: SymlinkPath, Type: "symlink", Mode: 0o777, Target: "dir with space/ファイル-ü.txt"},
			{Path: "/long-link", Type: "symlink", Mode: 0o777, Target: "/" + strings.Repeat("long-target-component/", 5) + "end"},
			{Path: ManyDirPath, Type: "dir", Mode: 0o755, ModTime: at(10)},
		},
	}
	for i := 0; i < ManyCount; i++ {
		t.Nodes = append(t.Nodes, Node{Path: fmt.Sprintf("%s/entry-with-a-longish-name-%03d.txt", ManyDirPath, i),
			Type: "file", Mode: 0o644, ModTime: at(11), Content: []byte(fmt.Sprintf("entry %d\n", i))})
	}
	return t
}

// WithoutTimes returns a copy of t whose nodes carry no expected mtime and
// whose window is [from, to].
func (t Tree) WithoutTimes(from, to time.Time) Tree {
	t.Nodes = append([]Node(nil), t.Nodes...)
	for i := range t.Nodes {
		t.Nodes[i].ModTime = time.Time{}
	}
	t.MTimeWindow = [2]time.Time{from, to}
	return t
}

// Without returns a copy of t without the nodes whose paths are listed
// (and their descendants).
func (t Tree) Without(paths ...string) Tree {
	var out []Node
	for _, n := range t.Nodes {
		drop := false
		for _, p := range paths {
			if n.Path == p || strings.HasPrefix(n.Path, p+"/") {
				drop = true
			}
		}
		if !drop {
			out = append(out, n)
		}
	}
	t.Nodes = out
	return t
}

// Populate writes t below dir on the host, with modes and mtimes. Sparse
// files get holes where their content is zero (4 KiB granularity).
func Populate(dir string, t Tree) error {
	var dirs []Node
	for _, n := range t.Nodes {
		p := filepath.Join(dir, filepath.FromSlash(n.Path))
		switch n.Type {
		case "dir":
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, n)
		case "file":
			if err := writeFile(p, n); err != nil {
				return err
			}
		case "symlink":
			if err := os.Symlink(n.Target, p); err != nil {
				return err
			}
		}
	}
	// Directories last, deepest first, so their mtimes stick.
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i].Path) > len(dirs[j].Path) })
	for _, n := range dirs {
		p := filepath.Join(dir, filepath.FromSlash(n.Path))
		if err := os.Chmod(p, n.Mode.Perm()); err != nil {
			return err
		}
		if !n.ModTime.IsZero() {
			if err := os.Chtimes(p, n.ModTime, n.ModTime); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeFile(p string, n Node) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	const blk = 4096
	for off := 0; off < len(n.Content); off += blk {
		chunk := n.Content[off:min(off+blk, len(n.Content))]
		if n.Sparse && allZero(chunk) {
			continue
		}
		if _, err := f.WriteAt(chunk, int64(off)); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Truncate(int64(len(n.Content))); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(p, n.Mode.Perm()); err != nil {
		return err
	}
	if n.ModTime.IsZero() {
		return nil
	}
	return os.Chtimes(p, n.ModTime, n.ModTime)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
