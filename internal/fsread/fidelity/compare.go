package fidelity

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/fsread"
)

// Rules say what a comparison checks.
type Rules struct {
	// Perms and Owners compare permission bits and uid/gid (NTFS keeps
	// neither).
	Perms, Owners bool
	// Inodes compares inode numbers and link counts exactly (a listing);
	// otherwise hard links are compared as groups of paths (an extracted
	// tree) and only files' link counts.
	Inodes bool
	// DirSizes compares directories' sizes (a listing).
	DirSizes bool
	// CTime and BTime compare change and birth times (a listing: an
	// extraction cannot set them).
	CTime, BTime bool
	// Allocated compares allocation exactly; Sparse instead checks that
	// got allocates at most what want does, plus slack (an extraction).
	Allocated, Sparse bool
	// IgnoreXattr skips xattrs by name.
	IgnoreXattr func(name string) bool
	// Skip leaves paths out of the comparison (their subtrees too).
	Skip func(path string) bool
	// NoATime leaves access times out (GNU tar does not restore them).
	NoATime bool
	// NoLinks leaves link counts and hard-link groups out (zip stores
	// every name as a copy).
	NoLinks bool
	// TimeEq compares times when set (default: equal to the nanosecond).
	TimeEq func(want, got time.Time) bool
}

// sparseSlack is the allocation an extracted file may exceed its source
// by (different block sizes and extent metadata).
const sparseSlack = 1 << 20

// Compare lists every difference between want (the kernel's view) and
// got, one line each, sorted.
func Compare(want, got Snapshot, r Rules) []string {
	var out []string
	bad := func(p, what string, w, g any) {
		out = append(out, fmt.Sprintf("%s: %s: want %v, got %v", fsread.Escape(p), what, w, g))
	}
	skipped := func(p string) bool {
		if r.Skip == nil {
			return false
		}
		for q := p; ; q = parent(q) {
			if r.Skip(q) {
				return true
			}
			if q == "/" {
				return false
			}
		}
	}
	teq := r.TimeEq
	if teq == nil {
		teq = time.Time.Equal
	}
	wantLinks, gotLinks := linkGroups(want), linkGroups(got)
	for p, w := range want {
		if skipped(p) {
			continue
		}
		g, ok := got[p]
		if !ok {
			out = append(out, fmt.Sprintf("%s: missing (%s)", fsread.Escape(p), w.Type))
			continue
		}
		if w.Type != g.Type {
			bad(p, "type", w.Type, g.Type)
			continue
		}
		dir := w.Type == fsread.TypeDir
		special := w.Type != fsread.TypeFile && w.Type != fsread.TypeSymlink && !dir
		// Sizes of directories and special files belong to the
		// filesystem holding them: compared in listings only.
		if ((!dir && !special) || (dir && r.DirSizes) || (special && r.Inodes)) && w.Size != g.Size {
			bad(p, "size", w.Size, g.Size)
		}
		if r.Perms && w.Type != fsread.TypeSymlink && w.Perm != g.Perm {
			bad(p, "mode", fmt.Sprintf("%04o", w.Perm), fmt.Sprintf("%04o", g.Perm))
		}
		if r.Owners && (w.UID != g.UID || w.GID != g.GID) {
			bad(p, "owner", fmt.Sprintf("%d:%d", w.UID, w.GID), fmt.Sprintf("%d:%d", g.UID, g.GID))
		}
		if !teq(w.MTime, g.MTime) {
			bad(p, "mtime", w.MTime.Format(timeFmt), g.MTime.Format(timeFmt))
		}
		if !r.NoATime && !teq(w.ATime, g.ATime) {
			bad(p, "atime", w.ATime.Format(timeFmt), g.ATime.Format(timeFmt))
		}
		if r.CTime && !teq(w.CTime, g.CTime) {
			bad(p, "ctime", w.CTime.Format(timeFmt), g.CTime.Format(timeFmt))
		}
		if r.BTime && !w.BTime.IsZero() && !teq(w.BTime, g.BTime) {
			bad(p, "btime", w.BTime.Format(timeFmt), g.BTime.Format(timeFmt))
		}
		if r.Inodes {
			if w.Ino != g.Ino {
				bad(p, "inode", w.Ino, g.Ino)
			}
			if w.Nlink != g.Nlink {
				bad(p, "links", w.Nlink, g.Nlink)
			}
		} else if !dir && !r.NoLinks {
			if w.Nlink != g.Nlink {
				bad(p, "links", w.Nlink, g.Nlink)
			}
			if wantLinks[p] != gotLinks[p] {
				bad(p, "hard links", wantLinks[p], gotLinks[p])
			}
		}
		if w.Target != g.Target {
			bad(p, "symlink target", fsread.Escape(w.Target), fsread.Escape(g.Target))
		}
		if w.Major != g.Major || w.Minor != g.Minor {
			bad(p, "device", fmt.Sprintf("%d:%d", w.Major, w.Minor), fmt.Sprintf("%d:%d", g.Major, g.Minor))
		}
		if w.SHA256 != g.SHA256 {
			bad(p, "sha256", w.SHA256, g.SHA256)
		}
		if r.Allocated && !dir && w.Allocated != g.Allocated {
			bad(p, "allocated", w.Allocated, g.Allocated)
		}
		if r.Sparse && w.Type == fsread.TypeFile && g.Allocated > w.Allocated+sparseSlack {
			bad(p, "allocated (sparse file written dense?)", w.Allocated, g.Allocated)
		}
		wx, gx := filterXattrs(w.Xattrs, r), filterXattrs(g.Xattrs, r)
		if wx != gx {
			bad(p, "xattrs", wx, gx)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok && !skipped(p) {
			out = append(out, fmt.Sprintf("%s: unexpected (%s)", fsread.Escape(p), g.Type))
		}
	}
	sort.Strings(out)
	return out
}

const timeFmt = "2006-01-02T15:04:05.999999999Z07:00"

func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// linkGroups maps each non-directory path to the sorted list of paths
// sharing its inode, when there are several.
func linkGroups(s Snapshot) map[string]string {
	byIno := map[uint64][]string{}
	for p, n := range s {
		if n.Type != fsread.TypeDir && n.Nlink > 1 {
			byIno[n.Ino] = append(byIno[n.Ino], p)
		}
	}
	out := map[string]string{}
	for _, ps := range byIno {
		if len(ps) < 2 {
			continue
		}
		sort.Strings(ps)
		g := fsread.Escape(strings.Join(ps, " = "))
		for _, p := range ps {
			out[p] = g
		}
	}
	return out
}

func filterXattrs(x map[string]string, r Rules) string {
	var names []string
	for k := range x {
		if r.IgnoreXattr == nil || !r.IgnoreXattr(k) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "%s=%q;", k, x[k])
	}
	return b.String()
}
