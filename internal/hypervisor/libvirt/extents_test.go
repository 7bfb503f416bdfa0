package libvirt

import (
	"slices"
	"testing"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/nbd"
)

func ne(off, n int64, f uint32) nbd.Extent { return nbd.Extent{Offset: off, Length: n, Flags: f} }

func he(off, n int64, k hypervisor.ExtentKind) hypervisor.Extent {
	return hypervisor.Extent{Offset: off, Length: n, Kind: k}
}

func TestBuildExtents(t *testing.T) {
	const M = 1 << 20
	alloc := []nbd.Extent{ne(0, 2*M, 0), ne(2*M, 2*M, nbd.StateHole|nbd.StateZero), ne(4*M, 4*M, 0)}
	dirty := []nbd.Extent{ne(0, M, 0), ne(M, 2*M, nbd.StateDirty), ne(3*M, 3*M, 0), ne(6*M, 2*M, nbd.StateDirty)}
	got, err := buildExtents(8*M, alloc, dirty, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []hypervisor.Extent{
		he(0, M, hypervisor.ExtentUnchanged), he(M, M, hypervisor.ExtentData), he(2*M, M, hypervisor.ExtentZero),
		he(3*M, M, hypervisor.ExtentUnchangedZero), he(4*M, 2*M, hypervisor.ExtentUnchanged), he(6*M, 2*M, hypervisor.ExtentData)}
	if !slices.Equal(got, want) {
		t.Errorf("incremental:\n got %v\nwant %v", got, want)
	}
	got, _ = buildExtents(8*M, alloc, nil, false)
	want = []hypervisor.Extent{he(0, 2*M, hypervisor.ExtentData), he(2*M, 2*M, hypervisor.ExtentZero), he(4*M, 4*M, hypervisor.ExtentData)}
	if !slices.Equal(got, want) {
		t.Errorf("full:\n got %v\nwant %v", got, want)
	}
	// A hole without the zero flag may not read as zeros: data. A short
	// map is completed as data.
	got, _ = buildExtents(4*M, []nbd.Extent{ne(0, M, nbd.StateHole)}, nil, false)
	if want := []hypervisor.Extent{he(0, 4*M, hypervisor.ExtentData)}; !slices.Equal(got, want) {
		t.Errorf("hole/short: got %v want %v", got, want)
	}
	for _, bad := range [][]nbd.Extent{{ne(M, M, 0)}, {ne(0, 0, 0)}, {ne(0, 9*M, 0)}} {
		if _, err := buildExtents(8*M, bad, nil, false); err == nil {
			t.Errorf("bad map %v accepted", bad)
		}
	}
}

func FuzzBuildExtents(f *testing.F) {
	f.Add(int64(1<<20), []byte{1, 0, 2, 3, 4, 1}, []byte{2, 1, 3, 0})
	f.Fuzz(func(t *testing.T, size int64, a, d []byte) {
		if size <= 0 || size > 1<<40 {
			return
		}
		mk := func(b []byte) []nbd.Extent {
			var m []nbd.Extent
			var pos int64
			for i := 0; i+1 < len(b) && pos < size; i += 2 {
				n := min((int64(b[i])+1)*4096, size-pos)
				m = append(m, nbd.Extent{Offset: pos, Length: n, Flags: uint32(b[i+1] & 3)})
				pos += n
			}
			return m
		}
		ext, err := buildExtents(size, mk(a), mk(d), true)
		if err != nil {
			t.Fatal(err)
		}
		var pos int64
		for i, e := range ext {
			if e.Offset != pos || e.Length <= 0 || (i > 0 && ext[i-1].Kind == e.Kind) {
				t.Fatalf("bad extent %d %v", i, e)
			}
			pos += e.Length
		}
		if pos != size {
			t.Fatalf("covers %d of %d", pos, size)
		}
	})
}
