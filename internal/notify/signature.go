package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Webhook request headers.
const (
	// HeaderSignature is "sha256=" and the lower-case hex HMAC-SHA256 of
	// the body keyed with the webhook's secret.
	HeaderSignature = "X-Kura-Signature"
	// HeaderEvent is the event kind.
	HeaderEvent = "X-Kura-Event"
	// HeaderDelivery is the delivery id, the same in every retry.
	HeaderDelivery = "X-Kura-Delivery"
	// HeaderTimestamp is the Unix time (seconds) of the attempt.
	HeaderTimestamp = "X-Kura-Timestamp"
)

const sigPrefix = "sha256="

// Sign returns the X-Kura-Signature value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return sigPrefix + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks an X-Kura-Signature header value against body
// in constant time.
func VerifySignature(secret, body []byte, header string) error {
	hexSum, ok := strings.CutPrefix(strings.TrimSpace(header), sigPrefix)
	if !ok {
		return fmt.Errorf("%w: header does not start with %q", ErrBadSignature, sigPrefix)
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: not %d hex-encoded bytes", ErrBadSignature, sha256.Size)
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return fmt.Errorf("%w: mismatch (wrong secret or altered body)", ErrBadSignature)
	}
	return nil
}
