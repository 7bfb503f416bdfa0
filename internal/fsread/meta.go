package fsread

import (
	"container/list"
	"io"
	"sync"
)

// Metadata page cache. Inode tables, directory blocks, extent-tree and
// xattr blocks are read in small pieces, in directory order, all over the
// volume; file data is read once, in large runs. Metadata reads go
// through this cache so that reading data (which cycles the repository's
// chunk cache) never evicts them, and a directory walk reads each
// metadata page from the disk reader once.
const (
	metaPage     = 32 << 10
	metaMaxBytes = 64 << 20
)

type metaCache struct {
	r    io.ReaderAt
	size int64 // volume size

	mu    sync.Mutex
	ll    *list.List // of *metaPageEntry, most recent first
	pages map[int64]*list.Element
}

type metaPageEntry struct {
	off  int64
	data []byte
}

func newMetaCache(r io.ReaderAt, size int64) *metaCache {
	return &metaCache{r: r, size: size, ll: list.New(), pages: map[int64]*list.Element{}}
}

// ReadAt reads through the page cache. Short pages at the end of the
// volume give io.EOF like the volume itself.
func (c *metaCache) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.ErrUnexpectedEOF
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		if pos >= c.size {
			return done, io.EOF
		}
		start := pos - pos%metaPage
		page, err := c.page(start)
		if err != nil {
			return done, err
		}
		in := int(pos - start)
		if in >= len(page) {
			return done, io.EOF
		}
		done += copy(p[done:], page[in:])
	}
	return done, nil
}

func (c *metaCache) page(start int64) ([]byte, error) {
	c.mu.Lock()
	if el, ok := c.pages[start]; ok {
		c.ll.MoveToFront(el)
		c.mu.Unlock()
		return el.Value.(*metaPageEntry).data, nil
	}
	c.mu.Unlock()
	n := int64(metaPage)
	if rem := c.size - start; rem < n {
		n = rem
	}
	buf := make([]byte, n)
	k, err := c.r.ReadAt(buf, start)
	if err != nil && !(err == io.EOF && int64(k) == n) {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.pages[start]; ok {
		return el.Value.(*metaPageEntry).data, nil
	}
	c.pages[start] = c.ll.PushFront(&metaPageEntry{off: start, data: buf})
	for c.ll.Len()*metaPage > metaMaxBytes {
		el := c.ll.Back()
		c.ll.Remove(el)
		delete(c.pages, el.Value.(*metaPageEntry).off)
	}
	return buf, nil
}
