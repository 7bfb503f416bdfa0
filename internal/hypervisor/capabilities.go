package hypervisor

// ChangeTracking says how a connector's incremental backups name their base.
type ChangeTracking string

// Change tracking modes.
const (
	// TrackNone: every backup reads all allocated data.
	TrackNone ChangeTracking = "none"
	// TrackCheckpoints: the hypervisor keeps named checkpoints (libvirt
	// checkpoints, qcow2 bitmaps). BackupOptions.BaseCheckpoint names the
	// base; a successful session retires older kura checkpoints, a failed
	// one removes its own.
	TrackCheckpoints ChangeTracking = "checkpoints"
	// TrackChangeIDs: each disk reports a change id at the point in time
	// (vSphere CBT); the caller keeps them with the point
	// (SessionDisk.ChangeID) and hands them back as
	// BackupOptions.BaseChangeIDs. Nothing is retired on the hypervisor.
	TrackChangeIDs ChangeTracking = "change-ids"
)

// Capabilities describe what a connection can do. The engine reads them
// instead of knowing connectors; hvtest checks that each claim holds.
type Capabilities struct {
	// Kind names the connector ("libvirt", "vsphere", "fake"); recovery
	// points record it as vm.hypervisor.
	Kind string `json:"kind"`
	// ConfigFormat is the format of the configuration its sessions save
	// (BackupSession.Config).
	ConfigFormat string `json:"config_format"`
	// RestoreFormats are the configuration formats PlanRestore and
	// DefineVM accept: ConfigFormat, plus any it converts from.
	RestoreFormats []string `json:"restore_formats"`
	// Backup is false when BeginBackup always fails with ErrUnsupported on
	// this connection (a remote libvirt: its NBD exports are local to its
	// host).
	Backup bool `json:"backup"`
	// ChangeTracking is how incremental bases are named.
	ChangeTracking ChangeTracking `json:"change_tracking"`
	// OfflineChangeTracking is true when shut-off VMs keep change tracking
	// (qcow2 persistent bitmaps), so their backups are incremental too.
	OfflineChangeTracking bool `json:"offline_change_tracking"`
	// Pause is true when ModePause is supported.
	Pause bool `json:"pause"`
	// RemoteDisks is true when restored disks are written on the kura host
	// first (in NewDisk.ScratchDir) and uploaded to the target's storage
	// at DiskSink.Commit.
	RemoteDisks bool `json:"remote_disks"`
	// ReplaceInPlace is true when DefineVM of the name and UUID of an
	// existing VM updates that VM in place (same inventory object,
	// change tracking reset): the engine then does not undefine it before
	// defining the restored configuration.
	ReplaceInPlace bool `json:"replace_in_place"`
}
