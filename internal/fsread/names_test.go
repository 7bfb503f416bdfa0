package fsread

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	for _, c := range []struct{ in, path, name string }{
		{"plain name.txt", "plain name.txt", "plain name.txt"},
		{"ファイル-ü", "ファイル-ü", "ファイル-ü"},
		{"\xff\xfe-latin1-\xe9", `\xff\xfe-latin1-\xe9`, `\xff\xfe-latin1-\xe9`},
		{"tab\there\nnl", `tab\x09here\x0anl`, `tab\x09here\x0anl`},
		{`back\slash \x41`, `back\\slash \\x41`, `back\\slash \\x41`},
		{"a/b", "a/b", `a\x2fb`},
		{"nbsp\u00a0del\x7f", `nbsp\xc2\xa0del\x7f`, `nbsp\xc2\xa0del\x7f`},
	} {
		if got := Escape(c.in); got != c.path {
			t.Errorf("Escape(%q) = %q, want %q", c.in, got, c.path)
		}
		if got := EscapeName(c.in); got != c.name {
			t.Errorf("EscapeName(%q) = %q, want %q", c.in, got, c.name)
		}
		if Unescape(c.path) != c.in || Unescape(c.name) != c.in {
			t.Errorf("Unescape does not reverse %q", c.in)
		}
	}
	// Hand-typed paths need no escaping.
	if Unescape(`C:\dir\file`) != `C:\dir\file` {
		t.Errorf("lone backslashes changed: %q", Unescape(`C:\dir\file`))
	}
}

func TestEntryJSON(t *testing.T) {
	e := Entry{Name: "\xffname\n", Path: "/d/\xffname\n", Type: TypeSymlink, Target: "t\\arget", Size: 5, Allocated: 4096}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"name":"\\xffname\\x0a"`, `"path":"/d/\\xffname\\x0a"`, `"target":"t\\\\arget"`, `"allocated":4096`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON %s lacks %s", s, want)
		}
	}
	var back Entry
	if err := json.Unmarshal(b, &back); err != nil || back.Name != e.Name || back.Path != e.Path || back.Target != e.Target {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
}
