package fsread

import "errors"

// Additional sentinel errors (additive to those in fsread.go).
var (
	// ErrIsDir means a directory was opened as a regular file.
	ErrIsDir = errors.New("is a directory")
	// ErrNotDir means a path component or ReadDir target is not a directory.
	ErrNotDir = errors.New("not a directory")
	// ErrNotRegular means Open was called on a symlink, device or other
	// non-regular file.
	ErrNotRegular = errors.New("not a regular file")
)
