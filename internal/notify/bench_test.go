package notify_test

import (
	"context"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/notify/notifytest"
)

// BenchmarkNotify measures what a job pays to report an event routed to
// two webhooks: validation, two signed JSON bodies, two queue inserts.
func BenchmarkNotify(b *testing.B) {
	r1, r2 := notifytest.NewReceiver(b, false), notifytest.NewReceiver(b, false)
	n, err := notify.New(notify.Config{
		Webhooks: []notify.WebhookConfig{{Name: "a", URL: r1.URL, SecretFile: r1.SecretFile}, {Name: "b", URL: r2.URL, SecretFile: r2.SecretFile}},
		Rules:    []notify.Rule{{Events: []notify.EventKind{notify.JobSucceeded}, Webhooks: []string{"a", "b"}}},
	}, notify.Options{QueueSize: b.N + 1})
	if err != nil {
		b.Fatal(err)
	}
	ev := notify.Event{Kind: notify.JobSucceeded, Group: "web", VM: "db1", Job: "42", Text: "backed up 3 disks",
		Data: map[string]any{"bytes_read": 1 << 30, "bytes_stored": 1 << 20}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := n.Notify(b.Context(), ev); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		b.Fatal(err)
	}
}
