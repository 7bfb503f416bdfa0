package vmdk

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors.
var (
	// ErrFormat means the data is not a VMDK kura can parse.
	ErrFormat = errors.New("malformed vmdk")
	// ErrUnsupported means a valid VMDK feature kura does not read.
	ErrUnsupported = errors.New("unsupported vmdk feature")
)

// SectorSize is the VMDK sector.
const SectorSize = 512

// NoParent is the parentCID of a disk without a parent.
const NoParent = 0xffffffff

// Extent types.
const (
	ExtentFlat   = "FLAT"
	ExtentSparse = "SPARSE"
	ExtentZero   = "ZERO"
	ExtentVMFS   = "VMFS"
	// Read by VMware only (kura reports them unsupported).
	ExtentVMFSSparse = "VMFSSPARSE"
	ExtentSESparse   = "SESPARSE"
	ExtentVMFSRDM    = "VMFSRDM"
	ExtentVMFSRaw    = "VMFSRAW"
)

// Extent is one line of a descriptor's extent description.
type Extent struct {
	// Access is RW, RDONLY or NOACCESS.
	Access string
	// Sectors is the extent's size in 512-byte sectors.
	Sectors int64
	// Type is FLAT, SPARSE, ZERO, VMFS, …
	Type string
	// File is the extent file's name, relative to the descriptor (empty
	// for ZERO).
	File string
	// Offset is where a FLAT/VMFS extent's data starts in its file, in
	// sectors.
	Offset int64
}

// DDB is one entry of the disk database ("ddb.adapterType").
type DDB struct{ Key, Value string }

// Descriptor is a parsed VMDK descriptor.
type Descriptor struct {
	Version    int
	Encoding   string
	CID        uint32
	ParentCID  uint32
	CreateType string
	// ParentFileNameHint names the parent disk of a child (delta) disk.
	ParentFileNameHint string
	Extents            []Extent
	// DDB keeps the disk database in file order.
	DDB []DDB
	// Other holds header keys kura does not interpret, in file order.
	Other []DDB
}

// Capacity is the sum of the extents' sizes in bytes.
func (d *Descriptor) Capacity() int64 {
	var n int64
	for _, e := range d.Extents {
		n += e.Sectors * SectorSize
	}
	return n
}

// Get returns a DDB value ("" when absent).
func (d *Descriptor) Get(key string) string {
	for _, e := range d.DDB {
		if e.Key == key {
			return e.Value
		}
	}
	return ""
}

// maxDescriptor bounds a descriptor's size.
const maxDescriptor = 1 << 20

// ParseDescriptor parses descriptor text (trailing NUL padding allowed).
func ParseDescriptor(b []byte) (*Descriptor, error) {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		if len(bytes.Trim(b[i:], "\x00")) != 0 {
			return nil, fmt.Errorf("%w: descriptor: NUL inside the text", ErrFormat)
		}
		b = b[:i]
	}
	if len(b) > maxDescriptor {
		return nil, fmt.Errorf("%w: descriptor of %d bytes", ErrFormat, len(b))
	}
	d := &Descriptor{Version: 1, ParentCID: NoParent}
	seenCID, seenType := false, false
	for n, raw := range strings.Split(string(b), "\n") {
		line := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		bad := func(why string) error {
			return fmt.Errorf("%w: descriptor line %d %q: %s", ErrFormat, n+1, trunc(line), why)
		}
		if ext, ok, err := parseExtent(line); ok {
			if err != nil {
				return nil, bad(err.Error())
			}
			d.Extents = append(d.Extents, ext)
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, bad("neither key=value nor an extent")
		}
		k, v = strings.TrimSpace(k), unquote(strings.TrimSpace(v))
		if k == "" {
			return nil, bad("empty key")
		}
		var err error
		switch strings.ToLower(k) {
		case "version":
			d.Version, err = strconv.Atoi(v)
		case "encoding":
			d.Encoding = v
		case "cid":
			d.CID, err = parseCID(v)
			seenCID = true
		case "parentcid":
			d.ParentCID, err = parseCID(v)
		case "createtype":
			d.CreateType, seenType = v, true
		case "parentfilenamehint":
			d.ParentFileNameHint = v
		default:
			if strings.HasPrefix(k, "ddb.") {
				d.DDB = append(d.DDB, DDB{k, v})
			} else {
				d.Other = append(d.Other, DDB{k, v})
			}
		}
		if err != nil {
			return nil, bad(err.Error())
		}
	}
	switch {
	case !seenType:
		return nil, fmt.Errorf("%w: descriptor has no createType", ErrFormat)
	case !seenCID:
		return nil, fmt.Errorf("%w: descriptor has no CID", ErrFormat)
	case len(d.Extents) == 0:
		return nil, fmt.Errorf("%w: descriptor has no extent", ErrFormat)
	case d.Capacity() <= 0 || d.Capacity() > maxCapacity:
		return nil, fmt.Errorf("%w: descriptor capacity %d out of range", ErrFormat, d.Capacity())
	}
	return d, nil
}

// maxCapacity bounds a disk (64 TiB, VMware's limit is 62 TiB).
const maxCapacity = 64 << 40

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

func parseCID(v string) (uint32, error) {
	x, err := strconv.ParseUint(v, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad content id %q", v)
	}
	return uint32(x), nil
}

// parseExtent parses `RW 16384 FLAT "name with spaces.vmdk" 0`. ok is
// false when the line is no extent line (it does not start with an access
// mode followed by a number).
func parseExtent(line string) (e Extent, ok bool, err error) {
	access, rest, _ := strings.Cut(line, " ")
	switch access {
	case "RW", "RDONLY", "NOACCESS":
	default:
		return e, false, nil
	}
	fields := strings.Fields(rest)
	if len(fields) < 2 {
		return e, true, errors.New("extent needs a size and a type")
	}
	e.Access, e.Type = access, fields[1]
	if e.Sectors, err = strconv.ParseInt(fields[0], 10, 64); err != nil || e.Sectors <= 0 || e.Sectors > maxCapacity/SectorSize {
		return e, true, fmt.Errorf("bad extent size %q", fields[0])
	}
	// The file name is quoted and may hold spaces: take it from the raw
	// text, after the type.
	i := strings.Index(rest, e.Type) + len(e.Type)
	tail := strings.TrimSpace(rest[i:])
	if e.Type == ExtentZero {
		if tail != "" {
			return e, true, errors.New("a ZERO extent has no file")
		}
		return e, true, nil
	}
	if !strings.HasPrefix(tail, `"`) {
		return e, true, errors.New("extent file name is not quoted")
	}
	end := strings.IndexByte(tail[1:], '"')
	if end < 0 {
		return e, true, errors.New("extent file name has no closing quote")
	}
	e.File = tail[1 : 1+end]
	if e.File == "" || strings.ContainsAny(e.File, "/\\\x00") || e.File == "." || e.File == ".." {
		return e, true, fmt.Errorf("bad extent file name %q", e.File)
	}
	if off := strings.TrimSpace(tail[2+end:]); off != "" {
		if e.Offset, err = strconv.ParseInt(off, 10, 64); err != nil || e.Offset < 0 || e.Offset > maxCapacity/SectorSize {
			return e, true, fmt.Errorf("bad extent offset %q", off)
		}
	}
	return e, true, nil
}

// Encode writes the descriptor as text (VMware's layout).
func (d *Descriptor) Encode() []byte {
	var b strings.Builder
	b.WriteString("# Disk DescriptorFile\n")
	fmt.Fprintf(&b, "version=%d\n", d.Version)
	// Values are quoted as they are: the format has no escapes.
	if d.Encoding != "" {
		fmt.Fprintf(&b, "encoding=\"%s\"\n", d.Encoding)
	}
	fmt.Fprintf(&b, "CID=%08x\nparentCID=%08x\n", d.CID, d.ParentCID)
	fmt.Fprintf(&b, "createType=\"%s\"\n", d.CreateType)
	if d.ParentFileNameHint != "" {
		fmt.Fprintf(&b, "parentFileNameHint=\"%s\"\n", d.ParentFileNameHint)
	}
	for _, o := range d.Other {
		fmt.Fprintf(&b, "%s=\"%s\"\n", o.Key, o.Value)
	}
	b.WriteString("\n# Extent description\n")
	for _, e := range d.Extents {
		fmt.Fprintf(&b, "%s %d %s", e.Access, e.Sectors, e.Type)
		if e.Type != ExtentZero {
			fmt.Fprintf(&b, " \"%s\"", e.File)
			if e.Offset != 0 || e.Type == ExtentFlat {
				fmt.Fprintf(&b, " %d", e.Offset)
			}
		}
		b.WriteByte('\n')
	}
	b.WriteString("\n# The Disk Data Base\n#DDB\n\n")
	for _, e := range d.DDB {
		fmt.Fprintf(&b, "%s = \"%s\"\n", e.Key, e.Value)
	}
	return []byte(b.String())
}

// NewCID returns a random content id (never NoParent).
func NewCID() uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		if c := binary.LittleEndian.Uint32(b[:]); c != NoParent && c != 0 {
			return c
		}
	}
}

// NewDescriptor returns the descriptor of a new disk of capacity bytes
// (a multiple of 512) made of the given extents, with a fresh CID, no
// parent, the adapter type (lsilogic, pvscsi, ide…; "" = lsilogic) and a
// matching geometry.
func NewDescriptor(createType string, capacity int64, adapter string, extents ...Extent) *Descriptor {
	if adapter == "" {
		adapter = "lsilogic"
	}
	heads, sectors := int64(255), int64(63)
	if adapter == "ide" {
		heads = 16
	}
	cyl := min(capacity/SectorSize/(heads*sectors), 65535)
	d := &Descriptor{Version: 1, Encoding: "UTF-8", CID: NewCID(), ParentCID: NoParent, CreateType: createType, Extents: extents}
	d.DDB = []DDB{
		{"ddb.adapterType", adapter},
		{"ddb.geometry.cylinders", strconv.FormatInt(cyl, 10)},
		{"ddb.geometry.heads", strconv.FormatInt(heads, 10)},
		{"ddb.geometry.sectors", strconv.FormatInt(sectors, 10)},
		{"ddb.longContentID", fmt.Sprintf("%08x%08x%08x%08x", NewCID(), NewCID(), NewCID(), d.CID)},
		{"ddb.virtualHWVersion", "14"},
	}
	return d
}
