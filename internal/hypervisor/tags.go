package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// TagAttr is the VM.Attributes key of a VM's tags: selectors match them
// as "tag:GLOB". vSphere tags read "category/name"; tags kura sets itself
// (Tagger) are any short words.
const TagAttr = "tag"

// ErrBadTag is returned for a tag kura will not set.
var ErrBadTag = errors.New("invalid tag")

// MaxTagLen bounds one tag.
const MaxTagLen = 128

// Tagger is implemented by connectors that keep kura's tags on the VM
// itself (libvirt: in the domain's metadata, so they travel with its
// configuration and come back with a restore).
type Tagger interface {
	// SetTags replaces the VM's kura tags by tags (none: removes them).
	SetTags(ctx context.Context, nameOrUUID string, tags []string) error
}

// CheckTag says whether kura can set tag: 1 to MaxTagLen printable
// characters without spaces or commas.
func CheckTag(tag string) error {
	if tag == "" || len(tag) > MaxTagLen {
		return fmt.Errorf("%w %q: 1 to %d characters", ErrBadTag, tag, MaxTagLen)
	}
	for _, r := range tag {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || r == ',' {
			return fmt.Errorf("%w %q: no spaces, commas or control characters", ErrBadTag, tag)
		}
	}
	return nil
}

// EditTags returns current with add added and remove removed, sorted and
// without duplicates; all (in remove's place) removes every tag.
func EditTags(current, add, remove []string, all bool) ([]string, error) {
	for _, t := range add {
		if err := CheckTag(t); err != nil {
			return nil, err
		}
	}
	var out []string
	if !all {
		for _, t := range current {
			if !slices.Contains(remove, t) {
				out = append(out, t)
			}
		}
	}
	out = append(out, add...)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// FormatTags joins tags for display.
func FormatTags(tags []string) string { return strings.Join(tags, ",") }
