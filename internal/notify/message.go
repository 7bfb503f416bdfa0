package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"slices"
	"strings"
	"time"
)

// maxSubject bounds the Subject header (in characters).
const maxSubject = 200

// composeMail returns an RFC 5322 message for ev: plain text in UTF-8,
// quoted-printable, CRLF line ends. Nothing from ev reaches a header
// without losing its control characters, so no value can add a header.
func composeMail(from *mail.Address, to string, ev Event, eventID, deliveryID, origin string, now time.Time) []byte {
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("From", from.String())
	hdr("To", (&mail.Address{Address: to}).String())
	hdr("Subject", foldWords(mime.QEncoding.Encode("utf-8", "[kura] "+headerText(ev.subject(), maxSubject))))
	hdr("Message-ID", "<"+deliveryID+"@"+messageIDHost(origin)+">")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	hdr("Auto-Submitted", "auto-generated") // RFC 3834: no auto-replies
	hdr(HeaderEvent, string(ev.Kind))
	hdr(HeaderDelivery, deliveryID)
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(mailText(ev, eventID, origin)))
	_ = qp.Close()
	return b.Bytes()
}

// mailText is the body: the event's text, then its fields.
func mailText(ev Event, eventID, origin string) string {
	var b strings.Builder
	if t := strings.TrimSpace(ev.Text); t != "" {
		b.WriteString(t)
		b.WriteString("\n\n")
	}
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-12s %s\n", k+":", v)
		}
	}
	row("Event", string(ev.Kind)+" ("+string(ev.Kind.Severity())+")")
	row("Time", ev.Time.UTC().Format(time.RFC3339))
	row("Group", ev.Group)
	row("VM", ev.VM)
	row("Job", ev.Job)
	row("Repository", ev.Repository)
	keys := make([]string, 0, len(ev.Data))
	for k := range ev.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		row(k, dataText(ev.Data[k]))
	}
	fmt.Fprintf(&b, "\n-- \nSent by kura on %s (event %s).\n", origin, eventID)
	return b.String()
}

func dataText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	j, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(j)
}

// headerText makes s one line of at most n characters.
func headerText(s string, n int) string {
	s = strings.Join(strings.FieldsFunc(strings.ToValidUTF8(s, "?"), func(r rune) bool {
		return r < ' ' || r == 0x7f || r == ' '
	}), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return s
}

// foldWords puts each RFC 2047 encoded word of an encoded header on its
// own line, so no line gets near the 998-character limit.
func foldWords(s string) string { return strings.ReplaceAll(s, "?= =?", "?=\r\n =?") }

// messageIDHost makes a host name usable on the right of a Message-ID.
func messageIDHost(h string) string {
	var b strings.Builder
	for _, r := range h {
		if r < 0x80 && (r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			b.WriteRune(r)
		}
	}
	if s := strings.Trim(b.String(), ".-"); s != "" {
		return s
	}
	return "localhost"
}
