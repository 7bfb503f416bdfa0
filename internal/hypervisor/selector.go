package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
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
)

// Selector picks VMs, as written by a user: "name:web-*", "uuid:…",
// "ipaddr:10.0.0.5", "ipaddr:db.example.org", "powerstate:on", "any:", or a
// bare VM name.
type Selector struct {
	Kind  SelectorKind
	Value string
}

// String returns the selector in the syntax ParseSelector accepts.
func (s Selector) String() string {
	if s.Kind == SelectExactName {
		return s.Value
	}
	return string(s.Kind) + ":" + s.Value
}

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
	}
	return Selector{}, fmt.Errorf("%w: %q: unknown kind %q (want name, uuid, ipaddr, powerstate or any)", ErrBadSelector, spec, kind)
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
// order of vms. An ipaddr: selector holding a DNS name is resolved with r
// (net.DefaultResolver when nil) and matches a VM having any of the
// resulting addresses. A name that does not resolve matches nothing; the
// returned error then lists the resolution failures (the VMs matched by the
// other selectors are still returned).
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
		if s.Kind != SelectIPAddr {
			continue
		}
		set := map[string]bool{}
		if ip := net.ParseIP(s.Value); ip != nil {
			set[ip.String()] = true
		} else {
			addrs, err := r.LookupHost(ctx, s.Value)
			if err != nil {
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
		for _, a := range vm.Addresses {
			if ip := net.ParseIP(a); ip != nil && addrs[ip.String()] {
				return true
			}
		}
	}
	return false
}
