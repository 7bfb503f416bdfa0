package notify

import "errors"

// Sentinel errors.
var (
	// ErrInvalidConfig means a Config failed Validate; every *FieldError
	// matches it.
	ErrInvalidConfig = errors.New("invalid notification configuration")
	// ErrSecretFile means a secret file is missing, empty or unreadable.
	ErrSecretFile = errors.New("unusable secret file")
	// ErrInvalidEvent means an Event cannot be sent (unknown kind, data
	// that does not encode as JSON).
	ErrInvalidEvent = errors.New("invalid event")
	// ErrUnknownDestination means a destination name is not configured.
	ErrUnknownDestination = errors.New("unknown notification destination")
	// ErrQueueFull means a destination's queue was full: the delivery was
	// dropped instead of blocking the caller.
	ErrQueueFull = errors.New("notification queue full")
	// ErrClosed means the Notifier was closed.
	ErrClosed = errors.New("notifier closed")
	// ErrNoTLS means the SMTP server does not offer STARTTLS where it is
	// required, or credentials would travel without TLS.
	ErrNoTLS = errors.New("smtp server offers no TLS")
	// ErrBadSignature means a webhook signature does not verify.
	ErrBadSignature = errors.New("bad webhook signature")
	// ErrBadPayload means a webhook body is not a valid kura event.
	ErrBadPayload = errors.New("bad webhook payload")
)
