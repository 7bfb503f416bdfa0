package libvirt

import (
	"slices"
	"strings"
	"testing"
)

func TestParseTags(t *testing.T) {
	for _, tc := range []struct {
		inner string
		want  []string
	}{
		{``, nil},
		{`<app:x xmlns:app="urn:other"><app:tags><app:tag>no</app:tag></app:tags></app:x>`, nil},
		{`<kuratags:tags xmlns:kuratags="` + tagsNS + `"><kuratags:tag>web</kuratags:tag><kuratags:tag>backup/daily</kuratags:tag><kuratags:tag>web</kuratags:tag></kuratags:tags>`,
			[]string{"backup/daily", "web"}},
		// Another application's element first, then kura's; invalid tags dropped.
		{`<o:meta xmlns:o="urn:o"><o:tag>x</o:tag></o:meta><k:tags xmlns:k="` + tagsNS + `"><k:tag> ok </k:tag><k:tag>has space</k:tag><k:tag></k:tag></k:tags>`,
			[]string{"ok"}},
		{`<k:tags xmlns:k="` + tagsNS + `"><k:tag>unterminated`, nil},
	} {
		if got := parseTags(tc.inner); !slices.Equal(got, tc.want) {
			t.Errorf("parseTags(%q) = %q, want %q", tc.inner, got, tc.want)
		}
	}
	el, err := tagsElement([]string{"a<b", "c&d"})
	if err != nil || !strings.Contains(el, "a&lt;b") || !strings.Contains(el, "c&amp;d") {
		t.Fatalf("tagsElement = %q, %v", el, err)
	}
	if _, err := tagsElement([]string{"with space"}); err == nil {
		t.Fatal("tagsElement accepted a tag with a space")
	}
}

// FuzzParseTags: domain metadata (written by anyone with access to the
// domain) never panics the parser, and every tag it returns is valid.
func FuzzParseTags(f *testing.F) {
	f.Add(`<k:tags xmlns:k="` + tagsNS + `"><k:tag>web</k:tag></k:tags>`)
	f.Add(`<a/><k:tags xmlns:k="` + tagsNS + `"><k:tag>x</k:tag><k:tag>`)
	f.Fuzz(func(t *testing.T, inner string) {
		got := parseTags(inner)
		if len(got) > maxTags {
			t.Fatalf("%d tags", len(got))
		}
		for _, tag := range got {
			if tag == "" || strings.ContainsAny(tag, " ,\t\n") {
				t.Fatalf("invalid tag %q from %q", tag, inner)
			}
		}
	})
}
