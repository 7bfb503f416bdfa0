package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// DefaultURI is the local libvirt daemon, where kura runs by default.
const DefaultURI = "qemu:///system"

// DefaultQemuScratchDir holds the NBD sockets and scratch files of backup
// sessions of running VMs: QEMU (running as its own user) must be able to
// create them, so they cannot live in root's private directories.
const DefaultQemuScratchDir = "/var/lib/libvirt/qemu/kura"

// DefaultNBDConnections is how many connections read each disk when its
// NBD export allows several.
const DefaultNBDConnections = 4

// Prefix starts the name of every checkpoint, bitmap and scratch entry
// kura creates.
const Prefix = "kura-"

// ErrBadURI means the connection URI is not supported (it is
// hypervisor.ErrBadURI).
var ErrBadURI = hypervisor.ErrBadURI

// Connector talks to one libvirt daemon. It is safe for concurrent use.
type Connector struct {
	uri string
	lv  *golibvirt.Libvirt
	log *slog.Logger

	// QemuScratchDir is where sessions of running VMs put their sockets
	// and scratch files (DefaultQemuScratchDir). Set before first use.
	QemuScratchDir string
	// QemuNBD and QemuImg are the tools used for shut-off VMs.
	QemuNBD, QemuImg string
	// NBDConnections is how many NBD connections read each disk of a
	// backup when the export allows several (0: DefaultNBDConnections).
	NBDConnections int
	// remote is true for a libvirt on another host (qemu+tcp, qemu+ssh,
	// qemu+tls): its files are reached through storage pools only.
	remote bool
	// aux carries calls that wait for a guest (stream.go).
	aux auxConn
}

// Connect opens a connection to a libvirt daemon: qemu:///system (the local
// daemon's unix socket, everything supported) or a remote one through
// qemu+tcp, qemu+ssh or qemu+tls (inventory and restores into its storage
// pools; backups run on the host itself).
func Connect(ctx context.Context, uri string, logger *slog.Logger) (*Connector, error) {
	if uri == "" {
		uri = DefaultURI
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if uri != DefaultURI {
		return connectRemote(uri, logger)
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	lv := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithLocalTimeout(timeout)))
	if err := lv.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		return nil, fmt.Errorf("connect to libvirt %s: %w", uri, err)
	}
	return &Connector{uri: uri, lv: lv, log: logger, QemuScratchDir: DefaultQemuScratchDir,
		QemuNBD: "qemu-nbd", QemuImg: "qemu-img"}, nil
}

// URI implements hypervisor.Connector.
func (c *Connector) URI() string { return c.uri }

// Host implements hypervisor.Connector.
func (c *Connector) Host(context.Context) (string, error) {
	h, err := c.lv.ConnectGetHostname()
	if err != nil {
		return "", fmt.Errorf("libvirt hostname: %w", err)
	}
	return h, nil
}

// Close implements hypervisor.Connector.
func (c *Connector) Close() error {
	c.aux.close()
	if err := c.lv.Disconnect(); err != nil {
		return fmt.Errorf("disconnect from libvirt: %w", err)
	}
	return nil
}

// lvCode returns the libvirt error code of err (0 when none).
func lvCode(err error) golibvirt.ErrorNumber {
	var e golibvirt.Error
	if errors.As(err, &e) {
		return golibvirt.ErrorNumber(e.Code)
	}
	return 0
}

// mapErr wraps libvirt errors with the matching hypervisor sentinel.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	switch lvCode(err) {
	case golibvirt.ErrNoDomain:
		return fmt.Errorf("%s: %w: %w", op, hypervisor.ErrVMNotFound, err)
	case golibvirt.ErrNoDomainCheckpoint, golibvirt.ErrCheckpointInconsistent:
		return fmt.Errorf("%s: %w: %w", op, hypervisor.ErrCheckpointMissing, err)
	case golibvirt.ErrAgentUnresponsive:
		return fmt.Errorf("%s: %w: %w", op, hypervisor.ErrNoAgent, err)
	case golibvirt.ErrOperationTimeout:
		return fmt.Errorf("%s: %w: %w", op, hypervisor.ErrBusy, err)
	}
	if m := err.Error(); strings.Contains(m, "another job") || strings.Contains(m, "job is active") ||
		strings.Contains(m, "block job") || strings.Contains(m, "backup job") {
		return fmt.Errorf("%s: %w: %w", op, hypervisor.ErrBusy, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// qemuOwner returns the uid and gid QEMU runs as: the owner of libvirt's
// qemu state directory.
func qemuOwner() (uid, gid int, err error) {
	fi, err := os.Stat("/var/lib/libvirt/qemu")
	if err != nil {
		return 0, 0, fmt.Errorf("find the qemu user: %w", err)
	}
	return statOwner(fi)
}

var _ hypervisor.Connector = (*Connector)(nil)
