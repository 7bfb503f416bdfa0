package diskwrite

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

const chunk = 4 << 20

func needTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-nbd"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("KURA_TEST_STRICT") == "1" {
				t.Fatalf("%s not installed", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64() | 1 // never a zero word
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// op is one write of the test pattern: data (nil means Zero).
type op struct {
	off  int64
	data []byte
	n    int64
}

// pattern builds the writes of a 48 MiB - 4 KiB image and the expected
// content. Zero ranges it returns must end up unallocated.
func pattern() (size int64, ops []op, want []byte, zeros [][2]int64) {
	size = 12*chunk - 4096
	want = make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	data := func(c int) {
		off := int64(c) * chunk
		n := min(int64(chunk), size-off)
		b := randBytes(r, int(n))
		if c == 2 {
			clear(b[1<<20 : 1<<20+256<<10])  // an aligned zero area inside data
			clear(b[3<<20+100 : 3<<20+1100]) // an unaligned one
			zeros = append(zeros, [2]int64{off + 1<<20, 256 << 10})
		}
		copy(want[off:], b)
		ops = append(ops, op{off: off, data: b, n: n})
	}
	zero := func(c int) {
		off := int64(c) * chunk
		ops = append(ops, op{off: off, n: chunk})
		zeros = append(zeros, [2]int64{off, chunk})
	}
	data(0)
	zero(1)
	data(2)
	zeros = append(zeros, [2]int64{3 * chunk, chunk}) // chunk 3 never written
	ops = append(ops, op{off: 4 * chunk, data: make([]byte, chunk), n: chunk})
	zeros = append(zeros, [2]int64{4 * chunk, chunk}) // all-zero data
	data(5)
	data(6)
	data(7)
	zero(8)
	zero(9)
	zero(10)
	data(11)
	return size, ops, want, zeros
}

// writeAll runs ops from 4 goroutines.
func writeAll(t testing.TB, w *Writer, ops []op) {
	t.Helper()
	ctx := context.Background()
	ch := make(chan op)
	var wg sync.WaitGroup
	errs := make(chan error, len(ops))
	for range 4 {
		wg.Go(func() {
			for o := range ch {
				if o.data != nil {
					errs <- w.WriteAt(ctx, o.data, o.off)
				} else {
					errs <- w.Zero(ctx, o.off, o.n)
				}
			}
		})
	}
	for _, o := range ops {
		ch <- o
	}
	close(ch)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

type mapExtent struct {
	Start  int64 `json:"start"`
	Length int64 `json:"length"`
	Data   bool  `json:"data"`
	Zero   bool  `json:"zero"`
}

func imageMap(t *testing.T, path, format string) []mapExtent {
	out, err := exec.Command("qemu-img", "map", "--output=json", "-f", format, path).Output()
	if err != nil {
		t.Fatalf("qemu-img map: %v", err)
	}
	var m []mapExtent
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func allocated(m []mapExtent, off, n int64) bool {
	for _, e := range m {
		if e.Data && e.Start < off+n && off < e.Start+e.Length {
			return true
		}
	}
	return false
}

func compareImage(t *testing.T, path, format string, want []byte) {
	t.Helper()
	exp := filepath.Join(t.TempDir(), "expected.raw")
	if err := os.WriteFile(exp, want, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("qemu-img", "compare", "-f", format, "-F", "raw", path, exp).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img compare: %v: %s", err, out)
	}
}

func TestWriteThin(t *testing.T) {
	needTools(t)
	size, ops, want, zeros := pattern()
	var dataLen int64 // bytes in 64 KiB blocks holding non-zero data
	for off := int64(0); off < size; off += 64 << 10 {
		if !isZero(want[off:min(off+64<<10, size)]) {
			dataLen += min(64<<10, size-off)
		}
	}
	for _, tc := range []struct {
		name   string
		format string
		opts   Options
	}{
		{"qcow2", "qcow2", Options{}},
		{"qcow2-writeback", "qcow2", Options{Cache: "writeback"}},
		{"raw", "raw", Options{}},
		{"raw-via-nbd", "raw", Options{RawViaNBD: true}},
		{"vmdk", "vmdk", Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "disk."+tc.format)
			tc.opts.ScratchDir = dir
			w, err := Create(context.Background(), Target{Path: path, Format: tc.format, Size: size}, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort(context.Background())
			writeAll(t, w, ops)
			if err := w.WriteAt(context.Background(), []byte{1}, size); !errors.Is(err, ErrRange) {
				t.Errorf("write past the end: %v", err)
			}
			if _, err := os.Stat(path); err == nil {
				t.Fatal("final path exists before Commit")
			}
			if err := w.Commit(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path + PartialSuffix); err == nil {
				t.Error("partial file left after Commit")
			}
			compareImage(t, path, tc.format, want)
			m := imageMap(t, path, tc.format)
			for _, z := range zeros {
				if allocated(m, z[0], z[1]) {
					t.Errorf("zero range %d+%d is allocated: %+v", z[0], z[1], m)
				}
			}
			st, _ := os.Stat(path)
			var used int64 = st.Size()
			if tc.format == "raw" {
				used = statBlocks(st) * 512
			}
			if used > dataLen+512<<10 { // metadata of a 48 MiB qcow2: ~330 KiB
				t.Errorf("image uses %d bytes for %d bytes of data", used, dataLen)
			}
			s := w.Stats()
			if s.DataBytes > dataLen || s.SkippedBytes < 4*chunk {
				t.Errorf("stats %+v", s)
			}
			t.Logf("%s: %d bytes on disk for %d data bytes; stats %+v", tc.name, used, dataLen, s)
			if err := w.WriteAt(context.Background(), []byte{1}, 0); !errors.Is(err, ErrClosed) {
				t.Errorf("write after commit: %v", err)
			}
		})
	}
}

// TestRewriteZeroes zeroes ranges that were written before, which must
// deallocate them.
func TestRewriteZeroes(t *testing.T) {
	needTools(t)
	for _, format := range []string{"qcow2", "raw"} {
		t.Run(format, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "d."+format)
			w, err := Create(ctx, Target{Path: path, Format: format, Size: 16 << 20}, Options{Rewrite: true})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort(ctx)
			b := randBytes(rand.New(rand.NewPCG(3, 4)), 16<<20)
			if err := w.WriteAt(ctx, b, 0); err != nil {
				t.Fatal(err)
			}
			if err := w.Zero(ctx, 4<<20, 8<<20); err != nil {
				t.Fatal(err)
			}
			// Zero blocks inside written data are zeroed too.
			z := make([]byte, 1<<20)
			if err := w.WriteAt(ctx, z, 13<<20); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			clear(b[4<<20 : 12<<20])
			clear(b[13<<20 : 14<<20])
			compareImage(t, path, format, b)
			m := imageMap(t, path, format)
			if allocated(m, 4<<20, 8<<20) || allocated(m, 13<<20, 1<<20) {
				t.Errorf("zeroed ranges still allocated: %+v", m)
			}
			if !allocated(m, 0, 4<<20) {
				t.Errorf("data range not allocated: %+v", m)
			}
		})
	}
}

func TestExistsAbortAndPartial(t *testing.T) {
	needTools(t)
	ctx := context.Background()
	for _, format := range []string{"qcow2", "raw"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "vm-vda."+format)
			tgt := Target{Path: path, Format: format, Size: 8 << 20}
			if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Create(ctx, tgt, Options{}); !errors.Is(err, ErrExists) {
				t.Fatalf("existing target: %v", err)
			}
			if b, _ := os.ReadFile(path); string(b) != "old" {
				t.Fatal("refused Create touched the existing file")
			}
			// Overwrite: the old file stays until Commit replaces it.
			w, err := Create(ctx, tgt, Options{Overwrite: true})
			if err != nil {
				t.Fatal(err)
			}
			data := randBytes(rand.New(rand.NewPCG(5, 6)), 1<<20)
			if err := w.WriteAt(ctx, data, 2<<20); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(path); string(b) != "old" {
				t.Fatal("old file replaced before Commit")
			}
			if err := w.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			want := make([]byte, 8<<20)
			copy(want[2<<20:], data)
			compareImage(t, path, format, want)
			os.Remove(path)

			// Not committed (a killed restore): only the partial file.
			w, err = Create(ctx, tgt, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteAt(ctx, data, 0); err != nil {
				t.Fatal(err)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 || ents[0].Name() != "vm-vda."+format+PartialSuffix {
				t.Fatalf("during a restore the directory holds %v", ents)
			}
			if err := w.Abort(ctx); err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("Abort left %v", ents)
			}
			if err := w.Commit(ctx); !errors.Is(err, ErrClosed) {
				t.Errorf("commit after abort: %v", err)
			}
			// A stale partial file is replaced by the next Create.
			if err := os.WriteFile(path+PartialSuffix, []byte("stale"), 0o600); err != nil {
				t.Fatal(err)
			}
			w, err = Create(ctx, tgt, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			compareImage(t, path, format, make([]byte, 8<<20))
		})
	}
}

func TestCreateErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Create(ctx, Target{Path: "/tmp/x.vdi", Format: "vdi", Size: 1 << 20}, Options{}); !errors.Is(err, ErrFormat) {
		t.Errorf("vdi: %v", err)
	}
	if _, err := Create(ctx, Target{Path: "rel.raw", Format: "raw", Size: 1 << 20}, Options{}); err == nil {
		t.Error("relative path accepted")
	}
	if _, err := Create(ctx, Target{Path: "/nonexistent-dir/x.raw", Format: "raw", Size: 1 << 20}, Options{}); err == nil {
		t.Error("missing directory accepted")
	}
}

// TestNoDirectIO writes on tmpfs, which has no O_DIRECT: qemu-nbd falls
// back to writeback and raw files to buffered writes.
func TestNoDirectIO(t *testing.T) {
	needTools(t)
	shm, err := os.MkdirTemp("/dev/shm", "kura-diskwrite-test-")
	if err != nil {
		t.Skip("no /dev/shm")
	}
	defer os.RemoveAll(shm)
	ctx := context.Background()
	for _, format := range []string{"qcow2", "raw"} {
		path := filepath.Join(shm, "d."+format)
		w, err := Create(ctx, Target{Path: path, Format: format, Size: 8 << 20}, Options{ScratchDir: shm})
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		data := randBytes(rand.New(rand.NewPCG(9, 9)), 2<<20)
		if err := w.WriteAt(ctx, data, 4<<20); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, 8<<20)
		copy(want[4<<20:], data)
		compareImage(t, path, format, want)
	}
}

// TestImageModes: new images are private (0600) whatever the umask and
// the tool that creates them; an image replacing a file keeps that file's
// mode; an explicit mode wins.
func TestImageModes(t *testing.T) {
	needTools(t)
	ctx := context.Background()
	for _, format := range []string{"qcow2", "raw"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			mode := func(p string) fs.FileMode {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				return fi.Mode().Perm()
			}
			create := func(tg Target, o Options) {
				t.Helper()
				w, err := Create(ctx, tg, o)
				if err != nil {
					t.Fatal(err)
				}
				if err := w.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
			fresh := filepath.Join(dir, "fresh."+format)
			create(Target{Path: fresh, Format: format, Size: 1 << 20}, Options{})
			if m := mode(fresh); m != 0o600 {
				t.Errorf("new image mode %o, want 600", m)
			}
			replaced := filepath.Join(dir, "replaced."+format)
			if err := os.WriteFile(replaced, nil, 0o640); err != nil {
				t.Fatal(err)
			}
			_ = os.Chmod(replaced, 0o640)
			create(Target{Path: replaced, Format: format, Size: 1 << 20}, Options{Overwrite: true})
			if m := mode(replaced); m != 0o640 {
				t.Errorf("replacing image mode %o, want the original's 640", m)
			}
			explicit := filepath.Join(dir, "explicit."+format)
			create(Target{Path: explicit, Format: format, Size: 1 << 20, Mode: 0o644}, Options{})
			if m := mode(explicit); m != 0o644 {
				t.Errorf("explicit mode %o, want 644", m)
			}
		})
	}
}
