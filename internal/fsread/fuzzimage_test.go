package fsread_test

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/fsread/fstest"
)

// overlay is a volume with a patch applied, without copying the image.
type overlay struct {
	base  io.ReaderAt
	off   int64
	patch []byte
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.base.ReadAt(p, off)
	for i := range p[:n] {
		if j := off + int64(i) - o.off; j >= 0 && j < int64(len(o.patch)) {
			p[i] = o.patch[j]
		}
	}
	return n, err
}

// walk lists and reads everything reachable (bounded), ignoring errors:
// corrupt input must yield errors, never panics or hangs.
func walk(fsys fsread.FS) {
	ctx := context.Background()
	var rec func(p string, depth int)
	rec = func(p string, depth int) {
		ents, err := fsys.ReadDir(ctx, p)
		if err != nil || depth > 3 {
			return
		}
		for i, e := range ents {
			if i > 40 {
				return
			}
			fsys.Stat(ctx, e.Path)
			switch e.Type {
			case "dir":
				rec(e.Path, depth+1)
			case "file":
				if f, err := fsys.Open(ctx, e.Path); err == nil {
					io.Copy(io.Discard, io.LimitReader(f, 64<<10))
					f.ReadAt(make([]byte, 4096), f.Size()/2)
					f.Close()
				}
			}
		}
	}
	rec("/", 0)
}

func fuzzImage(f *testing.F, img, kind string, window int64) {
	file, err := os.Open(img)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { file.Close() })
	st, _ := file.Stat()
	f.Add(uint32(0), []byte{})
	f.Add(uint32(4096), []byte{0xff, 0xff, 0xff, 0xff})
	f.Add(uint32(65536+100), []byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, off uint32, patch []byte) {
		r := &overlay{base: file, off: int64(off) % window, patch: patch}
		v := fsread.Volume{Index: 1, Size: st.Size(), FS: kind}
		fsys, err := fsread.OpenFS(context.Background(), r, v)
		if err != nil {
			return
		}
		walk(fsys)
	})
}

func FuzzXFSImage(f *testing.F) {
	img, _ := buildXFS(f, fstest.Standard().Without(fstest.LargePath, fstest.SparsePath))
	fuzzImage(f, img, "xfs", 1<<20)
}

func FuzzNTFSImage(f *testing.F) {
	img := buildNTFS(f, fstest.Standard().Without(fstest.LargePath, fstest.SparsePath, fstest.ManyDirPath))
	fuzzImage(f, img, "ntfs", 4<<20)
}
