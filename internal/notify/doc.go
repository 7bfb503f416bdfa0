// Package notify tells administrators what kura's server did: it routes
// events (job succeeded / partial / failed, RPO missed, verify problem,
// repository nearly full, missed runs, daily summary, test) to e-mail
// recipients over SMTP and to webhooks, by rules that match event kinds
// and protection groups.
//
// Concepts (docs/design/notifications.md has the details):
//
//   - Config is the declarative part (YAML tags, embedded in the server's
//     configuration file). It holds no secret: the SMTP password, webhook
//     HMAC secrets and secret URLs or headers are read from files by New.
//     Config.Validate reports every problem with its YAML path.
//   - A destination is "webhook:NAME" or "email:ADDRESS". Every configured
//     destination has its own bounded queue and goroutine: Notify returns
//     at once, and a slow or failing destination delays no other.
//   - A delivery is one event to one destination. Its id is stable across
//     retries (webhook header X-Kura-Delivery and body delivery_id; the
//     e-mail's Message-ID), so receivers can deduplicate.
//   - Temporary failures (network errors, HTTP 5xx and 429, SMTP 4xx) are
//     retried with exponential back-off and jitter (RetryPolicy); others
//     (HTTP 4xx, SMTP 5xx, TLS verification, refused credentials) fail at
//     once. Every outcome reaches Options.OnResult and the Stats counters.
//   - Webhook bodies follow a versioned JSON schema (Payload, version 1)
//     signed with HMAC-SHA256 (Sign, VerifySignature).
//   - E-mail goes over STARTTLS or implicit TLS with the certificate
//     verified; credentials (AUTH PLAIN or LOGIN) are only sent over TLS.
//   - SendTest sends a test event to one destination synchronously and
//     returns the error; Close drains the queues within a deadline.
package notify
