package extract

import (
	"container/list"
	"context"
	"fmt"
	"path"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/kurabackup/kura/internal/fsread"
)

// dirCache keeps descriptors of destination directories, opened from the
// root one component at a time with O_NOFOLLOW. Not safe for concurrent
// use: each worker has its own.
type dirCache struct {
	root int
	lru  *list.List // of *fdEntry, most recent first
	fds  map[string]*list.Element
}

type fdEntry struct {
	name string
	fd   int
}

// maxDirFDs bounds the directory descriptors one cache keeps open.
const maxDirFDs = 128

func newDirCache(root int) *dirCache {
	return &dirCache{root: root, lru: list.New(), fds: map[string]*list.Element{}}
}

// fd returns a descriptor of the directory rel ("" is the root), valid
// until the cache's next call.
func (c *dirCache) fd(rel string) (int, error) {
	if rel == "" || rel == "." {
		return c.root, nil
	}
	if el, ok := c.fds[rel]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*fdEntry).fd, nil
	}
	parent, err := c.fd(path.Dir(rel))
	if err != nil {
		return -1, err
	}
	fd, err := unix.Openat(parent, path.Base(rel), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open directory %s: %w", fsread.Escape(rel), err)
	}
	c.fds[rel] = c.lru.PushFront(&fdEntry{rel, fd})
	for c.lru.Len() > maxDirFDs {
		el := c.lru.Back()
		e := el.Value.(*fdEntry)
		c.lru.Remove(el)
		delete(c.fds, e.name)
		unix.Close(e.fd)
	}
	return fd, nil
}

// parent returns the parent descriptor and base name of a destination
// path.
func (c *dirCache) parent(name string) (int, string, error) {
	fd, err := c.fd(path.Dir(name))
	return fd, path.Base(name), err
}

func (c *dirCache) close() {
	for _, el := range c.fds {
		unix.Close(el.Value.(*fdEntry).fd)
	}
	c.fds = map[string]*list.Element{}
	c.lru.Init()
}

// dirPool runs tasks on a few workers, each with its own dirCache. The
// first error is kept and returned by every later wait.
type dirPool struct {
	root    int
	once    sync.Once
	tasks   chan func(*dirCache) error
	pending sync.WaitGroup
	workers sync.WaitGroup
	mu      sync.Mutex
	err     error
}

// poolWorkers is the number of concurrent creators (the kernel creates
// entries of different directories in parallel).
const poolWorkers = 4

func newDirPool(root int) *dirPool {
	return &dirPool{root: root, tasks: make(chan func(*dirCache) error, 256)}
}

func (p *dirPool) start() {
	for range poolWorkers {
		p.workers.Add(1)
		go func() {
			defer p.workers.Done()
			c := newDirCache(p.root)
			defer c.close()
			for t := range p.tasks {
				// Tasks run even after an error: they close what they hold.
				if err := t(c); err != nil {
					p.mu.Lock()
					if p.err == nil {
						p.err = err
					}
					p.mu.Unlock()
				}
				p.pending.Done()
			}
		}()
	}
}

func (p *dirPool) submit(t func(*dirCache) error) {
	p.once.Do(p.start)
	p.pending.Add(1)
	p.tasks <- t
}

// wait blocks until every task submitted so far has run.
func (p *dirPool) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { p.pending.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// close stops the workers (after their tasks) and closes their caches.
func (p *dirPool) close() {
	p.once.Do(func() {}) // never start after close
	close(p.tasks)
	p.workers.Wait()
}
