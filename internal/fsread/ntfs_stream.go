package fsread

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync"
)

// ntfsStream reads an attribute's value: resident bytes, or clusters
// through its runlist (holes and bytes past the initialized size read as
// zeros), decompressing LZNT1 compression units when compressed.
type ntfsStream struct {
	r        io.ReaderAt
	cs       int64 // cluster size
	resident []byte
	runs     []ntfsRun
	size     int64
	init     int64
	cuSize   int64 // bytes per compression unit; 0 = not compressed
	vols     int64 // volume size, bounds cluster numbers

	mu    sync.Mutex
	cuOff int64 // offset of the cached decompressed unit, -1 none
	cu    []byte
}

func newNTFSStream(r io.ReaderAt, cs, volSize int64, a *ntfsAttr) (*ntfsStream, error) {
	s := &ntfsStream{r: r, cs: cs, size: a.dataSize, init: min(a.initSize, a.dataSize), vols: volSize, cuOff: -1}
	if a.resident {
		s.resident = a.value
		return s, nil
	}
	if a.flags&ntfsFlagEncrypted != 0 {
		return nil, fmt.Errorf("encrypted (EFS) data: %w", ErrNotRegular)
	}
	s.runs = a.runs
	if a.flags&ntfsFlagCompressed != 0 && a.cuShift > 0 {
		s.cuSize = cs << a.cuShift
	}
	for _, r := range s.runs {
		if r.lcn >= 0 && (r.lcn+r.n)*cs > volSize {
			return nil, fmt.Errorf("ntfs run %d+%d beyond the volume: %w", r.lcn, r.n, ErrCorrupt)
		}
	}
	return s, nil
}

// run finds the run holding vcn; ok is false past the runlist.
func (s *ntfsStream) run(vcn int64) (ntfsRun, bool) {
	i := sort.Search(len(s.runs), func(i int) bool { return s.runs[i].vcn+s.runs[i].n > vcn })
	if i == len(s.runs) || s.runs[i].vcn > vcn {
		return ntfsRun{}, false
	}
	return s.runs[i], true
}

func (s *ntfsStream) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if off >= s.size {
		return 0, io.EOF
	}
	want := len(p)
	if rem := s.size - off; int64(want) > rem {
		want = int(rem)
	}
	var err error
	switch {
	case s.resident != nil || s.runs == nil:
		n := 0
		if off < int64(len(s.resident)) {
			n = copy(p[:want], s.resident[off:])
		}
		clear(p[n:want])
	case s.cuSize > 0:
		err = s.readCompressed(p[:want], off)
	default:
		err = s.readPlain(p[:want], off)
	}
	if err != nil {
		return 0, err
	}
	// Bytes past the initialized size read as zeros.
	if end := off + int64(want); end > s.init {
		from := max(s.init-off, 0)
		clear(p[from:want])
	}
	if want < len(p) {
		return want, io.EOF
	}
	return want, nil
}

func (s *ntfsStream) readPlain(p []byte, off int64) error {
	for done := 0; done < len(p); {
		pos := off + int64(done)
		vcn := pos / s.cs
		r, ok := s.run(vcn)
		n := len(p) - done
		if !ok || r.lcn < 0 {
			if ok {
				n = int(min(int64(n), (r.vcn+r.n)*s.cs-pos))
			}
			clear(p[done : done+n])
			done += n
			continue
		}
		n = int(min(int64(n), (r.vcn+r.n)*s.cs-pos))
		phys := (r.lcn+vcn-r.vcn)*s.cs + pos%s.cs
		if _, err := s.r.ReadAt(p[done:done+n], phys); err != nil && err != io.EOF {
			return fmt.Errorf("read cluster %d: %w", phys/s.cs, err)
		}
		done += n
	}
	return nil
}

func (s *ntfsStream) readCompressed(p []byte, off int64) error {
	for done := 0; done < len(p); {
		pos := off + int64(done)
		cuStart := pos - pos%s.cuSize
		cu, err := s.unit(cuStart)
		if err != nil {
			return err
		}
		done += copy(p[done:], cu[pos-cuStart:])
	}
	return nil
}

// unit returns the decoded compression unit at byte offset start.
func (s *ntfsStream) unit(start int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cuOff == start {
		return s.cu, nil
	}
	clusters := s.cuSize / s.cs
	first := start / s.cs
	var alloc []ntfsRun // allocated clusters of this unit, in order
	allocated := int64(0)
	for vcn := first; vcn < first+clusters; {
		r, ok := s.run(vcn)
		if !ok {
			break
		}
		n := min(r.vcn+r.n, first+clusters) - vcn
		if r.lcn >= 0 {
			alloc = append(alloc, ntfsRun{vcn: vcn, lcn: r.lcn + vcn - r.vcn, n: n})
			allocated += n
		}
		vcn += n
	}
	buf := make([]byte, s.cuSize)
	if allocated > 0 {
		raw := make([]byte, allocated*s.cs)
		o := 0
		for _, a := range alloc {
			if _, err := s.r.ReadAt(raw[o:o+int(a.n*s.cs)], a.lcn*s.cs); err != nil && err != io.EOF {
				return nil, fmt.Errorf("read cluster %d: %w", a.lcn, err)
			}
			o += int(a.n * s.cs)
		}
		if allocated == clusters {
			copy(buf, raw) // stored uncompressed
		} else if err := lznt1(buf, raw); err != nil {
			return nil, err
		}
	}
	s.cuOff, s.cu = start, buf
	return buf, nil
}

// extents lists the stream's stored runs; compressed units are not
// plain copies (Phys -1).
func (s *ntfsStream) extents() []Extent {
	if s.size == 0 {
		return nil
	}
	if s.resident != nil {
		return []Extent{{Off: 0, Len: s.size, Phys: -1}}
	}
	var out []Extent
	add := func(off, l, phys int64) {
		if off >= s.size {
			return
		}
		l = min(l, s.size-off)
		if k := len(out) - 1; k >= 0 && out[k].Off+out[k].Len == off &&
			((phys < 0 && out[k].Phys < 0) || (phys >= 0 && out[k].Phys+out[k].Len == phys)) {
			out[k].Len += l
			return
		}
		out = append(out, Extent{Off: off, Len: l, Phys: phys})
	}
	if s.cuSize > 0 {
		clusters := s.cuSize / s.cs
		for cu := int64(0); cu*s.cuSize < s.size; cu++ {
			for vcn := cu * clusters; vcn < (cu+1)*clusters; vcn++ {
				r, ok := s.run(vcn)
				if !ok {
					break
				}
				if r.lcn >= 0 {
					add(cu*s.cuSize, s.cuSize, -1)
					break
				}
				vcn = min(r.vcn+r.n, (cu+1)*clusters) - 1
			}
		}
		return out
	}
	for _, r := range s.runs {
		if r.lcn >= 0 {
			add(r.vcn*s.cs, r.n*s.cs, r.lcn*s.cs)
		}
	}
	return out
}

// lznt1 decompresses one compression unit (a sequence of sub-blocks of
// up to 4 KiB of output) into dst; dst's remainder is zeroed.
func lznt1(dst, src []byte) error {
	const sb = 4096
	le := binary.LittleEndian
	out := 0
	for p := 0; p+2 <= len(src) && out < len(dst); {
		h := int(le.Uint16(src[p:]))
		if h == 0 {
			break
		}
		end := p + 3 + h&0xFFF
		if end > len(src) || out+sb > len(dst) {
			return fmt.Errorf("lznt1 sub-block overflows: %w", ErrCorrupt)
		}
		block := src[p+2 : end]
		p = end
		if h&0x8000 == 0 {
			if len(block) != sb {
				return fmt.Errorf("lznt1 uncompressed sub-block of %d bytes: %w", len(block), ErrCorrupt)
			}
			out += copy(dst[out:], block)
			continue
		}
		start := out
		for q := 0; q < len(block); {
			tag := block[q]
			q++
			for bit := 0; bit < 8 && q < len(block); bit++ {
				if tag&(1<<bit) == 0 {
					if out >= start+sb {
						return fmt.Errorf("lznt1 literal overflows: %w", ErrCorrupt)
					}
					dst[out] = block[q]
					out++
					q++
					continue
				}
				if q+2 > len(block) || out == start {
					return fmt.Errorf("lznt1 phrase token: %w", ErrCorrupt)
				}
				tok := int(le.Uint16(block[q:]))
				q += 2
				lg := 0
				for i := out - start - 1; i >= 0x10; i >>= 1 {
					lg++
				}
				back := (tok >> (12 - lg)) + 1
				length := (tok & (0xFFF >> lg)) + 3
				if out-back < start || out+length > start+sb {
					return fmt.Errorf("lznt1 phrase out of range: %w", ErrCorrupt)
				}
				for k := 0; k < length; k++ {
					dst[out] = dst[out-back]
					out++
				}
			}
		}
		// A short sub-block stands for a full one: zeros follow.
		clear(dst[out : start+sb])
		out = start + sb
	}
	clear(dst[out:])
	return nil
}
