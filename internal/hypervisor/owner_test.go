package hypervisor

import "testing"

func TestCheckpointOwners(t *testing.T) {
	id := "20261121T233000Z-0a1b2c3d"
	if got := CheckpointName("3fa2b1c9", id); got != "kura-3fa2b1c9-"+id {
		t.Fatalf("CheckpointName = %s", got)
	}
	if got := CheckpointName("", id); got != "kura-"+id {
		t.Fatalf("CheckpointName without owner = %s", got)
	}
	if got := OwnerTag("3FA2B1C9D0E1F2A3B4C5D6E7F8091A2B"); got != "3fa2b1c9" {
		t.Fatalf("OwnerTag = %s", got)
	}
	for _, tc := range []struct {
		name, owner string
		ours        bool
	}{
		{"kura-3fa2b1c9-" + id, "3fa2b1c9", true},
		{"kura-" + id, "", true}, // before owner tags: "20261121" is hex, but 'T' follows it
		{"kura-20261121-" + id, "20261121", true},
		{"kura-k1", "", true},
		{"kura-3FA2B1C9-x", "", true},
		{"other-cp", "", false},
		{"kura", "", false},
	} {
		o, ours := CheckpointOwner(tc.name)
		if o != tc.owner || ours != tc.ours {
			t.Errorf("CheckpointOwner(%q) = %q, %v; want %q, %v", tc.name, o, ours, tc.owner, tc.ours)
		}
	}
	mine, theirs := "aaaaaaaa", "bbbbbbbb"
	newCP := CheckpointName(mine, "20261122T000000Z-00000002")
	for name, want := range map[string]bool{
		newCP: false,
		CheckpointName(mine, "20261121T000000Z-00000001"): true,
		CheckpointName(theirs, "20261121T000000Z-000001"): false,
		"kura-" + id: true,
		"foreign":    false,
	} {
		if got := Superseded(name, mine, newCP); got != want {
			t.Errorf("Superseded(%q) = %v, want %v", name, got, want)
		}
	}
}
