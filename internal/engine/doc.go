// Package engine runs kura's jobs: it joins a hypervisor connector (which
// offers point-in-time views of VM disks) with a repository (which stores
// them) and the catalog (which remembers what was done).
//
// A backup job selects VMs and backs each up in isolation: one VM failing
// (no agent in application mode, a missing disk file, a libvirt error)
// never fails or corrupts the others. Each VM goes through the phases
// plan → begin → transfer → commit → end → record (see
// docs/design/architecture.md); a failure is retried with exponential
// back-off, then reported with its cause. Cancellation closes the
// hypervisor session with success=false and writes no manifest, so no
// half-written recovery point is ever visible.
//
// A restore job reads a recovery point back: the disks are streamed from the
// repository (chunks fetched, decrypted and decompressed in parallel,
// written in order, zeros left as holes) into new images, and the saved
// configuration is rewritten for the target and defined.
package engine
