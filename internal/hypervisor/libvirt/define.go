package libvirt

import (
	"context"
	"fmt"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// The restore-target half of the connector: define, undefine, start and
// stop domains, and find storage pools' directories.

// DefineVM implements hypervisor.Connector. The XML is validated against
// libvirt's schema. A domain with the same name and UUID is replaced (its
// definition updated); another domain holding the name or the UUID is an
// ErrExists.
func (c *Connector) DefineVM(ctx context.Context, config []byte) (hypervisor.VM, error) {
	var x libvirtxml.Domain
	if err := x.Unmarshal(string(config)); err != nil {
		return hypervisor.VM{}, fmt.Errorf("define vm: parse domain xml: %w", err)
	}
	if x.Name == "" {
		return hypervisor.VM{}, fmt.Errorf("define vm: domain xml has no name")
	}
	if d, err := c.lv.DomainLookupByName(x.Name); err == nil {
		if x.UUID == "" || !sameUUID(formatUUID(d.UUID), x.UUID) {
			return hypervisor.VM{}, fmt.Errorf("define vm %s: %w: a vm of that name has uuid %s", x.Name, hypervisor.ErrExists, formatUUID(d.UUID))
		}
	}
	if u, ok := parseUUID(x.UUID); ok {
		if d, err := c.lv.DomainLookupByUUID(u); err == nil && d.Name != x.Name {
			return hypervisor.VM{}, fmt.Errorf("define vm %s: %w: uuid %s belongs to vm %s", x.Name, hypervisor.ErrExists, x.UUID, d.Name)
		}
	}
	d, err := c.lv.DomainDefineXMLFlags(string(config), golibvirt.DomainDefineValidate)
	if err != nil {
		if lvCode(err) == golibvirt.ErrDomExist || strings.Contains(err.Error(), "already exists") {
			return hypervisor.VM{}, fmt.Errorf("define vm %s: %w: %w", x.Name, hypervisor.ErrExists, err)
		}
		return hypervisor.VM{}, mapErr("define vm "+x.Name, err)
	}
	c.log.Info("vm defined", "vm", d.Name, "uuid", formatUUID(d.UUID))
	return c.describe(ctx, d)
}

func sameUUID(a, b string) bool {
	n := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "-", "")) }
	return n(a) == n(b)
}

// UndefineVM implements hypervisor.Connector. The disk images and the
// UEFI variable store are kept; a managed-save image and checkpoint and
// snapshot metadata are removed.
func (c *Connector) UndefineVM(ctx context.Context, nameOrUUID string) error {
	d, err := c.lookup(nameOrUUID)
	if err != nil {
		return err
	}
	if err := c.stop(d); err != nil {
		return err
	}
	flags := golibvirt.DomainUndefineManagedSave | golibvirt.DomainUndefineSnapshotsMetadata |
		golibvirt.DomainUndefineCheckpointsMetadata | golibvirt.DomainUndefineKeepNvram
	if err := c.lv.DomainUndefineFlags(d, flags); err != nil {
		return mapErr("undefine vm "+d.Name, err)
	}
	c.log.Info("vm undefined", "vm", d.Name)
	return nil
}

// StartVM implements hypervisor.Connector.
func (c *Connector) StartVM(ctx context.Context, nameOrUUID string) error {
	d, err := c.lookup(nameOrUUID)
	if err != nil {
		return err
	}
	if on, err := c.active(d); err != nil || on {
		return err
	}
	if err := c.lv.DomainCreate(d); err != nil {
		return mapErr("start vm "+d.Name, err)
	}
	return nil
}

// StopVM implements hypervisor.Connector.
func (c *Connector) StopVM(ctx context.Context, nameOrUUID string) error {
	d, err := c.lookup(nameOrUUID)
	if err != nil {
		return err
	}
	return c.stop(d)
}

func (c *Connector) active(d golibvirt.Domain) (bool, error) {
	on, err := c.lv.DomainIsActive(d)
	if err != nil {
		return false, mapErr("state of "+d.Name, err)
	}
	return on == 1, nil
}

// stop destroys a running domain (no-op when it is off).
func (c *Connector) stop(d golibvirt.Domain) error {
	on, err := c.active(d)
	if err != nil || !on {
		return err
	}
	if err := c.lv.DomainDestroy(d); err != nil {
		if on, aerr := c.active(d); aerr == nil && !on {
			return nil // stopped meanwhile
		}
		return mapErr("stop vm "+d.Name, err)
	}
	c.log.Info("vm stopped", "vm", d.Name)
	return nil
}

// StoragePoolPath returns the target directory of a "dir" (or
// "fs"/"netfs", mounted) storage pool; ErrUnsupported for pools of other
// types.
func (c *Connector) StoragePoolPath(ctx context.Context, pool string) (string, error) {
	p, err := c.lv.StoragePoolLookupByName(pool)
	if err != nil {
		return "", mapErr("no storage pool "+pool, err)
	}
	raw, err := c.lv.StoragePoolGetXMLDesc(p, 0)
	if err != nil {
		return "", mapErr("storage pool "+pool, err)
	}
	var x libvirtxml.StoragePool
	if err := x.Unmarshal(raw); err != nil {
		return "", fmt.Errorf("parse xml of storage pool %s: %w", pool, err)
	}
	switch x.Type {
	case "dir", "fs", "netfs":
	default:
		return "", fmt.Errorf("storage pool %s is of type %q: %w (only directory pools; give a directory instead)", pool, x.Type, hypervisor.ErrUnsupported)
	}
	if x.Target == nil || x.Target.Path == "" {
		return "", fmt.Errorf("storage pool %s has no target path: %w", pool, hypervisor.ErrUnsupported)
	}
	return x.Target.Path, nil
}
