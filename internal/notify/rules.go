package notify

import (
	"slices"
	"strings"
)

// Destination names, as SendTest, Stats and Result use them.
const (
	webhookPrefix = "webhook:"
	emailPrefix   = "email:"
)

// WebhookDestination names the webhook called name.
func WebhookDestination(name string) string { return webhookPrefix + name }

// EmailDestination names the e-mail recipient addr.
func EmailDestination(addr string) string { return emailPrefix + addr }

// matches reports whether r selects ev.
func (r Rule) matches(ev Event) bool {
	if !slices.Contains(r.Events, ev.Kind) {
		return false
	}
	return len(r.Groups) == 0 || ev.Group != "" && slices.Contains(r.Groups, ev.Group)
}

// route returns the destinations of ev: every destination of every
// matching rule, once, in the order of the rules.
func route(rules []Rule, ev Event) []string {
	var out []string
	add := func(d string) {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	for _, r := range rules {
		if !r.matches(ev) {
			continue
		}
		for _, a := range r.Email {
			add(EmailDestination(a))
		}
		for _, w := range r.Webhooks {
			add(WebhookDestination(w))
		}
	}
	return out
}

// splitDestination parses a destination name.
func splitDestination(d string) (kind, name string, ok bool) {
	for _, p := range []string{webhookPrefix, emailPrefix} {
		if rest, found := strings.CutPrefix(d, p); found && rest != "" {
			return p, rest, true
		}
	}
	return "", "", false
}
