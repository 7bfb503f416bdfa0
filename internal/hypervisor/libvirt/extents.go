package libvirt

import (
	"fmt"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/nbd"
)

// buildExtents merges a base:allocation map and, when incremental, a
// dirty-bitmap map into a hypervisor extent map covering [0, size).
// With a bitmap, clean ranges are ExtentUnchanged, or ExtentUnchangedZero
// when they read as zeros; dirty ranges reading as zeros are ExtentZero;
// the rest is ExtentData. A map that does not reach the end of the disk is
// completed conservatively (allocated, dirty).
func buildExtents(size int64, alloc, dirty []nbd.Extent, incremental bool) ([]hypervisor.Extent, error) {
	if err := checkMap(alloc, size); err != nil {
		return nil, fmt.Errorf("base:allocation: %w", err)
	}
	if incremental {
		if err := checkMap(dirty, size); err != nil {
			return nil, fmt.Errorf("dirty bitmap: %w", err)
		}
	}
	var out []hypervisor.Extent
	var ai, di int
	for pos := int64(0); pos < size; {
		end := size
		zero, changed := false, true
		for ai < len(alloc) && alloc[ai].Offset+alloc[ai].Length <= pos {
			ai++
		}
		if ai < len(alloc) {
			a := alloc[ai]
			zero = a.Flags&nbd.StateZero != 0
			end = min(end, a.Offset+a.Length)
		}
		if incremental {
			for di < len(dirty) && dirty[di].Offset+dirty[di].Length <= pos {
				di++
			}
			if di < len(dirty) {
				d := dirty[di]
				changed = d.Flags&nbd.StateDirty != 0
				end = min(end, d.Offset+d.Length)
			}
		}
		// Clean ranges are Unchanged (UnchangedZero when they read as
		// zeros): a window made only of them is reused from the previous
		// point without reading. Dirty ranges that now read as zeros are
		// Zero. Neither kind of zero is ever read.
		kind := hypervisor.ExtentData
		switch {
		case !changed && zero:
			kind = hypervisor.ExtentUnchangedZero
		case !changed:
			kind = hypervisor.ExtentUnchanged
		case zero:
			kind = hypervisor.ExtentZero
		}
		out = appendExtent(out, pos, end-pos, kind)
		pos = end
	}
	return out, nil
}

// checkMap verifies a map is sorted, contiguous from 0 and within size.
func checkMap(m []nbd.Extent, size int64) error {
	var pos int64
	for i, e := range m {
		if e.Offset != pos || e.Length <= 0 || e.Offset+e.Length > size {
			return fmt.Errorf("extent %d (%d+%d) is not contiguous within %d bytes", i, e.Offset, e.Length, size)
		}
		pos += e.Length
	}
	return nil
}

func appendExtent(ext []hypervisor.Extent, off, n int64, k hypervisor.ExtentKind) []hypervisor.Extent {
	if l := len(ext); l > 0 && ext[l-1].Kind == k && ext[l-1].Offset+ext[l-1].Length == off {
		ext[l-1].Length += n
		return ext
	}
	return append(ext, hypervisor.Extent{Offset: off, Length: n, Kind: k})
}
