// Package connectors links kura's hypervisor connectors into the registry
// of package hypervisor: importing it (for its side effect) makes
// hypervisor.Open serve qemu:// and qemu+ssh|tcp|tls:// (libvirt) and
// vsphere:// URIs, and makes the configuration formats of their points
// known to exports. Nothing else needs to name a connector.
package connectors

import (
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/libvirt"
	"github.com/kurabackup/kura/internal/hypervisor/vsphere"
)

func init() {
	hypervisor.Register(libvirt.Driver())
	hypervisor.Register(vsphere.Driver())
}
