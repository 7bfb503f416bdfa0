package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// PayloadVersion is the version of the webhook body schema
// (docs/design/notifications.md). Fields may be added within a version;
// removing one or changing its meaning needs a new version.
const PayloadVersion = 1

// Payload is the JSON body of a webhook request, schema version 1.
type Payload struct {
	Version int `json:"kura_event_version"`
	// DeliveryID is unique per event and destination, the same in every
	// retry (also in the X-Kura-Delivery header): receivers deduplicate
	// by it.
	DeliveryID string `json:"delivery_id"`
	// EventID is unique per event, the same for every destination.
	EventID    string         `json:"event_id"`
	Kind       EventKind      `json:"kind"`
	Severity   Severity       `json:"severity"`
	Time       time.Time      `json:"time"`
	Origin     string         `json:"origin"`
	Group      string         `json:"group,omitempty"`
	VM         string         `json:"vm,omitempty"`
	Job        string         `json:"job,omitempty"`
	Repository string         `json:"repository,omitempty"`
	Subject    string         `json:"subject"`
	Text       string         `json:"text,omitempty"`
	Data       map[string]any `json:"data,omitempty"`
}

func newPayload(ev Event, eventID, deliveryID, origin string) Payload {
	return Payload{
		Version: PayloadVersion, DeliveryID: deliveryID, EventID: eventID,
		Kind: ev.Kind, Severity: ev.Kind.Severity(), Time: ev.Time.UTC(), Origin: origin,
		Group: ev.Group, VM: ev.VM, Job: ev.Job, Repository: ev.Repository,
		Subject: ev.subject(), Text: ev.Text, Data: ev.Data,
	}
}

// DecodePayload parses a webhook body. It accepts unknown fields and
// unknown event kinds (both may be added within version 1) and refuses
// other versions and bodies without the required fields.
func DecodePayload(body []byte) (Payload, error) {
	var p Payload
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&p); err != nil {
		return Payload{}, fmt.Errorf("%w: %w", ErrBadPayload, err)
	}
	if dec.More() {
		return Payload{}, fmt.Errorf("%w: data after the JSON object", ErrBadPayload)
	}
	switch {
	case p.Version != PayloadVersion:
		return Payload{}, fmt.Errorf("%w: kura_event_version %d (this kura reads %d)", ErrBadPayload, p.Version, PayloadVersion)
	case p.DeliveryID == "":
		return Payload{}, fmt.Errorf("%w: no delivery_id", ErrBadPayload)
	case p.EventID == "":
		return Payload{}, fmt.Errorf("%w: no event_id", ErrBadPayload)
	case p.Kind == "":
		return Payload{}, fmt.Errorf("%w: no kind", ErrBadPayload)
	case p.Time.IsZero():
		return Payload{}, fmt.Errorf("%w: no time", ErrBadPayload)
	}
	if len(p.Data) == 0 {
		p.Data = nil // "data": {} is no data
	}
	return p, nil
}
