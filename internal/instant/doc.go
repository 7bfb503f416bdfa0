// Package instant runs VMs straight from recovery points (instant
// recovery) and proves points bootable (boot verification).
//
// Concepts:
//
//   - Serving: each disk of a point is a read-only NBD export (package
//     nbd's server) backed by the repository's DiskReader: chunks are
//     fetched on demand, cached, and read ahead of every sequential stream;
//     all-zero chunks are reported as holes and zeros (base:allocation), so
//     the guest's reads of them and a later copy cost nothing. The server
//     holds a reader lease on the point while it serves, so prune and gc
//     leave the point alone.
//   - Instant VM (Start): a new VM whose disks are local qcow2 overlays
//     backed by those exports; every guest write lands in the overlay. The
//     server runs in its own process (kura instant serve NAME, started by
//     Start through Manager.Launch), which can be restarted on the same
//     socket: the guest's I/O pauses meanwhile and the new server resumes
//     it. State lives in StateDir/NAME/ (state.json, stats.json, the
//     server's log).
//   - Migration (Migrate): the hypervisor copies each disk (overlay and
//     backing) to a local image while the VM runs, keeping guest writes in
//     sync, and switches to the copies; then serving stops and the VM is an
//     ordinary one. A failed or cancelled copy leaves the VM on its
//     overlays with every write, and can be retried.
//   - Stop: the VM is removed and serving stops; the overlays (the guest's
//     writes) are kept unless discarded.
//   - Boot verification (VerifyBoot): each point is booted as a transient
//     instant VM on an isolated network; the guest agent must answer, then
//     probes run (commands, file checksums, listening TCP ports), a
//     screenshot of the console is taken, and the result is recorded in the
//     catalog. Everything is torn down afterwards; what a killed run leaves
//     is found by kura cleanup (the connector's Leftovers).
//
// The hypervisor side is behind hypervisor.InstantHost, GuestAgent and
// Console (the libvirt connector implements them).
package instant
