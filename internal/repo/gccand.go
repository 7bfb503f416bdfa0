package repo

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// candidates are the objects a gc run may delete: chunks as digests with
// their sizes, sorted (40 bytes each, where a map of names would take
// several times that), other objects (indexes) by name.
type candidates struct {
	chunks []candChunk
	other  map[string]int64
	sorted bool
}

type candChunk struct {
	d    Digest
	size int64 // -1: no longer a candidate
}

func newCandidates() *candidates { return &candidates{other: map[string]int64{}} }

// add records object name of the given size (while listing).
func (c *candidates) add(name string, size int64) {
	if d, ok := chunkDigest(name); ok {
		c.chunks = append(c.chunks, candChunk{d, size})
		c.sorted = false
		return
	}
	c.other[name] = size
}

// chunkDigest parses a chunk object name ("chunks/ab/ab…").
func chunkDigest(name string) (Digest, bool) {
	if !strings.HasPrefix(name, "chunks/") {
		return Digest{}, false
	}
	d, err := parseDigest(name[strings.LastIndexByte(name, '/')+1:])
	if err != nil || chunkName(d) != name {
		return Digest{}, false
	}
	return d, true
}

func (c *candidates) sort() {
	if !c.sorted {
		slices.SortFunc(c.chunks, func(a, b candChunk) int { return bytes.Compare(a.d[:], b.d[:]) })
		c.sorted = true
	}
}

func (c *candidates) find(d Digest) *candChunk {
	c.sort()
	i, ok := slices.BinarySearchFunc(c.chunks, d, func(e candChunk, d Digest) int { return bytes.Compare(e.d[:], d[:]) })
	if !ok || c.chunks[i].size < 0 {
		return nil
	}
	return &c.chunks[i]
}

// dropChunk and drop remove an object from the candidates.
func (c *candidates) dropChunk(d Digest) {
	if e := c.find(d); e != nil {
		e.size = -1
	}
}

func (c *candidates) drop(name string) {
	if d, ok := chunkDigest(name); ok {
		c.dropChunk(d)
		return
	}
	delete(c.other, name)
}

// size returns the size of candidate name.
func (c *candidates) size(name string) int64 {
	if d, ok := chunkDigest(name); ok {
		if e := c.find(d); e != nil {
			return e.size
		}
		return 0
	}
	return c.other[name]
}

// each calls fn for every candidate, chunks first (sorted), then the
// others.
func (c *candidates) each(fn func(name string, size int64) error) error {
	c.sort()
	for _, e := range c.chunks {
		if e.size >= 0 {
			if err := fn(chunkName(e.d), e.size); err != nil {
				return err
			}
		}
	}
	for n, s := range c.other {
		if err := fn(n, s); err != nil {
			return err
		}
	}
	return nil
}

func (c *candidates) names() []string {
	var out []string
	_ = c.each(func(n string, _ int64) error { out = append(out, n); return nil })
	return out
}

// markerJSON encodes the gc marker of these candidates (spec §8) without
// building the list of names first.
func (c *candidates) markerJSON(id string, created time.Time) ([]byte, error) {
	head, err := json.Marshal(struct {
		ID      string    `json:"id"`
		Created time.Time `json:"created"`
	}{id, created})
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Write(head[:len(head)-1])
	b.WriteString(`,"candidates":[`)
	first := true
	_ = c.each(func(n string, _ int64) error {
		if !first {
			b.WriteByte(',')
		}
		first = false
		// Object names are [a-z0-9._-/]: nothing to escape.
		b.WriteByte('"')
		b.WriteString(n)
		b.WriteByte('"')
		return nil
	})
	b.WriteString("]}")
	return b.Bytes(), nil
}
