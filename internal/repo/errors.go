package repo

import (
	"errors"
	"fmt"
)

// Sentinel errors. They are wrapped with the object or location concerned.
var (
	ErrWrongPassword = errors.New("wrong passphrase: no key in the repository opens with it")
	ErrNewerFormat   = errors.New("repository format is newer than this kura supports: upgrade kura")
	ErrNotRepository = errors.New("no kura repository here: run kura repo init")
	ErrAlreadyExists = errors.New("a kura repository already exists here")
	ErrPointNotFound = errors.New("recovery point not found (see kura points list)")
	ErrAmbiguous     = errors.New("recovery point prefix is ambiguous")
	ErrCorrupt       = errors.New("corrupted object: run kura verify --read-data")
	ErrMissing       = errors.New("missing object: run kura verify")
	ErrKeyInUse      = errors.New("cannot remove the key in use or the last key")
	ErrLeased        = errors.New("recovery point is being read (reader lease): try again when that reader finishes")
	ErrConfigChanged = errors.New("repository config was changed (its chunk size, id or encryption no longer match what the master key authenticated): restore the original config object, or the repository cannot be trusted")
	ErrNotWritable   = errors.New("repository format version is outside what this kura writes: upgrade kura")
)

func corrupt(name string, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", name, ErrCorrupt, fmt.Sprintf(format, args...))
}
