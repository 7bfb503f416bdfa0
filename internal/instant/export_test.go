package instant

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/nbd"
	"github.com/kurabackup/kura/internal/testenv"
)

func TestDiskExportServesThePoint(t *testing.T) {
	r := memRepo(t)
	img := mixedImage(42<<20 + 4096) // 11 chunks, every third all zeros, a short last one
	m := writeDisk(t, r, img)
	sock, srv := serveDisk(t, r, m)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := nbd.Dial(ctx, "unix", sock, nbd.Options{Export: "vda", MetaContexts: []string{"base:allocation"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make([]byte, len(img))
	if _, err := c.ReadAt(got, 0); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("contents differ (%v)", err)
	}
	exts, err := c.Map(ctx, "base:allocation")
	if err != nil {
		t.Fatal(err)
	}
	// The zero chunks (2, 5, 8) are holes that read as zeros; the rest is data.
	const cs = 4 << 20
	ext := func(off, n int64, fl uint32) nbd.Extent { return nbd.Extent{Offset: off, Length: n, Flags: fl} }
	want := []nbd.Extent{ext(0, 2*cs, 0), ext(2*cs, cs, 3), ext(3*cs, 2*cs, 0), ext(5*cs, cs, 3), ext(6*cs, 2*cs, 0),
		ext(8*cs, cs, 3), ext(9*cs, int64(len(img))-9*cs, 0)}
	if len(exts) != len(want) {
		t.Fatalf("map %v, want %v", exts, want)
	}
	for i := range want {
		if exts[i] != want[i] {
			t.Fatalf("extent %d: %+v, want %+v", i, exts[i], want[i])
		}
	}
	if st := srv.Stats()["vda"]; st.BytesHoles != 3*cs || st.BytesRead != int64(len(img))-3*cs {
		t.Fatalf("stats %+v: holes must cost nothing", st)
	}
	// Reference clients: nbdinfo's map and nbdcopy's copy (which skips holes).
	testenv.NeedTool(t, "nbdinfo")
	testenv.NeedTool(t, "nbdcopy")
	out, err := exec.Command("nbdinfo", "--map", "--json", "nbd+unix:///vda?socket="+sock).Output()
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct{ Offset, Length int64 }
	if err := json.Unmarshal(out, &rows); err != nil || len(rows) != len(want) {
		t.Fatalf("nbdinfo --map: %s (%v)", out, err)
	}
	dst := filepath.Join(t.TempDir(), "copy.raw")
	if out, err := exec.Command("nbdcopy", "nbd+unix:///vda?socket="+sock, dst).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy: %v %s", err, out)
	}
	if b, err := os.ReadFile(dst); err != nil || !bytes.Equal(b, img) {
		t.Fatalf("nbdcopy's copy differs (%v)", err)
	}
}

func TestSequentialStreams(t *testing.T) {
	e := &diskExport{cs: 4 << 20}
	for i := range e.ends {
		e.ends[i] = -1
	}
	const mib = 1 << 20
	// Two interleaved streams and a random read.
	steps := []struct {
		off, n int64
		seq    bool
	}{{0, mib, false}, {100 * mib, mib, false}, {mib, mib, true}, {101 * mib, 2 * mib, true},
		{2 * mib, mib, true}, {50 * mib, 4096, false}, {103 * mib, mib, true}, {3*mib + 512<<10, mib, true}}
	for i, s := range steps {
		if got := e.sequential(s.off, s.n); got != s.seq {
			t.Errorf("step %d (%d+%d): sequential %v, want %v", i, s.off, s.n, got, s.seq)
		}
	}
}
