package lock

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzDecode checks that any lock object content decodes without panic,
// and that content which is not a valid record conflicts with every kind.
func FuzzDecode(f *testing.F) {
	good, _ := json.Marshal(record{Kind: GC, Host: "h", PID: 1, Created: time.Unix(1, 0), Refreshed: time.Unix(2, 0)})
	f.Add(good)
	f.Add([]byte("{garbage"))
	f.Add([]byte(`{"kind":"exclusive","refreshed":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"kind":"bogus","refreshed":"2026-01-01T00:00:00Z"}`))
	mod := time.Unix(100, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		i := decode("x", data, mod)
		if !i.Kind.valid() {
			if !i.Kind.Conflicts(Shared) || !Shared.Conflicts(i.Kind) || !i.Refreshed.Equal(mod) {
				t.Fatalf("unreadable lock %+v does not conflict or is misdated", i)
			}
			return
		}
		if i.Refreshed.IsZero() {
			t.Fatalf("valid lock without refresh time: %+v", i)
		}
	})
}
