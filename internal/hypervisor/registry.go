package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
)

// ErrBadURI means a connection URI names no registered connector or is
// malformed for its connector.
var ErrBadURI = errors.New("unsupported connection uri")

// OpenOptions are given to a driver's Open.
type OpenOptions struct {
	// Logger receives the connector's logs (discarded when nil).
	Logger *slog.Logger
	// Password returns the secret for a connection that needs one (vSphere
	// logins). It is called only by such connectors, and never reads the
	// URI: passwords are not put on command lines.
	Password func() (string, error)
}

// Driver is one kind of connector: the URI schemes it serves, how to open
// a connection, and the configuration formats it owns.
type Driver struct {
	// Kind is Capabilities.Kind of its connections.
	Kind string
	// Schemes are the URI schemes it serves ("qemu", "qemu+ssh", "vsphere").
	Schemes []string
	// Open connects to uri.
	Open func(ctx context.Context, uri string, opts OpenOptions) (Connector, error)
	// Formats are the configuration formats its sessions save, with what
	// kura can do with them without a connection.
	Formats []ConfigFormat
}

// ConfigFormat knows one saved-configuration format without a connection:
// how to write it next to exported disk files.
type ConfigFormat struct {
	// Name is the format's name as points record it (config_format).
	Name string
	// ImageFormat returns the image format an export writes a disk in when
	// the user did not choose one, from the disk's saved format.
	ImageFormat func(diskFormat string) string
	// ImageFormats are the image formats ExportConfig can point disks at.
	ImageFormats []string
	// ExportConfig renders the saved configuration for disks exported as
	// files in one directory: the VM keeps its identity, its disks point
	// at the files.
	ExportConfig func(src *RestoreSource, disks []ExportedDisk) (ExportedConfig, error)
}

// ExportedDisk is one disk written by an export.
type ExportedDisk struct {
	Target string
	// Path is the absolute local path of the image file.
	Path   string
	Format string
	Size   int64
}

// ExportedConfig is the configuration file an export writes beside the
// images.
type ExportedConfig struct {
	// File is its base name ("web.xml", "web.vmx").
	File string
	Data []byte
	// Hint tells the user how to use it ("virsh define web.xml").
	Hint  string
	Notes []string
}

var registry struct {
	sync.Mutex
	drivers []*Driver
}

// Register adds a driver. It panics when a scheme or format is registered
// twice (a programming error).
func Register(d Driver) {
	registry.Lock()
	defer registry.Unlock()
	for _, o := range registry.drivers {
		for _, s := range d.Schemes {
			if slices.Contains(o.Schemes, s) {
				panic("hypervisor: scheme " + s + " registered twice")
			}
		}
		for _, f := range d.Formats {
			if _, ok := formatIn(o, f.Name); ok {
				panic("hypervisor: config format " + f.Name + " registered twice")
			}
		}
	}
	registry.drivers = append(registry.drivers, &d)
}

func formatIn(d *Driver, name string) (ConfigFormat, bool) {
	for _, f := range d.Formats {
		if f.Name == name {
			return f, true
		}
	}
	return ConfigFormat{}, false
}

// Schemes lists the registered URI schemes, sorted.
func Schemes() []string {
	registry.Lock()
	defer registry.Unlock()
	var out []string
	for _, d := range registry.drivers {
		out = append(out, d.Schemes...)
	}
	sort.Strings(out)
	return out
}

// Open connects to uri through the driver registered for its scheme
// ("qemu:///system", "qemu+ssh://root@host/system",
// "vsphere://user@vcenter/DC").
func Open(ctx context.Context, uri string, opts OpenOptions) (Connector, error) {
	scheme, _, ok := strings.Cut(uri, ":")
	if !ok || scheme == "" {
		return nil, fmt.Errorf("%w: %q has no scheme (want one of %s)", ErrBadURI, uri, strings.Join(Schemes(), ", "))
	}
	scheme = strings.ToLower(scheme)
	registry.Lock()
	var drv *Driver
	for _, d := range registry.drivers {
		if slices.Contains(d.Schemes, scheme) {
			drv = d
		}
	}
	registry.Unlock()
	if drv == nil {
		return nil, fmt.Errorf("%w: %q: no connector for scheme %q (known: %s)", ErrBadURI, uri, scheme, strings.Join(Schemes(), ", "))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Password == nil {
		opts.Password = func() (string, error) {
			return "", errors.New("no password available for this connection")
		}
	}
	return drv.Open(ctx, uri, opts)
}

// LookupFormat returns the registered configuration format of that name
// and the kind of connector owning it.
func LookupFormat(name string) (ConfigFormat, string, bool) {
	registry.Lock()
	defer registry.Unlock()
	for _, d := range registry.drivers {
		if f, ok := formatIn(d, name); ok {
			return f, d.Kind, true
		}
	}
	return ConfigFormat{}, "", false
}
