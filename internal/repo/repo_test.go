package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/storage/mem"
)

func TestRoundTripExtents(t *testing.T) {
	for _, enc := range []bool{true, false} {
		t.Run(map[bool]string{true: "encrypted", false: "plain"}[enc], func(t *testing.T) {
			r, _ := newTestRepo(t, enc)
			size := 20*testCS + 12345 // not a multiple of the chunk size
			img := testImage(1, size)
			// A hole declared zero, an all-zero window read as data.
			clear(img[3*testCS : 5*testCS+100])
			clear(img[8*testCS : 9*testCS])
			exts := []Extent{
				{0, 3 * testCS, ExtentData},
				{3 * testCS, 2 * testCS, ExtentZero},
				{5 * testCS, int64(size) - 5*testCS, ExtentData},
			}
			m, st := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(size), Extents: exts})
			readBack(t, r, m.ID, img)
			if st.BytesRead != int64(size)-2*testCS {
				t.Errorf("read %d bytes, want %d (zero extent must not be read)", st.BytesRead, int64(size)-2*testCS)
			}
			if st.BytesZero < 3*testCS {
				t.Errorf("zero bytes %d, want at least %d", st.BytesZero, 3*testCS)
			}
			// Second full write of the same data stores nothing new.
			m2, st2 := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(size)})
			if st2.ChunksNew != 0 || st2.BytesNew != 0 {
				t.Errorf("duplicate write stored %d new chunks", st2.ChunksNew)
			}
			if m2.Disks[0].Index != m.Disks[0].Index {
				t.Errorf("same image gave different index ids")
			}
			// Tiny and empty disks.
			for _, n := range []int{0, 1, 4095} {
				small := testImage(uint64(n), n)
				ms, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(small), Size: int64(n)})
				readBack(t, r, ms.ID, small)
			}
		})
	}
}

func TestIncrementalReadsOnlyChanged(t *testing.T) {
	r, _ := newTestRepo(t, true)
	ctx := context.Background()
	size := 16*testCS + 777
	base := testImage(2, size)
	m1, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(base), Size: int64(size)})
	parent, err := r.LoadIndex(ctx, m1.Disks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	cur := bytes.Clone(base)
	// Change window 2 entirely, part of window 7 (the rest of 7 is unchanged
	// but must be read), and the short last window.
	copy(cur[2*testCS:3*testCS], testImage(3, testCS))
	copy(cur[7*testCS+100:7*testCS+200], bytes.Repeat([]byte("X"), 100))
	cur[size-1] ^= 0xff
	exts := []Extent{
		{0, 2 * testCS, ExtentUnchanged},
		{2 * testCS, testCS, ExtentData},
		{3 * testCS, 4*testCS + 100, ExtentUnchanged},
		{7*testCS + 100, 100, ExtentData},
		{7*testCS + 200, int64(size) - 7*testCS - 200 - 1, ExtentUnchanged},
		{int64(size) - 1, 1, ExtentData},
	}
	cr := &countingReader{r: bytes.NewReader(cur)}
	m2, st := writePoint(t, r, DiskSource{Reader: cr, Size: int64(size), Extents: exts, Parent: parent})
	wantRead := int64(testCS + testCS + 777)
	if cr.n.Load() != wantRead || st.BytesRead != wantRead {
		t.Errorf("incremental read %d bytes (stats %d), want %d", cr.n.Load(), st.BytesRead, wantRead)
	}
	if st.ChunksNew != 3 {
		t.Errorf("new chunks %d, want 3", st.ChunksNew)
	}
	readBack(t, r, m2.ID, cur)
	readBack(t, r, m1.ID, base)
	// Deleting the parent never breaks the child (and gc keeps its chunks).
	if err := r.DeletePoint(ctx, m1.ID); err != nil {
		t.Fatal(err)
	}
	rep, err := r.GC(ctx, GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.DeletedChunks != 3 || rep.Deferred {
		t.Errorf("gc deleted %d chunks (deferred %v), want the 3 chunks only the parent used", rep.DeletedChunks, rep.Deferred)
	}
	readBack(t, r, m2.ID, cur)
	if v, err := r.Verify(ctx, VerifyOptions{ReadData: true}); err != nil || !v.OK() {
		t.Fatalf("verify after gc: %v %+v", err, v)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, true)
	if _, err := Open(ctx, be, "wrong", OpenOptions{}); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong password: got %v", err)
	}
	if _, err := Init(ctx, be, InitOptions{Password: "x", Encrypt: true, KDF: cheapKDF}); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("init twice: got %v", err)
	}
	r2, err := Open(ctx, be, "secret", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Config().ID != r.Config().ID || !r2.Config().Encrypted || r2.Config().ChunkSize != testCS {
		t.Errorf("config after open: %+v", r2.Config())
	}
	// A newer format is refused with a clear message.
	raw, _ := be.Get(ctx, configName)
	var cfg map[string]any
	_ = json.Unmarshal(raw, &cfg)
	cfg["version"] = MaxReadVersion + 1
	raw, _ = json.Marshal(cfg)
	_ = be.Put(ctx, configName, raw)
	_, err = Open(ctx, be, "secret", OpenOptions{})
	if !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), fmt.Sprintf("format version %d, this kura reads up to %d", MaxReadVersion+1, MaxReadVersion)) {
		t.Errorf("newer format: got %v", err)
	}
	_ = be.Delete(ctx, configName)
	if _, err := Open(ctx, be, "secret", OpenOptions{}); !errors.Is(err, ErrNotRepository) {
		t.Errorf("no config: got %v", err)
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	r, be := newTestRepo(t, true)
	m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(testImage(4, 3*testCS)), Size: 3 * testCS})
	ks, _ := r.Keys(ctx)
	if len(ks) != 1 || !ks[0].Current {
		t.Fatalf("keys: %+v", ks)
	}
	if err := r.RemoveKey(ctx, ks[0].ID); !errors.Is(err, ErrKeyInUse) {
		t.Errorf("removing the only key: %v", err)
	}
	id2, err := r.AddKey(ctx, "second")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ChangePassword(ctx, "third"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, be, "secret", OpenOptions{}); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("old password still opens: %v", err)
	}
	for _, pw := range []string{"second", "third"} {
		if _, err := Open(ctx, be, pw, OpenOptions{}); err != nil {
			t.Errorf("open with %q: %v", pw, err)
		}
	}
	if err := r.RemoveKey(ctx, id2); err != nil {
		t.Errorf("remove other key: %v", err)
	}
	exp, err := r.ExportMasterKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r3, err := OpenWithMasterKey(ctx, be, exp, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	readBack(t, r3, m.ID, testImage(4, 3*testCS))
}

func TestPointLookup(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, false)
	img := testImage(5, testCS)
	m1, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: testCS})
	m2, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: testCS})
	ps, err := r.ListPoints(ctx)
	if err != nil || len(ps) != 2 {
		t.Fatalf("list: %v %d", err, len(ps))
	}
	if got, err := r.LoadPoint(ctx, m2.ID[:20]); err != nil || got.ID != m2.ID {
		t.Errorf("prefix lookup: %v", err)
	}
	common := 0
	for common < len(m1.ID) && m1.ID[common] == m2.ID[common] {
		common++
	}
	if _, err := r.LoadPoint(ctx, m1.ID[:common]); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if _, err := r.LoadPoint(ctx, "19990101"); !errors.Is(err, ErrPointNotFound) {
		t.Errorf("unknown point: %v", err)
	}
	if _, err := r.LoadPoint(ctx, "19990101T000000Z-0123abcd"); !errors.Is(err, ErrPointNotFound) {
		t.Errorf("unknown whole id: %v", err)
	}
	if got, err := r.LoadPoint(ctx, strings.ToUpper(m2.ID)); err != nil || got.ID != m2.ID {
		t.Errorf("whole id in upper case: %v", err)
	}
}

// Holes that were already holes in the parent are never read: a window of
// unchanged data and unchanged holes is reused, and in a changed window
// only the changed bytes and the unchanged data are read.
func TestUnchangedZerosAreNotRead(t *testing.T) {
	r, _ := newTestRepo(t, true)
	ctx := context.Background()
	size := 4 * testCS
	base := randomBytes(5, size)
	clear(base[testCS/2 : testCS])            // a hole in window 0
	clear(base[2*testCS : 2*testCS+testCS/2]) // a hole in window 2
	m1, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(base), Size: int64(size)})
	parent, err := r.LoadIndex(ctx, m1.Disks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	cur := bytes.Clone(base)
	copy(cur[2*testCS+testCS/2:3*testCS], randomBytes(6, testCS/2)) // window 2's data half changes
	exts := []Extent{
		{0, testCS / 2, ExtentUnchanged},
		{testCS / 2, testCS / 2, ExtentUnchangedZero},
		{testCS, testCS, ExtentUnchanged},
		{2 * testCS, testCS / 2, ExtentUnchangedZero},
		{2*testCS + testCS/2, testCS / 2, ExtentData},
		{3 * testCS, testCS, ExtentUnchanged},
	}
	cr := &countingReader{r: bytes.NewReader(cur)}
	m2, st := writePoint(t, r, DiskSource{Reader: cr, Size: int64(size), Extents: exts, Parent: parent})
	if want := int64(testCS / 2); cr.n.Load() != want || st.BytesRead != want {
		t.Errorf("read %d bytes (stats %d), want only the %d changed bytes", cr.n.Load(), st.BytesRead, want)
	}
	if st.ChunksReused != 3 || st.ChunksNew != 1 {
		t.Errorf("reused %d, new %d chunks; want 3 and 1", st.ChunksReused, st.ChunksNew)
	}
	readBack(t, r, m2.ID, cur)
	// Without a parent the same extents mean: read the data, zero the holes.
	cr = &countingReader{r: bytes.NewReader(cur)}
	m3, _ := writePoint(t, r, DiskSource{Reader: cr, Size: int64(size), Extents: exts})
	if want := int64(size - testCS); cr.n.Load() != want {
		t.Errorf("without a parent read %d bytes, want %d (all but the holes)", cr.n.Load(), want)
	}
	readBack(t, r, m3.ID, cur)
}

// A 1 TiB disk with 1 MiB of data is written and read without touching its
// holes: only the data is read, the index stays small, and reads of holes
// come back as zeros.
func TestHugeSparseDisk(t *testing.T) {
	ctx := context.Background()
	r, err := Init(ctx, mem.New(), InitOptions{Password: "p", Encrypt: true, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const size = int64(1) << 40
	off := size / 2
	data := randomBytes(9, 1<<20)
	src := &sparseReader{off: off, data: data}
	exts := []Extent{{0, off, ExtentZero}, {off, int64(len(data)), ExtentData}, {off + int64(len(data)), size - off - int64(len(data)), ExtentZero}}
	cr := &countingReader{r: src}
	m, st := writePoint(t, r, DiskSource{Reader: cr, Size: size, Extents: exts})
	if cr.n.Load() != int64(len(data)) || st.ChunksNew == 0 {
		t.Fatalf("read %d bytes, %d new chunks; want only the %d data bytes", cr.n.Load(), st.ChunksNew, len(data))
	}
	x, err := r.LoadIndex(ctx, m.Disks[0].Index)
	if err != nil || len(x.Digests) != int(size/(4<<20)) {
		t.Fatalf("index of a 1 TiB disk: %v", err)
	}
	dr, err := r.OpenDisk(ctx, m.Disks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	got := make([]byte, len(data)+4096)
	if _, err := dr.ReadAt(got, off-4096); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:4096], make([]byte, 4096)) || !bytes.Equal(got[4096:], data) {
		t.Fatal("data of a huge sparse disk does not read back")
	}
}

// sparseReader reads as zeros except data at off.
type sparseReader struct {
	off  int64
	data []byte
}

func (s *sparseReader) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	if lo, hi := max(off, s.off), min(off+int64(len(p)), s.off+int64(len(s.data))); lo < hi {
		copy(p[lo-off:hi-off], s.data[lo-s.off:hi-s.off])
	}
	return len(p), nil
}
