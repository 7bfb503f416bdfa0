package libvirt

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// Stream calls (a screenshot) run on a connection of their own. go-libvirt
// can wedge a connection for good when a stream packet arrives after the
// call that asked for it has returned (its reader routes the packet to a
// caller that no longer listens, holding the lock every later call
// needs): seen once in a boot verification, whose screenshot then waited
// forever. On their own connection, such a call costs at most its timeout
// and that connection.

// streamTimeout bounds a stream call when its context has no deadline.
const streamTimeout = 60 * time.Second

// recordingDialer remembers the connection it dialed, so that a wedged
// connection's socket can be closed without a goodbye call.
type recordingDialer struct {
	socket.Dialer
	mu   sync.Mutex
	conn net.Conn
}

func (d *recordingDialer) Dial() (net.Conn, error) {
	c, err := d.Dialer.Dial()
	d.mu.Lock()
	d.conn = c
	d.mu.Unlock()
	return c, err
}

// abandon closes the socket under a connection that cannot be closed
// politely (its goroutines stay blocked; the file descriptor is freed).
func (d *recordingDialer) abandon() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		_ = d.conn.Close()
	}
}

// dialLocal opens a connection of its own to the local daemon, with the
// dialer that can close its socket.
func dialLocal(uri string) (*golibvirt.Libvirt, *recordingDialer, error) {
	d := &recordingDialer{Dialer: dialers.NewLocal(dialers.WithLocalTimeout(10 * time.Second))}
	lv := golibvirt.NewWithDialer(d)
	if err := lv.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		return nil, nil, fmt.Errorf("connect to libvirt %s: %w", uri, err)
	}
	return lv, d, nil
}

// streamCall runs call on a new connection to the same daemon, giving up
// when ctx ends.
func (c *Connector) streamCall(ctx context.Context, what string, call func(*golibvirt.Libvirt) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, streamTimeout)
		defer cancel()
	}
	lv, d := c.lv, (*recordingDialer)(nil)
	if !c.remote {
		// A remote connection's call runs on the shared connection:
		// bounded in time all the same, but a wedge there stays.
		var err error
		if lv, d, err = dialLocal(c.uri); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	ended, err := bounded(ctx, lv, call)
	switch {
	case d == nil:
	case ended:
		_ = lv.Disconnect()
	default:
		d.abandon()
	}
	if !ended {
		return fmt.Errorf("%s: libvirt's stream did not end: %w", what, err)
	}
	return err
}

// bounded runs call on lv until it returns (ended: its error) or ctx ends
// (not ended: the context's cause); the call then goes on in the
// background until its connection is closed.
func bounded(ctx context.Context, lv *golibvirt.Libvirt, call func(*golibvirt.Libvirt) error) (ended bool, err error) {
	done := make(chan error, 1)
	go func() { done <- call(lv) }()
	select {
	case err := <-done:
		return true, err
	case <-ctx.Done():
		return false, context.Cause(ctx)
	}
}

// Calls that wait for the guest (its agent) can block in libvirtd for as
// long as the guest does not answer: forever when it was paused between
// kura reading its state and asking (seen in CI: an instant VM paused when
// the NBD server behind it was killed). go-libvirt cannot abandon a call on
// a connection it keeps using, so such calls go through an auxiliary
// connection, bounded in time, and a connection that timed out is dropped
// (closing its socket fails the calls still waiting on it) and replaced on
// the next call.

// agentTimeout bounds one call that waits for a guest agent.
const agentTimeout = 15 * time.Second

// auxConn is the auxiliary connection of a Connector.
type auxConn struct {
	mu sync.Mutex
	lv *golibvirt.Libvirt
	d  *recordingDialer
}

// get returns the connection, dialing it when there is none.
func (a *auxConn) get(uri string) (*golibvirt.Libvirt, *recordingDialer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lv != nil {
		return a.lv, a.d, nil
	}
	lv, d, err := dialLocal(uri)
	if err != nil {
		return nil, nil, err
	}
	a.lv, a.d = lv, d
	return lv, d, nil
}

// drop abandons the connection of dialer d if it is still the current one.
func (a *auxConn) drop(d *recordingDialer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.d == d {
		a.lv, a.d = nil, nil
	}
	d.abandon()
}

// close disconnects the connection, if any.
func (a *auxConn) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lv != nil {
		_ = a.lv.Disconnect()
		a.lv, a.d = nil, nil
	}
}

// agentCall runs call, which waits for a guest, on the auxiliary
// connection, giving up after agentTimeout or when ctx ends. A remote
// connection's call runs on the shared connection, unbounded.
func (c *Connector) agentCall(ctx context.Context, what string, call func(*golibvirt.Libvirt) error) error {
	return c.agentCallFor(ctx, what, agentTimeout, call)
}

// agentCallFor is agentCall giving up after limit.
func (c *Connector) agentCallFor(ctx context.Context, what string, limit time.Duration, call func(*golibvirt.Libvirt) error) error {
	if c.remote {
		return call(c.lv)
	}
	lv, d, err := c.aux.get(c.uri)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	ended, err := bounded(ctx, lv, call)
	if !ended {
		c.aux.drop(d)
		return fmt.Errorf("%s: the guest did not answer: %w", what, err)
	}
	return err
}
