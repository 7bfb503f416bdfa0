package fsread

import (
	"fmt"
	"strconv"
)

// LVM's metadata text: sections `name { ... }` holding sections and
// assignments `key = value`, where a value is a number, a "string" or a
// [list, of, values]; "#" starts a comment.

type lvmValue struct {
	s    string
	n    int64
	list []lvmValue
}

type lvmSection struct {
	order    []string // section names in file order
	sections map[string]*lvmSection
	values   map[string]lvmValue
}

func newLVMSection() *lvmSection {
	return &lvmSection{sections: map[string]*lvmSection{}, values: map[string]lvmValue{}}
}

func (s *lvmSection) num(key string) int64       { return s.values[key].n }
func (s *lvmSection) str(key string) string      { return s.values[key].s }
func (s *lvmSection) list(key string) []lvmValue { return s.values[key].list }

// has reports whether the list value key holds the string want.
func (s *lvmSection) has(key, want string) bool {
	for _, v := range s.values[key].list {
		if v.s == want {
			return true
		}
	}
	return false
}

type lvmParser struct {
	b      []byte
	p      int
	tokens int
}

// parseLVMText parses a metadata document into its top-level section.
func parseLVMText(b []byte) (*lvmSection, error) {
	ps := &lvmParser{b: b}
	root, err := ps.section(0)
	if err != nil {
		return nil, fmt.Errorf("lvm metadata: %w", err)
	}
	return root, nil
}

func (ps *lvmParser) skipSpace() {
	for ps.p < len(ps.b) {
		switch c := ps.b[ps.p]; {
		case c == '#':
			for ps.p < len(ps.b) && ps.b[ps.p] != '\n' {
				ps.p++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			ps.p++
		default:
			return
		}
	}
}

func isLVMIdent(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '+' || c == '-'
}

func (ps *lvmParser) ident() string {
	start := ps.p
	for ps.p < len(ps.b) && isLVMIdent(ps.b[ps.p]) {
		ps.p++
	}
	return string(ps.b[start:ps.p])
}

func (ps *lvmParser) corrupt(what string) error {
	return fmt.Errorf("%s at byte %d: %w", what, ps.p, ErrCorrupt)
}

// section parses assignments and subsections until "}" (or the end at
// depth 0).
func (ps *lvmParser) section(depth int) (*lvmSection, error) {
	if depth > lvmMaxDepth {
		return nil, ps.corrupt("sections nested too deep")
	}
	s := newLVMSection()
	for {
		if ps.tokens++; ps.tokens > lvmMaxTokens {
			return nil, ps.corrupt("too many tokens")
		}
		ps.skipSpace()
		if ps.p >= len(ps.b) {
			if depth > 0 {
				return nil, ps.corrupt("unterminated section")
			}
			return s, nil
		}
		if ps.b[ps.p] == '}' {
			if depth == 0 {
				return nil, ps.corrupt("unexpected }")
			}
			ps.p++
			return s, nil
		}
		name := ps.ident()
		if name == "" {
			return nil, ps.corrupt("expected a name")
		}
		ps.skipSpace()
		if ps.p >= len(ps.b) {
			return nil, ps.corrupt("unexpected end")
		}
		switch ps.b[ps.p] {
		case '{':
			ps.p++
			sub, err := ps.section(depth + 1)
			if err != nil {
				return nil, err
			}
			if _, dup := s.sections[name]; !dup {
				s.order = append(s.order, name)
			}
			s.sections[name] = sub
		case '=':
			ps.p++
			v, err := ps.value(0)
			if err != nil {
				return nil, err
			}
			s.values[name] = v
		default:
			return nil, ps.corrupt("expected { or =")
		}
	}
}

func (ps *lvmParser) value(depth int) (lvmValue, error) {
	if ps.tokens++; ps.tokens > lvmMaxTokens || depth > lvmMaxDepth {
		return lvmValue{}, ps.corrupt("value too complex")
	}
	ps.skipSpace()
	if ps.p >= len(ps.b) {
		return lvmValue{}, ps.corrupt("missing value")
	}
	switch c := ps.b[ps.p]; {
	case c == '"':
		ps.p++
		var out []byte
		for ps.p < len(ps.b) && ps.b[ps.p] != '"' {
			if ps.b[ps.p] == '\\' && ps.p+1 < len(ps.b) {
				ps.p++
			}
			out = append(out, ps.b[ps.p])
			ps.p++
		}
		if ps.p >= len(ps.b) {
			return lvmValue{}, ps.corrupt("unterminated string")
		}
		ps.p++
		return lvmValue{s: string(out)}, nil
	case c == '[':
		ps.p++
		var list []lvmValue
		for {
			ps.skipSpace()
			if ps.p >= len(ps.b) {
				return lvmValue{}, ps.corrupt("unterminated list")
			}
			if ps.b[ps.p] == ']' {
				ps.p++
				return lvmValue{list: list}, nil
			}
			v, err := ps.value(depth + 1)
			if err != nil {
				return lvmValue{}, err
			}
			list = append(list, v)
			ps.skipSpace()
			if ps.p < len(ps.b) && ps.b[ps.p] == ',' {
				ps.p++
			}
		}
	default:
		tok := ps.ident()
		n, err := strconv.ParseInt(tok, 10, 64)
		if err != nil {
			if f, ferr := strconv.ParseFloat(tok, 64); ferr == nil {
				return lvmValue{s: tok, n: int64(f)}, nil
			}
			return lvmValue{}, ps.corrupt("bad value " + strconv.Quote(tok))
		}
		return lvmValue{s: tok, n: n}, nil
	}
}
