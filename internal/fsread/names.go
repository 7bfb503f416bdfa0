package fsread

import (
	"encoding/json"
	"io/fs"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Escaping of names for text and JSON output (docs/design/fsread.md).
// Filesystem names are byte strings: they need not be UTF-8 and may hold
// control characters. Shown names keep every printable UTF-8 character
// as it is and replace
//
//	a backslash                             by  \\
//	each byte of anything else (invalid     by  \xHH (two lower-case hex
//	UTF-8, control and other unprintable        digits)
//	characters)
//
// EscapeName also writes "/" as \x2f (a name holding "/" exists only in
// crafted images). Unescape reverses both exactly.

const hexDigits = "0123456789abcdef"

// Escape returns p in the shown form; "/" stays as it is.
func Escape(p string) string { return escape(p, false) }

// EscapeName returns one name in the shown form, "/" escaped too.
func EscapeName(name string) string { return escape(name, true) }

func escape(s string, slash bool) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' || (slash && c == '/') {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case (r == utf8.RuneError && n <= 1) || !unicode.IsPrint(r) || (slash && r == '/'):
			for _, c := range []byte(s[i : i+n]) {
				b.WriteByte('\\')
				b.WriteByte('x')
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&15])
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// Unescape reverses Escape and EscapeName. A backslash not starting \\ or
// \xHH is kept as it is, so paths typed by hand need no escaping unless
// they hold a backslash followed by "\" or "x".
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			if s[i+1] == '\\' {
				b.WriteByte('\\')
				i++
				continue
			}
			if s[i+1] == 'x' && i+3 < len(s) && isHex(s[i+2]) && isHex(s[i+3]) {
				b.WriteByte(unhex(s[i+2])<<4 | unhex(s[i+3]))
				i += 3
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// entryJSON is the JSON form of an Entry, names escaped.
type entryJSON struct {
	Name      string      `json:"name"`
	Path      string      `json:"path"`
	Type      string      `json:"type"`
	Size      int64       `json:"size"`
	Allocated int64       `json:"allocated"`
	Mode      fs.FileMode `json:"mode"`
	ModTime   time.Time   `json:"mtime"`
	ATime     time.Time   `json:"atime"`
	CTime     time.Time   `json:"ctime"`
	BTime     time.Time   `json:"btime,omitzero"`
	UID       uint32      `json:"uid"`
	GID       uint32      `json:"gid"`
	Nlink     uint32      `json:"nlink"`
	Ino       uint64      `json:"ino"`
	Major     uint32      `json:"major,omitempty"`
	Minor     uint32      `json:"minor,omitempty"`
	Target    string      `json:"target,omitempty"`
	Stream    string      `json:"stream,omitempty"`
	NoOwner   bool        `json:"no_owner,omitempty"`
}

// MarshalJSON writes e with Name, Path, Target and Stream escaped.
func (e Entry) MarshalJSON() ([]byte, error) {
	j := entryJSON(e)
	j.Name, j.Path, j.Target, j.Stream = EscapeName(e.Name), Escape(e.Path), Escape(e.Target), EscapeName(e.Stream)
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (e *Entry) UnmarshalJSON(b []byte) error {
	var j entryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*e = Entry(j)
	e.Name, e.Path, e.Target, e.Stream = Unescape(j.Name), Unescape(j.Path), Unescape(j.Target), Unescape(j.Stream)
	return nil
}
