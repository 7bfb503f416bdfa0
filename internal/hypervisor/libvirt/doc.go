// Package libvirt is the hypervisor.Connector for libvirt/QEMU hosts,
// spoken to through libvirt's RPC protocol (github.com/digitalocean/go-libvirt,
// no cgo) on the local socket of qemu:///system.
//
// Inventory comes from the domain XML (libvirt.org/go/libvirtxml): a disk
// is protectable when it is a file (or a storage volume resolving to one)
// in qcow2 or raw format with device "disk". CD-ROMs, floppies,
// pass-through LUNs and network disks are listed as not protectable, with
// the reason.
//
// A running VM is backed up with libvirt's backup API in pull mode: one
// DomainBackupBegin creates the new checkpoint (a persistent dirty bitmap
// per qcow2 disk, named like the checkpoint) atomically with the point in
// time, and exports each disk read-only over NBD on a unix socket, with the
// meta contexts base:allocation (holes and zeros) and, for an incremental
// backup, qemu:dirty-bitmap:backup-<target> (blocks changed since the base
// checkpoint). Guest writes during the session are diverted by QEMU's
// copy-before-write into per-disk scratch files. The job ends with an abort
// (there is nothing to "finish" in pull mode); libvirt then removes the
// socket and the scratch files.
//
// A shut-off VM is backed up by exposing each disk image read-only with
// qemu-nbd; change tracking uses persistent qcow2 bitmaps added with
// qemu-img, named like the checkpoints, so a base taken while the VM ran
// remains usable while it is off.
//
// As a restore target (define.go) the connector defines domains from XML
// (validated by libvirt; a name or UUID held by another domain is
// hypervisor.ErrExists), starts them, powers them off, undefines them
// (checkpoint, snapshot and managed-save metadata removed; disks and nvram
// kept) and resolves directory storage pools to their paths.
//
// Every checkpoint, bitmap, socket and scratch directory kura creates is
// named "kura-…", which lets Leftovers find what a killed run left behind.
package libvirt
