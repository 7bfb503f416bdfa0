package fidelity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"
)

// Source picks real files from host trees, in sorted walk order.
type Source struct {
	Roots    []string // host directories, e.g. /usr/share
	MinFiles int      // stop once this many regular files are picked
	MaxFile  int64    // skip larger files
	MaxBytes int64    // stop once this many bytes are picked
}

// picked is one entry of the source, relative to its root's parent.
type picked struct {
	host string // host path
	rel  string // path below the staging root
	info fs.FileInfo
}

func (s Source) pick() ([]picked, error) {
	var out []picked
	files, bytes := 0, int64(0)
	done := func() bool { return files >= s.MinFiles || (s.MaxBytes > 0 && bytes >= s.MaxBytes) }
	for _, root := range s.Roots {
		base := filepath.Dir(root)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable: leave out
			}
			if done() {
				return filepath.SkipAll
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			switch {
			case info.Mode().IsRegular():
				if s.MaxFile > 0 && info.Size() > s.MaxFile {
					return nil
				}
				files++
				bytes += info.Size()
			case info.IsDir(), info.Mode()&fs.ModeSymlink != 0:
			default:
				return nil
			}
			rel, _ := filepath.Rel(base, p)
			out = append(out, picked{host: p, rel: rel, info: info})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if files < s.MinFiles {
		return nil, fmt.Errorf("only %d files under %v, want %d", files, s.Roots, s.MinFiles)
	}
	return out, nil
}

// manifest is a digest of what the source picks (and how), the key of
// cached images.
func manifest(ps []picked, extra string) string {
	h := sha256.New()
	fmt.Fprintf(h, "kit %d %s\n", kitVersion, extra)
	for _, p := range ps {
		st := p.info.Sys().(*syscall.Stat_t)
		fmt.Fprintf(h, "%q %o %d %d:%d %d.%d\n", p.rel, st.Mode, st.Size, st.Uid, st.Gid, st.Mtim.Sec, st.Mtim.Nsec)
	}
	return hex.EncodeToString(h.Sum(nil))[:20]
}

// stage copies the picked entries below dir (data, modes, owners, times,
// symlinks and hard links among them).
func stage(ctx context.Context, ps []picked, dir string) error {
	links := map[[2]uint64]string{}
	var dirs []picked
	for _, p := range ps {
		if err := ctx.Err(); err != nil {
			return err
		}
		dst := filepath.Join(dir, p.rel)
		st := p.info.Sys().(*syscall.Stat_t)
		switch {
		case p.info.IsDir():
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, p)
			continue
		case p.info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p.host)
			if err != nil {
				return err
			}
			if err := os.Symlink(t, dst); err != nil {
				return err
			}
		default:
			id := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[id]; ok && st.Nlink > 1 {
				if err := os.Link(first, dst); err != nil {
					return err
				}
				continue
			}
			links[id] = dst
			if err := copyFile(p.host, dst); err != nil {
				return err
			}
			if err := os.Chmod(dst, p.info.Mode().Perm()|p.info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
				return err
			}
		}
		if err := setMeta(dst, st); err != nil {
			return err
		}
	}
	// Directories last, deepest first, so their times stick.
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i].rel) > len(dirs[j].rel) })
	for _, p := range dirs {
		dst := filepath.Join(dir, p.rel)
		if err := os.Chmod(dst, p.info.Mode().Perm()); err != nil {
			return err
		}
		if err := setMeta(dst, p.info.Sys().(*syscall.Stat_t)); err != nil {
			return err
		}
	}
	return nil
}

func setMeta(p string, st *syscall.Stat_t) error {
	if err := unix.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("utimes %s: %w", p, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
