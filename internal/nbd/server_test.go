package nbd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testExport is 40 MiB in 1 MiB blocks: data blocks where i%3 != 1, a hole
// run in the middle and a short last block.
func testExport() *memExport {
	return newMemExport(40<<20+12288, 1<<20, func(i int64) bool { return i%3 != 1 && (i < 20 || i > 27) })
}

func TestServerWithOwnClient(t *testing.T) {
	m := testExport()
	sock, srv, _ := serveTest(t, map[string]Export{"vda": m})
	c := dialTest(t, sock, Options{Export: "vda", MetaContexts: []string{"base:allocation", "qemu:dirty-bitmap:x"}})
	if c.Size() != m.Size() || !c.ReadOnly() || !c.CanMultiConn() {
		t.Fatalf("size %d read-only %v multi-conn %v", c.Size(), c.ReadOnly(), c.CanMultiConn())
	}
	if mn, pref, mx := c.BlockSizes(); mn != 1 || pref != 4096 || mx != maxServerBlock {
		t.Fatalf("block sizes %d %d %d", mn, pref, mx)
	}
	if got := c.MetaContexts(); len(got) != 1 || got[0] != "base:allocation" {
		t.Fatalf("meta contexts %v", got)
	}
	ctx := context.Background()
	if got := readAll(t, c); !bytes.Equal(got, m.data) {
		t.Fatal("contents differ")
	}
	am, err := c.Map(ctx, "base:allocation")
	if err != nil {
		t.Fatal(err)
	}
	sameExtents(t, am, m.wantMap())
	// One request describes at most what was asked.
	exts, err := c.BlockStatus(ctx, "base:allocation", 1<<20+5, 100)
	if err != nil || len(exts) != 1 || exts[0] != (Extent{1<<20 + 5, 100, StateHole | StateZero}) {
		t.Fatalf("block status: %v %v", exts, err)
	}
	// Unaligned reads across data and holes.
	buf := make([]byte, 3<<20+77)
	if _, err := c.ReadAt(buf, 1<<20-33); err != nil || !bytes.Equal(buf, m.data[1<<20-33:4<<20+44]) {
		t.Fatalf("unaligned read: %v", err)
	}
	if err := c.WriteAt(ctx, []byte{1}, 0); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("write to a read-only export: %v", err)
	}
	st := srv.Stats()["vda"]
	if st.Connections != 1 || st.BytesRead == 0 || st.BytesHoles == 0 || st.Reads == 0 {
		t.Fatalf("stats %+v", st)
	}
	// Several connections read concurrently.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cw := dialTest(t, sock, Options{Export: "vda"})
			p := make([]byte, 5<<20)
			off := int64(w) * 7 << 20
			if _, err := cw.ReadAt(p, off); err != nil || !bytes.Equal(p, m.data[off:off+int64(len(p))]) {
				t.Errorf("connection %d: %v", w, err)
			}
		}()
	}
	wg.Wait()
}

func TestServerReadErrors(t *testing.T) {
	m := testExport()
	sock, _, _ := serveTest(t, map[string]Export{"": m})
	c := dialTest(t, sock, Options{})
	m.fail.Store(2<<20 + 10)
	buf := make([]byte, 1<<20)
	_, err := c.ReadAt(buf, 2<<20)
	var se *ServerError
	if !errors.As(err, &se) || !errors.Is(err, syscall.EIO) || !strings.Contains(se.Message, "injected") {
		t.Fatalf("read of a failing range: %v", err)
	}
	m.fail.Store(0)
	// The connection survives an error answer.
	if _, err := c.ReadAt(buf, 2<<20); err != nil || !bytes.Equal(buf, m.data[2<<20:3<<20]) {
		t.Fatalf("read after an error: %v", err)
	}
	// An unknown export is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Dial(ctx, "unix", sock, Options{Export: "nope"}); !errors.Is(err, ErrServer) {
		t.Fatalf("unknown export: %v", err)
	}
}

func TestServerNbdinfo(t *testing.T) {
	needTool(t, "nbdinfo")
	m := testExport()
	small := newMemExport(1<<20, 1<<20, func(int64) bool { return true })
	sock, _, _ := serveTest(t, map[string]Export{"vda": m, "vdb": small})
	uri := "nbd+unix:///vda?socket=" + sock
	var info struct {
		Exports []struct {
			Name      string `json:"export-name"`
			Desc      string `json:"description"`
			Size      int64  `json:"export-size"`
			ReadOnly  bool   `json:"is_read_only"`
			MultiConn bool   `json:"can_multi_conn"`
			Contexts  []string
			MaxBlock  int64 `json:"block_size_maximum"`
		} `json:"exports"`
	}
	if err := json.Unmarshal(run(t, "nbdinfo", "--json", uri), &info); err != nil || len(info.Exports) != 1 {
		t.Fatalf("nbdinfo: %v %+v", err, info)
	}
	e := info.Exports[0]
	if e.Size != m.Size() || !e.ReadOnly || !e.MultiConn || e.MaxBlock != maxServerBlock || e.Desc != "export vda" {
		t.Fatalf("nbdinfo reports %+v", e)
	}
	sameExtents(t, nbdinfoMapExport(t, sock, "vda", "base:allocation"), m.wantMap())
	list := string(run(t, "nbdinfo", "--list", "--json", "nbd+unix:///?socket="+sock))
	if !strings.Contains(list, `"vda"`) || !strings.Contains(list, `"vdb"`) || !strings.Contains(list, "export vdb") {
		t.Fatalf("nbdinfo --list: %s", list)
	}
}

func TestServerNbdcopy(t *testing.T) {
	needTool(t, "nbdcopy")
	m := testExport()
	sock, _, _ := serveTest(t, map[string]Export{"": m})
	for _, conns := range []string{"1", "4"} {
		out := filepath.Join(t.TempDir(), "copy.raw")
		run(t, "nbdcopy", "--connections="+conns, "nbd+unix:///?socket="+sock, out)
		got, err := os.ReadFile(out)
		if err != nil || !bytes.Equal(got, m.data) {
			t.Fatalf("nbdcopy with %s connections: copy differs (%v)", conns, err)
		}
	}
}

func TestServerQemu(t *testing.T) {
	needTool(t, "qemu-img")
	needTool(t, "qemu-io")
	m := testExport()
	sock, _, _ := serveTest(t, map[string]Export{"vda": m})
	uri := "nbd+unix:///vda?socket=" + sock
	raw := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(raw, m.data, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", raw, uri)
	// qemu sees the holes as zero, unallocated ranges.
	var rows []struct {
		Start  int64 `json:"start"`
		Length int64 `json:"length"`
		Zero   bool  `json:"zero"`
		Data   bool  `json:"data"`
	}
	if err := json.Unmarshal(run(t, "qemu-img", "map", "--output=json", "-f", "raw", uri), &rows); err != nil {
		t.Fatal(err)
	}
	var got []Extent
	for _, r := range rows {
		fl := uint32(0)
		if r.Zero && !r.Data {
			fl = StateHole | StateZero
		}
		if n := len(got); n > 0 && got[n-1].Flags == fl {
			got[n-1].Length += r.Length
		} else {
			got = append(got, Extent{r.Start, r.Length, fl})
		}
	}
	sameExtents(t, got, m.wantMap())
	// A qcow2 overlay whose backing is the export: writes land in the
	// overlay, reads of the rest come from the export.
	ov := filepath.Join(t.TempDir(), "ov.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", uri, "-F", "raw", ov)
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x77 1M 64K", ov)
	want := bytes.Clone(m.data)
	copy(want[1<<20:], bytes.Repeat([]byte{0x77}, 64<<10))
	flat := filepath.Join(t.TempDir(), "flat.raw")
	run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", ov, flat)
	if got, err := os.ReadFile(flat); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("overlay on the export reads wrong (%v)", err)
	}
	run(t, "qemu-io", "-r", "-f", "raw", "-c", "read -P 0 1M 64K", uri) // export unchanged
}

// TestServerRestart stops the server while QEMU reads through it and
// starts a new one on the same socket: QEMU's requests wait, reconnect and
// complete.
func TestServerRestart(t *testing.T) {
	needTool(t, "qemu-io")
	m := testExport()
	sock, srv, stop := serveTest(t, map[string]Export{"vda": m})
	go func() {
		time.Sleep(1500 * time.Millisecond)
		stop()
		time.Sleep(1500 * time.Millisecond)
		startOn(t, srv, sock)
	}()
	out := run(t, "qemu-io", "-r", "--image-opts",
		"driver=nbd,server.type=unix,server.path="+sock+",export=vda,reconnect-delay=30",
		"-c", "read -P 0 1M 1M", "-c", "sleep 2000", "-c", "read -v 0 16", "-c", "sleep 2000", "-c", "read -P 0 4M 1M")
	if bytes.Contains(out, []byte("failed")) {
		t.Fatalf("qemu-io across a server restart: %s", out)
	}
}
