package notify_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/testenv"
)

const validBody = `{"kura_event_version":1,"delivery_id":"D1","event_id":"E1","kind":"job-failed","severity":"error",` +
	`"time":"2026-11-25T03:04:05Z","origin":"kura1","group":"web","vm":"db1","subject":"job failed","data":{"vms_failed":1,"error":"x"}}`

func TestDecodePayload(t *testing.T) {
	p, err := notify.DecodePayload([]byte(validBody))
	if err != nil {
		t.Fatal(err)
	}
	want := notify.Payload{Version: 1, DeliveryID: "D1", EventID: "E1", Kind: notify.JobFailed, Severity: notify.Error,
		Time: time.Date(2026, 11, 25, 3, 4, 5, 0, time.UTC), Origin: "kura1", Group: "web", VM: "db1",
		Subject: "job failed", Data: map[string]any{"vms_failed": 1.0, "error": "x"}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v\nwant %+v", p, want)
	}
	// Forward compatible within version 1: unknown fields and kinds.
	if _, err := notify.DecodePayload([]byte(strings.Replace(validBody, `"kind":"job-failed"`, `"kind":"new-kind","extra":[1]`, 1))); err != nil {
		t.Errorf("unknown kind and field: %v", err)
	}
	for name, body := range map[string]string{
		"version 2":   strings.Replace(validBody, `"kura_event_version":1`, `"kura_event_version":2`, 1),
		"no version":  strings.Replace(validBody, `"kura_event_version":1,`, ``, 1),
		"no delivery": strings.Replace(validBody, `"delivery_id":"D1",`, ``, 1),
		"no event":    strings.Replace(validBody, `"event_id":"E1",`, ``, 1),
		"no kind":     strings.Replace(validBody, `"kind":"job-failed",`, ``, 1),
		"no time":     strings.Replace(validBody, `"time":"2026-11-25T03:04:05Z",`, ``, 1),
		"bad time":    strings.Replace(validBody, `2026-11-25T03:04:05Z`, `yesterday`, 1),
		"trailing":    validBody + `{}`,
		"array":       `[1]`,
		"empty":       ``,
	} {
		if _, err := notify.DecodePayload([]byte(body)); !errors.Is(err, notify.ErrBadPayload) {
			t.Errorf("%s: %v, want ErrBadPayload", name, err)
		}
	}
}

func TestSignature(t *testing.T) {
	secret, body := []byte("k"), []byte(validBody)
	sig := notify.Sign(secret, body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("signature %q", sig)
	}
	if err := notify.VerifySignature(secret, body, sig); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		secret, body []byte
		header       string
	}{
		"other secret": {[]byte("K"), body, sig},
		"other body":   {secret, append([]byte(" "), body...), sig},
		"no prefix":    {secret, body, strings.TrimPrefix(sig, "sha256=")},
		"sha1":         {secret, body, "sha1=" + sig[7:]},
		"short":        {secret, body, sig[:20]},
		"not hex":      {secret, body, "sha256=" + strings.Repeat("zz", 32)},
		"empty":        {secret, body, ""},
	} {
		if err := notify.VerifySignature(c.secret, c.body, c.header); !errors.Is(err, notify.ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", name, err)
		}
	}
}

// FuzzDecodePayload: any input decodes or fails cleanly; what decodes
// re-encodes to the same payload.
func FuzzDecodePayload(f *testing.F) {
	f.Add([]byte(validBody))
	f.Add([]byte(`{"kura_event_version":1,"delivery_id":"d","event_id":"e","kind":"x","time":"2026-01-02T03:04:05.123456789+02:00","data":{"a":[null,true,-0,1e300,"\u00ff"]}}`))
	f.Add([]byte(`{"kura_event_version":1.5}`))
	f.Add([]byte(`nul`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := notify.DecodePayload(body)
		if err != nil {
			if !errors.Is(err, notify.ErrBadPayload) {
				t.Fatalf("error without ErrBadPayload: %v", err)
			}
			return
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("decoded payload does not encode: %v", err)
		}
		q, err := notify.DecodePayload(again)
		if err != nil {
			t.Fatalf("re-encoded payload does not decode: %v\n%s", err, again)
		}
		if !p.Time.Equal(q.Time) {
			t.Fatalf("time %v became %v", p.Time, q.Time)
		}
		p.Time, q.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip changed the payload:\n%+v\n%+v", p, q)
		}
	})
}

// FuzzVerifySignature: no header panics or verifies a body it was not
// made for; a real signature always verifies.
func FuzzVerifySignature(f *testing.F) {
	f.Add([]byte("k"), []byte(validBody), "sha256=00")
	f.Add([]byte(""), []byte(""), notify.Sign(nil, nil))
	f.Fuzz(func(t *testing.T, secret, body []byte, header string) {
		if err := notify.VerifySignature(secret, body, notify.Sign(secret, body)); err != nil {
			t.Fatalf("own signature: %v", err)
		}
		if notify.VerifySignature(secret, body, header) == nil && strings.TrimSpace(header) != notify.Sign(secret, body) &&
			!strings.EqualFold(strings.TrimSpace(header), notify.Sign(secret, body)) {
			t.Fatalf("header %q verified", header)
		}
	})
}

// TestDocumentedShellCheck runs the openssl recipe of
// docs/design/notifications.md and compares it with Sign.
func TestDocumentedShellCheck(t *testing.T) {
	openssl := testenv.NeedTool(t, "openssl")
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "design", "notifications.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```sh\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("no sh block in the document")
	}
	dir := t.TempDir()
	secret, body := []byte("s3cret with spaces"), []byte(validBody+"\n")
	if err := os.WriteFile(filepath.Join(dir, "secret"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "body.json"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", string(m[1]))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(openssl)+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), notify.Sign(secret, body); got != want {
		t.Errorf("documented command prints %q, Sign gives %q", got, want)
	}
}
