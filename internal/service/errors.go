package service

import "errors"

// Sentinel errors.
var (
	// ErrNoConnection means the operation needs a hypervisor connection.
	ErrNoConnection = errors.New("no hypervisor connection")
	// ErrNoCatalog means the operation needs the catalog.
	ErrNoCatalog = errors.New("no catalog")
	// ErrNothingSelected means no selector matched anything.
	ErrNothingSelected = errors.New("no VM matches the selectors (see kura vm list)")
	// ErrDeclined means a confirmation was refused: nothing was changed.
	ErrDeclined = errors.New("not confirmed: nothing changed")
)
