package storage

import (
	"fmt"
	"strings"
)

// ValidName reports whether name follows the storage package's naming
// rules: non-empty slash-separated segments of [a-z0-9._-], no segment
// ".", and no ".." anywhere.
func ValidName(name string) error {
	if name == "" {
		return fmt.Errorf("empty name: %w", ErrInvalidName)
	}
	if err := validSegments(name, false); err != nil {
		return fmt.Errorf("%q: %w", name, err)
	}
	return nil
}

// ValidPrefix accepts "" and any prefix of a valid name: its last segment
// may be empty (trailing slash) or partial.
func ValidPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := validSegments(prefix, true); err != nil {
		return fmt.Errorf("prefix %q: %w", prefix, err)
	}
	return nil
}

func validSegments(s string, prefix bool) error {
	if strings.Contains(s, "..") {
		return ErrInvalidName
	}
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		switch {
		case seg == "" && !(prefix && last):
			return ErrInvalidName
		case seg == "." && !(prefix && last):
			return ErrInvalidName
		}
		for j := 0; j < len(seg); j++ {
			c := seg[j]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return ErrInvalidName
			}
		}
	}
	return nil
}
