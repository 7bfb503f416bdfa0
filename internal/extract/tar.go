package extract

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kurabackup/kura/internal/fsread"
)

// TarSink writes a POSIX (pax) tar stream: ustar headers, with pax
// extended headers for long or non-ASCII names, large sizes and ids,
// nanosecond modification and access times, xattrs (SCHILY.xattr.*),
// POSIX ACLs (SCHILY.acl.*, as text) and sparse files (GNU sparse format
// 1.0, holes left out). GNU tar and bsdtar read it.
type TarSink struct {
	w       *bufio.Writer
	owners  bool
	written map[string]bool // names of entries written (hard-link targets)
	notes   []Note
}

// NewTarSink writes a tar stream to w.
func NewTarSink(w io.Writer, opt Options) *TarSink {
	return &TarSink{w: bufio.NewWriterSize(w, 1<<20), owners: !opt.NoOwner, written: map[string]bool{}}
}

const (
	tarBlock     = 512
	tarMaxOctal8 = 0o7777777     // 8-byte numeric fields
	tarMaxSize   = 0o77777777777 // 12-byte size field
	tarTypeReg   = '0'
	tarTypeLink  = '1'
	tarTypeSym   = '2'
	tarTypeChr   = '3'
	tarTypeBlk   = '4'
	tarTypeDir   = '5'
	tarTypeFIFO  = '6'
	tarTypePax   = 'x'
	tarSparseDir = "GNUSparseFile.0"
)

type tarHeader struct {
	name, link   string
	typ          byte
	size         int64
	major, minor uint32
	pax          map[string]string
}

func (s *TarSink) Dir(_ context.Context, it *Item) error {
	if it.Name == "" {
		return nil // the destination itself
	}
	return s.entry(it, tarHeader{name: it.Name + "/", typ: tarTypeDir})
}

func (s *TarSink) File(_ context.Context, it *Item, data *Data) error {
	var held int64
	for _, x := range data.Extents {
		held += x.Len
	}
	if held == data.Size || data.Size == 0 {
		if err := s.entry(it, tarHeader{name: it.Name, typ: tarTypeReg, size: data.Size}); err != nil {
			return err
		}
		if err := data.WriteDense(s.w); err != nil {
			return err
		}
		return s.pad(data.Size)
	}
	// Sparse (GNU 1.0): a map of the data regions, then their bytes.
	var m strings.Builder
	regions := len(data.Extents)
	last := data.Extents
	endsInHole := len(last) == 0 || last[len(last)-1].Off+last[len(last)-1].Len < data.Size
	if endsInHole {
		regions++
	}
	fmt.Fprintf(&m, "%d\n", regions)
	for _, x := range data.Extents {
		fmt.Fprintf(&m, "%d\n%d\n", x.Off, x.Len)
	}
	if endsInHole {
		fmt.Fprintf(&m, "%d\n0\n", data.Size)
	}
	mapLen := int64((m.Len() + tarBlock - 1) / tarBlock * tarBlock)
	h := tarHeader{name: path.Join(path.Dir(it.Name), tarSparseDir, path.Base(it.Name)), typ: tarTypeReg,
		size: mapLen + held, pax: map[string]string{
			"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
			"GNU.sparse.name": it.Name, "GNU.sparse.realsize": strconv.FormatInt(data.Size, 10)}}
	if err := s.entry(it, h); err != nil {
		return err
	}
	if _, err := io.WriteString(s.w, m.String()); err != nil {
		return err
	}
	if err := s.pad(int64(m.Len())); err != nil {
		return err
	}
	for {
		_, b, err := data.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if _, err := s.w.Write(b); err != nil {
			return err
		}
	}
	return s.pad(held)
}

func (s *TarSink) Symlink(_ context.Context, it *Item) error {
	return s.entry(it, tarHeader{name: it.Name, link: it.Target, typ: tarTypeSym})
}

func (s *TarSink) Special(_ context.Context, it *Item) (string, error) {
	h := tarHeader{name: it.Name, major: it.Major, minor: it.Minor}
	switch it.Type {
	case fsread.TypeFIFO:
		h.typ = tarTypeFIFO
	case fsread.TypeCharDev:
		h.typ = tarTypeChr
	case fsread.TypeBlockDev:
		h.typ = tarTypeBlk
	default:
		return "sockets cannot be stored in tar", nil
	}
	return "", s.entry(it, h)
}

func (s *TarSink) Link(_ context.Context, it *Item) (string, error) {
	if !s.written[it.LinkTo] {
		return "hard link to an entry not in the archive", nil
	}
	return "", s.entry(it, tarHeader{name: it.Name, link: it.LinkTo, typ: tarTypeLink})
}

// Close writes the end-of-archive blocks.
func (s *TarSink) Close(_ context.Context, rep *Report) error {
	rep.NotKept = append(rep.NotKept, s.notes...)
	if _, err := s.w.Write(make([]byte, 2*tarBlock)); err != nil {
		return err
	}
	return s.w.Flush()
}

func (s *TarSink) pad(n int64) error {
	if r := n % tarBlock; r != 0 {
		_, err := s.w.Write(make([]byte, tarBlock-r))
		return err
	}
	return nil
}

// entry writes the (pax and ustar) headers of an item.
func (s *TarSink) entry(it *Item, h tarHeader) error {
	s.written[it.Name] = true
	if h.pax == nil {
		h.pax = map[string]string{}
	}
	uid, gid := it.UID, it.GID
	if !s.owners || it.NoOwner {
		uid, gid = 0, 0
	}
	if needsPax(h.name, 100) && h.pax["GNU.sparse.name"] == "" {
		h.pax["path"] = h.name
	}
	if needsPax(h.link, 100) {
		h.pax["linkpath"] = h.link
	}
	if !utf8.ValidString(h.name+h.link) || !utf8.ValidString(h.pax["GNU.sparse.name"]) {
		h.pax["hdrcharset"] = "BINARY"
	}
	if h.size > tarMaxSize {
		h.pax["size"] = strconv.FormatInt(h.size, 10)
	}
	if uid > tarMaxOctal8 {
		h.pax["uid"] = strconv.FormatUint(uint64(uid), 10)
	}
	if gid > tarMaxOctal8 {
		h.pax["gid"] = strconv.FormatUint(uint64(gid), 10)
	}
	h.pax["mtime"] = paxTime(it.ModTime)
	h.pax["atime"] = paxTime(it.ATime)
	for _, x := range it.Xattrs {
		switch x.Name {
		case "system.posix_acl_access", "system.posix_acl_default":
			text, err := aclText(x.Value)
			if err != nil {
				s.notes = append(s.notes, Note{fsread.Escape(it.Path), x.Name + " not kept: " + err.Error()})
				continue
			}
			h.pax["SCHILY.acl."+strings.TrimPrefix(x.Name, "system.posix_acl_")] = text
		default:
			h.pax["SCHILY.xattr."+x.Name] = string(x.Value)
		}
	}
	if len(h.pax) > 0 {
		rec := paxRecords(h.pax)
		ph := tarHeader{name: path.Join(path.Dir(strings.TrimSuffix(h.name, "/")), "PaxHeaders", path.Base(h.name)),
			typ: tarTypePax, size: int64(len(rec))}
		if err := s.header(ph, 0o644, 0, 0, it.ModTime); err != nil {
			return err
		}
		if _, err := io.WriteString(s.w, rec); err != nil {
			return err
		}
		if err := s.pad(int64(len(rec))); err != nil {
			return err
		}
	}
	return s.header(h, perm(it.Mode), min(uid, tarMaxOctal8), min(gid, tarMaxOctal8), it.ModTime)
}

// header writes one ustar header block.
func (s *TarSink) header(h tarHeader, mode, uid, gid uint32, mtime time.Time) error {
	var b [tarBlock]byte
	copy(b[0:100], h.name)
	octal(b[100:108], int64(mode))
	octal(b[108:116], int64(uid))
	octal(b[116:124], int64(gid))
	octal(b[124:136], min(h.size, tarMaxSize))
	octal(b[136:148], max(0, min(mtime.Unix(), tarMaxSize)))
	b[156] = h.typ
	copy(b[157:257], h.link)
	copy(b[257:265], "ustar\x0000")
	if h.typ == tarTypeChr || h.typ == tarTypeBlk {
		octal(b[329:337], int64(min(h.major, tarMaxOctal8)))
		octal(b[337:345], int64(min(h.minor, tarMaxOctal8)))
	}
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	_, err := s.w.Write(b[:])
	return err
}

func octal(dst []byte, v int64) {
	s := strconv.FormatInt(v, 8)
	for len(s) < len(dst)-1 {
		s = "0" + s
	}
	copy(dst, s)
}

// needsPax reports whether a name does not fit a ustar field as it is.
func needsPax(s string, field int) bool {
	if len(s) > field {
		return true
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || s[i] == 0 {
			return true
		}
	}
	return false
}

// paxTime formats a time as pax does: decimal seconds (negative before
// 1970) with up to nine fraction digits.
func paxTime(t time.Time) string {
	sec, ns := t.Unix(), int64(t.Nanosecond())
	sign := ""
	if sec < 0 && ns > 0 {
		sign, sec, ns = "-", -(sec + 1), 1e9-ns
	} else if sec < 0 {
		sign, sec = "-", -sec
	}
	out := sign + strconv.FormatInt(sec, 10)
	if ns != 0 {
		out += "." + strings.TrimRight(fmt.Sprintf("%09d", ns), "0")
	}
	return out
}

// paxRecords encodes records "LEN key=value\n", LEN counting itself.
func paxRecords(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		body := " " + k + "=" + m[k] + "\n"
		n := len(body)
		size := n + len(strconv.Itoa(n))
		if len(strconv.Itoa(size)) != len(strconv.Itoa(n)) {
			size = n + len(strconv.Itoa(size))
		}
		b.WriteString(strconv.Itoa(size))
		b.WriteString(body)
	}
	return b.String()
}
