package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage/local"
)

// The repositories in testdata/vN were written by format version N (v2
// with S2 chunks, v3 with S2 chunks and BLAKE3 ids). Every future kura must open them and read their point
// back byte for byte. Write only the fixture of a new format version, into
// a new directory, never an existing one again:
// KURA_WRITE_FIXTURE=N go test -run TestFixtures ./internal/repo/
const fixturePassword = "kura fixture v1"

// fixtureImage is defined here, self-contained, so it never changes: text
// lines, a zero hole, pseudo-random bytes, and an odd tail.
func fixtureImage() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 100_000; i++ {
		fmt.Fprintf(&b, "line %d of the kura format fixture\n", i)
	}
	b.Write(make([]byte, 140_000))
	for i := 0; b.Len() < 300_000; i++ {
		s := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		b.Write(s[:])
	}
	b.WriteString("tail")
	return b.Bytes()
}

func TestFixtures(t *testing.T) {
	for _, v := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) { testFixture(t, v) })
	}
}

func testFixture(t *testing.T, version int) {
	ctx := context.Background()
	want := fixtureImage()
	for _, kind := range []string{"encrypted", "plain"} {
		dir := filepath.Join("testdata", fmt.Sprintf("v%d", version), kind)
		if os.Getenv("KURA_WRITE_FIXTURE") == fmt.Sprint(version) {
			writeFixture(t, dir, version, kind == "encrypted", want)
		}
		be, err := local.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Open(ctx, be, fixturePassword, OpenOptions{})
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if version >= 2 && countComp(t, be, compS2) == 0 {
			t.Errorf("%s: no s2 chunk in the version %d fixture", kind, version)
		}
		if c := r.Config(); c.Version != version || c.ChunkSize != 64<<10 || c.Encrypted != (kind == "encrypted") ||
			(c.ChunkID == "blake3") != (version == 3) {
			t.Errorf("%s config: %+v", kind, c)
		}
		ps, err := r.ListPoints(ctx)
		if err != nil || len(ps) != 1 {
			t.Fatalf("%s points: %v %d", kind, err, len(ps))
		}
		m := ps[0]
		if m.VM.Name != "fixture-vm" || m.Disks[0].Target != "vda" || string(m.Config) != "<domain/>" {
			t.Errorf("%s manifest: %+v", kind, m)
		}
		d, err := r.OpenDisk(ctx, m.Disks[0].Index)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(d, 0, d.Size()))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: read-back differs (err %v)", kind, err)
		}
		if v, err := r.Verify(ctx, VerifyOptions{ReadData: true}); err != nil || !v.OK() {
			t.Fatalf("%s verify: %v %+v", kind, err, v)
		}
	}
}

func writeFixture(t *testing.T, dir string, version int, encrypt bool, img []byte) {
	ctx := context.Background()
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(ctx, be, InitOptions{Password: fixturePassword, ChunkSize: 64 << 10, Encrypt: encrypt,
		KDF: KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}, Hostname: "fixture", Username: "kura", Version: version})
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.NewWriter(ctx, "fixture")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.SetCompression(CompressFastest)
	id, st, err := w.WriteDisk(ctx, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	m := &Manifest{ID: "20261121T120000Z-0f1e7a3e", VM: VMInfo{Name: "fixture-vm", UUID: "00000000-0000-4000-8000-000000000001", Hypervisor: "libvirt"},
		Config: []byte("<domain/>"), ConfigFormat: "libvirt-xml", Consistency: "crash", Kind: "full", Started: at, Finished: at.Add(time.Second),
		Disks: []DiskEntry{{Target: "vda", Source: "/var/lib/libvirt/images/fixture.qcow2", Format: "qcow2", Size: int64(len(img)), ChunkSize: 64 << 10, Index: id, Stats: st}},
		Stats: st}
	if err := w.Commit(ctx, m); err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(filepath.Join(dir, "tmp"))
}
