package catalogtest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/catalog"
)

func testBootChecks(t *testing.T, tg Target) {
	c := tg.open(t, catalog.Options{})
	ctx := context.Background()
	b0 := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	add := func(point, vm string, ok bool, at time.Time, reason string) int64 {
		t.Helper()
		id, err := c.AddBootCheck(ctx, catalog.BootCheck{PointID: point, RepoID: "r1", VMUUID: vm, VMName: "web", Started: at,
			Finished: at.Add(time.Minute), OK: ok, Reason: reason, Screenshot: "/s/" + point + ".png",
			Probes: json.RawMessage(`[{"probe":"agent","ok":true}]`)})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	add("20261101T000000Z-00000001", "u1", true, b0, "")
	add("20261102T000000Z-00000002", "u1", false, b0.Add(time.Hour), "guest agent did not answer within 5m0s")
	id := add("20261102T000000Z-00000002", "u1", true, b0.Add(2*time.Hour), "")
	add("20261103T000000Z-00000003", "u1", false, b0.Add(3*time.Hour), "probe failed")
	add("20261101T000000Z-00000009", "u2", true, b0, "")

	got, err := c.BootChecks(ctx, "20261102T000000Z-00000002")
	if err != nil || len(got) != 2 || got[0].ID != id || !got[0].OK || got[1].Reason == "" {
		t.Fatalf("BootChecks = %+v, %v", got, err)
	}
	if !got[0].Started.Equal(b0.Add(2*time.Hour)) || string(got[0].Probes) != `[{"probe":"agent","ok":true}]` {
		t.Fatalf("round trip: %+v", got[0])
	}
	latest, err := c.LatestVerifiedBoots(ctx)
	if err != nil || len(latest) != 2 || latest["u1"].PointID != "20261102T000000Z-00000002" || latest["u2"].VMUUID != "u2" {
		t.Fatalf("LatestVerifiedBoots = %+v, %v", latest, err)
	}
	if _, err := c.AddBootCheck(ctx, catalog.BootCheck{}); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("boot check without point: %v", err)
	}
	if _, err := c.AddBootCheck(ctx, catalog.BootCheck{PointID: "x", Probes: json.RawMessage("{")}); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("boot check with bad probes: %v", err)
	}
	// A rebuild of the points keeps the checks.
	if err := c.Rebuild(ctx, "r1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.BootChecks(ctx, "20261101T000000Z-00000001"); len(got) != 1 {
		t.Fatalf("after rebuild: %+v", got)
	}
}
