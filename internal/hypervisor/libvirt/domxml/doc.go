// Package domxml turns the libvirt domain XML saved in a recovery point into
// the XML of the VM a restore defines, through an editable restore Plan.
//
// A Plan names everything a restore decides: the VM's name and UUID, its
// memory and vCPUs, where each disk is written and in which format, which
// network or bridge each interface joins and with which MAC address, and the
// libvirt host. DefaultPlan derives one from the saved XML and the command
// line (restore in place, or as a new VM beside the original); EncodeYAML
// and DecodeYAML let an administrator review and edit it (`kura restore
// --plan`, `--plan-file`). Apply rewrites the saved XML according to a plan.
//
// Restoring in place (same name and UUID as the saved XML) keeps the
// definition as it was apart from disk paths and formats. Restoring as a new
// VM also drops what binds the definition to the old VM or host: live-only
// state (ids, aliases, tap device names, port ids), dynamic security labels,
// backing chains, fixed graphics ports, generated channel sockets, pass-through
// host devices, log and socket paths named after the old VM, the nvram path
// and the SMBIOS UUID. Apply returns notes for what it dropped that a user
// may miss (ApplyNotes).
package domxml
