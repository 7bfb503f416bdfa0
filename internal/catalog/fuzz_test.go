package catalog

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzPointText stores points whose ID, tags and notes are arbitrary
// strings and checks they come back byte for byte, or are refused as
// ErrInvalid; and that a prefix of the ID finds the point.
func FuzzPointText(f *testing.F) {
	c, err := Open(context.Background(), filepath.Join(f.TempDir(), "c.db"), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = c.Close() })
	f.Add("3f2a", "nightly", "note with \"quotes\" and \\ and é", 2)
	f.Add("a_%", "[]", "null", 1)
	f.Add("x\x00y", "\xff", "", 1)
	f.Fuzz(func(t *testing.T, id, tag, note string, prefix int) {
		ctx := context.Background()
		p := Point{ID: id, RepoID: "r", VMUUID: "u", VMName: "vm", Kind: KindFull,
			Tags: []string{tag, tag + "2"}, Notes: []string{note}}
		if err := c.AddPoint(ctx, p); err != nil {
			if errors.Is(err, ErrInvalid) {
				return
			}
			t.Fatalf("add %q: %v", id, err)
		}
		defer func() { _ = c.DeletePoint(ctx, "r", id) }()
		got, err := c.Point(ctx, id)
		if err != nil {
			t.Fatalf("get %q: %v", id, err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, p)
		}
		if prefix > 0 && prefix < len(id) {
			got, err := c.Point(ctx, id[:prefix])
			if err != nil || got.ID != id {
				t.Fatalf("prefix %q of %q: %q, %v", id[:prefix], id, got.ID, err)
			}
		}
	})
}
