package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// ErrUnknownScheme means a repository location names a scheme no linked-in
// backend registered.
var ErrUnknownScheme = errors.New("unknown repository location scheme")

// OpenOptions are what every backend opener receives.
type OpenOptions struct {
	// Create makes the backend create what it needs to exist (a local
	// directory); openers of stores that cannot be created (an S3 bucket)
	// check that it exists either way.
	Create bool
	Logger *slog.Logger
	// ReserveFor names the objects (locks, gc markers) that may use space
	// a backend sets aside for when its store is full (a local directory
	// keeps a reserve file); nil = no reserve.
	ReserveFor func(name string) bool
}

// Opener opens a backend for the part of a location after "<scheme>:".
type Opener func(ctx context.Context, rest string, opts OpenOptions) (Backend, error)

var (
	regMu    sync.RWMutex
	registry = map[string]Opener{}
)

var schemeRE = regexp.MustCompile(`^[a-z][a-z0-9+.-]*$`)

// Register makes a backend available under scheme. Backends call it from
// an init function; registering a scheme twice panics.
func Register(scheme string, open Opener) {
	if !schemeRE.MatchString(scheme) {
		panic("storage: invalid scheme " + scheme)
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[scheme]; dup {
		panic("storage: scheme registered twice: " + scheme)
	}
	registry[scheme] = open
}

// Schemes returns the registered schemes, sorted.
func Schemes() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]string, 0, len(registry))
	for s := range registry {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// SplitLocation returns a location's scheme and the rest. A location
// without a scheme (a bare path such as "/srv/kura" or "./repo") is
// "local". A scheme is the text before the first ":" when it is made of
// [a-z0-9+.-], starts with a letter and holds no "/"; so "s3:https://h/b"
// is ("s3", "https://h/b") and "./a:b" is ("local", "./a:b").
func SplitLocation(location string) (scheme, rest string) {
	i := strings.IndexByte(location, ':')
	if i <= 0 || strings.ContainsRune(location[:i], '/') {
		return "local", location
	}
	s := strings.ToLower(location[:i])
	if !schemeRE.MatchString(s) {
		return "local", location
	}
	return s, location[i+1:]
}

// Open opens the backend a location names, through the opener registered
// for its scheme. An unknown scheme fails with ErrUnknownScheme and the
// list of known ones; nothing is created.
func Open(ctx context.Context, location string, opts OpenOptions) (Backend, error) {
	if location == "" {
		return nil, errors.New("empty repository location")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	scheme, rest := SplitLocation(location)
	regMu.RLock()
	open := registry[scheme]
	regMu.RUnlock()
	if open == nil {
		known := Schemes()
		for i, s := range known {
			known[i] = s + ":"
		}
		return nil, fmt.Errorf("%q: %w %q: known schemes are %s (a local path needs no scheme)",
			location, ErrUnknownScheme, scheme+":", strings.Join(known, ", "))
	}
	return open(ctx, rest, opts)
}
