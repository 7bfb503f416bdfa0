package benchmark

import (
	"io"
	"math/rand/v2"
)

// words is the vocabulary of the synthetic text half of test images: log
// and configuration-like text compresses like real guest text files do.
var words = []string{
	"the", "backup", "of", "virtual", "machine", "disk", "image", "kernel", "error", "warning",
	"info", "started", "stopped", "service", "network", "interface", "address", "config", "user",
	"root", "daemon", "systemd", "session", "opened", "closed", "for", "with", "from", "to", "and",
	"2026-11-21", "12:00:00", "localhost", "request", "GET", "POST", "/api/v1/items", "200", "404",
	"500", "ms", "bytes", "connection", "timeout", "retry", "database", "query", "table", "index",
	"commit", "transaction", "lock", "page", "cache", "hit", "miss", "memory", "cpu", "load",
}

// Image is a deterministic synthetic disk image: the first half random
// bytes (incompressible), the second half text lines (compressible).
type Image struct {
	Size int64
	Seed uint64
}

// WriteTo writes the image to w.
func (im Image) WriteTo(w io.Writer) (int64, error) {
	const block = 1 << 20
	buf := make([]byte, block)
	var written int64
	for written < im.Size {
		n := int64(block)
		if im.Size-written < n {
			n = im.Size - written
		}
		im.fill(buf[:n], written)
		m, err := w.Write(buf[:n])
		written += int64(m)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// fill writes the 1 MiB-aligned block starting at off into p.
func (im Image) fill(p []byte, off int64) {
	r := rand.New(rand.NewPCG(im.Seed, uint64(off)))
	if off < im.Size/2 {
		for i := 0; i+8 <= len(p); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8; j++ {
				p[i+j] = byte(v >> (8 * j))
			}
		}
		for i := len(p) / 8 * 8; i < len(p); i++ {
			p[i] = byte(r.Uint32())
		}
		return
	}
	i := 0
	for i < len(p) {
		w := words[r.IntN(len(words))]
		i += copy(p[i:], w)
		if i < len(p) {
			if r.IntN(12) == 0 {
				p[i] = '\n'
			} else {
				p[i] = ' '
			}
			i++
		}
	}
}
