package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"strings"
)

// ErrBadSelector means a VM selector could not be parsed.
var ErrBadSelector = errors.New("bad vm selector")

// SelectorKind is what a Selector matches on.
type SelectorKind string

// Selector kinds.
const (
	SelectName       SelectorKind = "name"       // glob on the VM name
	SelectUUID       SelectorKind = "uuid"       // exact UUID (case-insensitive)
	SelectIPAddr     SelectorKind = "ipaddr"     // IP address or DNS name
	SelectPowerState SelectorKind = "powerstate" // on, off, paused
	SelectAny        SelectorKind = "any"        // every VM
	SelectExactName  SelectorKind = "exact"      // a bare word: exact name
	SelectAttr       SelectorKind = "attr"       // KEY:GLOB on VM.Attributes[KEY]
)

// Selector picks VMs, as written by a user: "name:web-*", "uuid:…",
// "ipaddr:10.0.0.5", "ipaddr:db.example.org", "powerstate:on", "any:", a
// bare VM name, or "KEY:GLOB" on a connector's attribute (vSphere:
// "folder:/DC/vm/prod/*", "resource_pool:…", "tag:backup-*", "moref:vm-42").
type Selector struct {
	Kind SelectorKind
	// Key is the attribute name of a SelectAttr selector.
	Key   string
	Value string
}

// String returns the selector in the syntax ParseSelector accepts.
func (s Selector) String() string {
	switch s.Kind {
	case SelectExactName:
		return s.Value
	case SelectAttr:
		return s.Key + ":" + s.Value
	}
	return string(s.Kind) + ":" + s.Value
}

// attrKeyRE is the syntax of attribute names.
var attrKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// ParseSelector parses one selector.
func ParseSelector(spec string) (Selector, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return Selector{}, fmt.Errorf("%w: empty selector", ErrBadSelector)
	}
	kind, value, found := strings.Cut(spec, ":")
	value = strings.TrimSpace(value)
	if !found {
		return Selector{Kind: SelectExactName, Value: spec}, nil
	}
	switch SelectorKind(strings.ToLower(kind)) {
	case SelectName:
		if value == "" {
			return Selector{}, fmt.Errorf("%w: %q: name: needs a pattern", ErrBadSelector, spec)
		}
		if _, err := path.Match(value, ""); err != nil {
			return Selector{}, fmt.Errorf("%w: %q: bad glob pattern: %w", ErrBadSelector, spec, err)
		}
		return Selector{Kind: SelectName, Value: value}, nil
	case SelectUUID:
		if !validUUID(value) {
			return Selector{}, fmt.Errorf("%w: %q: not a UUID (want 8-4-4-4-12 hex digits)", ErrBadSelector, spec)
		}
		return Selector{Kind: SelectUUID, Value: strings.ToLower(value)}, nil
	case SelectIPAddr:
		if value == "" || strings.ContainsAny(value, " /\t") {
			return Selector{}, fmt.Errorf("%w: %q: ipaddr: needs an IP address or DNS name", ErrBadSelector, spec)
		}
		return Selector{Kind: SelectIPAddr, Value: value}, nil
	case SelectPowerState:
		switch PowerState(strings.ToLower(value)) {
		case PowerOn, PowerOff, PowerPaused:
			return Selector{Kind: SelectPowerState, Value: strings.ToLower(value)}, nil
		}
		return Selector{}, fmt.Errorf("%w: %q: power state must be on, off or paused", ErrBadSelector, spec)
	case SelectAny:
		if value != "" {
			return Selector{}, fmt.Errorf("%w: %q: any: takes no value", ErrBadSelector, spec)
		}
		return Selector{Kind: SelectAny}, nil
	case SelectExactName, SelectAttr:
	default:
		key := strings.ToLower(kind)
		if !attrKeyRE.MatchString(key) {
			break
		}
		if value == "" {
			return Selector{}, fmt.Errorf("%w: %q: %s: needs a pattern", ErrBadSelector, spec, key)
		}
		if _, err := path.Match(value, ""); err != nil {
			return Selector{}, fmt.Errorf("%w: %q: bad glob pattern: %w", ErrBadSelector, spec, err)
		}
		return Selector{Kind: SelectAttr, Key: key, Value: value}, nil
	}
	return Selector{}, fmt.Errorf("%w: %q: unknown kind %q (want name, uuid, ipaddr, powerstate, any or an attribute name)", ErrBadSelector, spec, kind)
}

// ParseSelectors parses several selectors, failing on the first bad one.
func ParseSelectors(specs []string) ([]Selector, error) {
	out := make([]Selector, 0, len(specs))
	for _, s := range specs {
		sel, err := ParseSelector(s)
		if err != nil {
			return nil, err
		}
		out = append(out, sel)
	}
	return out, nil
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

// Resolver resolves DNS names to addresses; *net.Resolver satisfies it.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Select returns the VMs matching any of the selectors, each once, in the
// order of vms. An ipaddr: selector holding a DNS name matches a VM whose
// agent reports that host name (VM.DNSName), and is resolved with r
// (net.DefaultResolver when nil) to match a VM having any of the resulting
// addresses. A name that does not resolve matches only by DNSName; the
// returned error then lists the resolution failures, and attribute
// selectors whose key no VM has (the VMs matched by the other selectors
// are still returned).
func Select(ctx context.Context, vms []VM, sels []Selector, r Resolver) ([]VM, error) {
	out, matches := SelectEach(ctx, vms, sels, r)
	var errs []error
	for _, m := range matches {
		if m.Err != nil && !errors.Is(m.Err, ErrNoMatch) {
			errs = append(errs, m.Err)
		}
	}
	return out, errors.Join(errs...)
}

// ErrNoMatch means a selector matched no VM.
var ErrNoMatch = errors.New("matches no VM")

// Match is what one selector matched.
type Match struct {
	Selector Selector
	// VMs are the names of the VMs it matched, in inventory order.
	VMs []string
	// Err is why it matched nothing: ErrNoMatch, or a DNS resolution error
	// of an ipaddr: selector.
	Err error
}

// SelectEach is Select that also says, per selector, what it matched: a
// selector matching nothing is reported (a typo in a schedule must never
// silently leave a VM unprotected).
func SelectEach(ctx context.Context, vms []VM, sels []Selector, r Resolver) ([]VM, []Match) {
	if r == nil {
		r = net.DefaultResolver
	}
	matches := make([]Match, len(sels))
	addrSets := make([]map[string]bool, len(sels))
	for i, s := range sels {
		matches[i].Selector = s
		if s.Kind == SelectAttr && !slices.ContainsFunc(vms, func(vm VM) bool { return len(vm.Attributes[s.Key]) > 0 }) {
			matches[i].Err = fmt.Errorf("%w: %s: no vm has a %q attribute", ErrBadSelector, s, s.Key)
		}
		if s.Kind != SelectIPAddr {
			continue
		}
		set := map[string]bool{}
		if ip := net.ParseIP(s.Value); ip != nil {
			set[ip.String()] = true
		} else {
			addrs, err := r.LookupHost(ctx, s.Value)
			if err != nil && !slices.ContainsFunc(vms, func(vm VM) bool { return sameHost(vm.DNSName, s.Value) }) {
				matches[i].Err = fmt.Errorf("resolve %s: %w", s, err)
			}
			for _, a := range addrs {
				if ip := net.ParseIP(a); ip != nil {
					set[ip.String()] = true
				}
			}
		}
		addrSets[i] = set
	}
	var out []VM
	for _, vm := range vms {
		picked := false
		for i, s := range sels {
			if s.matches(vm, addrSets[i]) {
				matches[i].VMs = append(matches[i].VMs, vm.Name)
				if !picked {
					out = append(out, vm)
					picked = true
				}
			}
		}
	}
	for i := range matches {
		if len(matches[i].VMs) == 0 && matches[i].Err == nil {
			matches[i].Err = fmt.Errorf("selector %s %w", matches[i].Selector, ErrNoMatch)
		}
	}
	return out, matches
}

func (s Selector) matches(vm VM, addrs map[string]bool) bool {
	switch s.Kind {
	case SelectAny:
		return true
	case SelectExactName:
		return vm.Name == s.Value
	case SelectName:
		ok, _ := path.Match(s.Value, vm.Name)
		return ok
	case SelectUUID:
		return strings.EqualFold(vm.UUID, s.Value)
	case SelectPowerState:
		return string(vm.State) == s.Value
	case SelectIPAddr:
		if sameHost(vm.DNSName, s.Value) {
			return true
		}
		for _, a := range vm.Addresses {
			if ip := net.ParseIP(a); ip != nil && addrs[ip.String()] {
				return true
			}
		}
	case SelectAttr:
		for _, v := range vm.Attributes[s.Key] {
			if ok, _ := path.Match(s.Value, v); ok {
				return true
			}
		}
	}
	return false
}

// sameHost reports whether a guest's host name names the host of a
// selector: equal ignoring case and a trailing dot, or a short guest name
// equal to the selector's first label.
func sameHost(guest, want string) bool {
	if guest == "" || net.ParseIP(want) != nil {
		return false
	}
	g := strings.TrimSuffix(strings.ToLower(guest), ".")
	w := strings.TrimSuffix(strings.ToLower(want), ".")
	if g == w {
		return true
	}
	first, _, _ := strings.Cut(w, ".")
	return !strings.Contains(g, ".") && g == first
}
