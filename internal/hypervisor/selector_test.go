package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

type mapResolver map[string][]string

func (m mapResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := m[host]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("no such host %s", host)
}

func TestParseSelector(t *testing.T) {
	good := map[string]Selector{
		"web1":       {SelectExactName, "", "web1"},
		"name:web-*": {SelectName, "", "web-*"},
		"NAME:db?":   {SelectName, "", "db?"},
		"uuid:6F2A4C1E-0000-4000-8000-0123456789AB": {SelectUUID, "", "6f2a4c1e-0000-4000-8000-0123456789ab"},
		"ipaddr:10.1.2.3":       {SelectIPAddr, "", "10.1.2.3"},
		"ipaddr:db.example.org": {SelectIPAddr, "", "db.example.org"},
		"powerstate:Paused":     {SelectPowerState, "", "paused"},
		"any:":                  {SelectAny, "", ""},
		"folder:/DC0/vm/prod/*": {SelectAttr, "folder", "/DC0/vm/prod/*"},
		"Tag:backup-*":          {SelectAttr, "tag", "backup-*"},
		"moref:vm-42":           {SelectAttr, "moref", "vm-42"},
	}
	for spec, want := range good {
		got, err := ParseSelector(spec)
		if err != nil || got != want {
			t.Errorf("ParseSelector(%q) = %v, %v; want %v", spec, got, err, want)
		}
		if again, err := ParseSelector(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q: %v, %v", spec, again, err)
		}
	}
	bad := []string{"", "name:", "name:[a", "uuid:123", "uuid:6f2a4c1e-0000-4000-8000-0123456789ag",
		"ipaddr:", "powerstate:running", "any:x", "color:", "tag:[a", "Bad-Key:x", "exact:x", "attr:x"}
	for _, spec := range bad {
		if _, err := ParseSelector(spec); !errors.Is(err, ErrBadSelector) {
			t.Errorf("ParseSelector(%q) error = %v, want ErrBadSelector", spec, err)
		}
	}
}

func TestSelect(t *testing.T) {
	vms := []VM{
		{Name: "web-1", UUID: "11111111-1111-1111-1111-111111111111", State: PowerOn, Addresses: []string{"10.0.0.1", "fe80::1"}},
		{Name: "web-2", UUID: "22222222-2222-2222-2222-222222222222", State: PowerOff},
		{Name: "db", UUID: "33333333-3333-3333-3333-333333333333", State: PowerPaused, Addresses: []string{"10.0.0.3"}},
		{Name: "web", UUID: "44444444-4444-4444-4444-444444444444", State: PowerOn, DNSName: "webhost",
			Attributes: map[string][]string{"folder": {"/DC0/vm/prod"}, "tag": {"backup/daily", "owner/ops"}}},
		{Name: "app", UUID: "55555555-5555-5555-5555-555555555555", State: PowerOn, DNSName: "app.lab.example.org",
			Attributes: map[string][]string{"folder": {"/DC0/vm/test"}, "moref": {"vm-42"}}},
	}
	res := mapResolver{"db.example.org": {"10.0.0.3"}, "v6.example.org": {"fe80:0::1"}}
	names := func(specs ...string) ([]string, error) {
		sels, err := ParseSelectors(specs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Select(context.Background(), vms, sels, res)
		var out []string
		for _, v := range got {
			out = append(out, v.Name)
		}
		return out, err
	}
	cases := []struct {
		specs []string
		want  []string
	}{
		{[]string{"web"}, []string{"web"}},
		{[]string{"name:web-*"}, []string{"web-1", "web-2"}},
		{[]string{"name:web*", "web-1", "powerstate:on"}, []string{"web-1", "web-2", "web", "app"}},
		{[]string{"uuid:33333333-3333-3333-3333-333333333333"}, []string{"db"}},
		{[]string{"ipaddr:10.0.0.1"}, []string{"web-1"}},
		{[]string{"ipaddr:db.example.org"}, []string{"db"}},
		{[]string{"ipaddr:v6.example.org"}, []string{"web-1"}},
		{[]string{"powerstate:paused", "powerstate:off"}, []string{"web-2", "db"}},
		{[]string{"any:", "db"}, []string{"web-1", "web-2", "db", "web", "app"}},
		{[]string{"nosuch"}, nil},
		{[]string{"folder:/DC0/vm/*"}, []string{"web", "app"}},
		{[]string{"tag:owner/*"}, []string{"web"}},
		{[]string{"moref:vm-42"}, []string{"app"}},
		{[]string{"ipaddr:webhost.example.org"}, []string{"web"}},
		{[]string{"ipaddr:APP.lab.example.org."}, []string{"app"}},
	}
	for _, c := range cases {
		got, err := names(c.specs...)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Select(%v) = %v, %v; want %v", c.specs, got, err, c.want)
		}
	}
	got, err := names("ipaddr:unknown.example.org", "db")
	if err == nil || !slices.Equal(got, []string{"db"}) {
		t.Errorf("unresolvable name: got %v, %v; want [db] and an error", got, err)
	}
	got, err = names("color:red", "db")
	if !errors.Is(err, ErrBadSelector) || !slices.Equal(got, []string{"db"}) {
		t.Errorf("attribute no vm has: got %v, %v; want [db] and ErrBadSelector", got, err)
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"web", "name:a*", "uuid:x", "any:", "ipaddr:1.2.3.4", "powerstate:on", "folder:/a/*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		sel, err := ParseSelector(spec)
		if err != nil {
			return
		}
		again, err := ParseSelector(sel.String())
		if err != nil || again != sel {
			t.Fatalf("round trip %q -> %q: %v %v", spec, sel.String(), again, err)
		}
	})
}
