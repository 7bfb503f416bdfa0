package repo

import (
	"container/list"
	"sync"
)

// chunkCache is an LRU of decoded chunks bounded in bytes.
type chunkCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ll    *list.List
	items map[Digest]*list.Element
}

type cacheEntry struct {
	d    Digest
	data []byte
}

func newChunkCache(max int64) *chunkCache {
	return &chunkCache{max: max, ll: list.New(), items: make(map[Digest]*list.Element)}
}

func (c *chunkCache) get(d Digest) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[d]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*cacheEntry).data, true
	}
	return nil, false
}

func (c *chunkCache) add(d Digest, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[d]; ok || int64(len(data)) > c.max {
		return
	}
	c.items[d] = c.ll.PushFront(&cacheEntry{d: d, data: data})
	c.size += int64(len(data))
	for c.size > c.max {
		e := c.ll.Back()
		ce := e.Value.(*cacheEntry)
		c.ll.Remove(e)
		delete(c.items, ce.d)
		c.size -= int64(len(ce.data))
	}
}
