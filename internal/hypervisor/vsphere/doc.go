// Package vsphere is the hypervisor.Connector for VMware vSphere (vCenter
// or ESXi), spoken to with github.com/vmware/govmomi.
//
// Connection: vsphere://USER@VCENTER[:PORT]/DATACENTER with the password
// from a file or the environment (never the URI) and the server's
// certificate verified by the system's CAs, a CA file (?cafile=PEM) or its
// pinned SHA-1/SHA-256 thumbprint (?thumbprint=AA:BB:…); ?insecure=1
// skips verification and says so in the log.
//
// Inventory: every VM of the datacenter with its instance UUID (kura's
// UUID), power state, VMware Tools' IP addresses and host name, and as
// selectable attributes its MoRef, BIOS UUID, folder and resource pool
// inventory paths and tags ("category/tag", through the vAPI). Disks are
// named like the .vmx does ("scsi0:1") with their datastore paths; raw
// device mappings, independent disks and seSparse disks are listed as not
// protectable, with the reason.
//
// Backup: changed block tracking is enabled when off (that backup reads in
// full); a snapshot named after the recovery point is taken, quiesced
// through VMware Tools when possible (else crash-consistent, noted); each
// disk of the snapshot is read from its datastore files (package vmdk over
// HTTP range requests on the /folder URL); which areas to read comes from
// QueryChangedDiskAreas ("*" for a full backup, the previous point's change
// id for an incremental), asked in a loop until the disk is covered. The
// snapshot is removed when the session ends. The point keeps the .vmx
// text, the VM's config info and its placement (config format
// vsphere-vm-json) and each disk's change id. Kura snapshots left by a
// killed run are leftovers; a backup finding one fails or deletes it
// (BackupOptions.Preexisting).
//
// Restore: in place (same VM object: disks replaced, changed block
// tracking reset) or as a new VM on a chosen datastore, folder, resource
// pool and network; disks are written on the kura host, then uploaded to
// the datastore as VMFS flat disks. Exports write VMDK files and the .vmx.
//
// See docs/design/vsphere.md for what is tested against the simulator and
// what only a real vCenter shows.
package vsphere
