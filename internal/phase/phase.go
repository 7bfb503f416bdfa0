// Package phase defines, once, the phases kura jobs and the VMs within
// them move through. The catalog stores them, the engine sets them,
// progress events, the API and the documentation name them (velero's
// naming; docs/design/architecture.md "Job phases").
//
//	job: New → Running → Completed | PartiallyFailed | Failed | Cancelled
//	VM:  Pending → Running → (Retrying → Running)* → Succeeded | Failed | Skipped
package phase

// Job is the phase of a job.
type Job string

// Job phases.
const (
	// New: queued, not started.
	New Job = "New"
	// Running: started, not finished.
	Running Job = "Running"
	// Completed: every item succeeded (or was skipped on purpose).
	Completed Job = "Completed"
	// PartiallyFailed: some items succeeded, some failed.
	PartiallyFailed Job = "PartiallyFailed"
	// Failed: nothing succeeded, or the job could not run; a job whose
	// process died is Failed with an "interrupted" error.
	Failed Job = "Failed"
	// Cancelled: stopped on request before its end.
	Cancelled Job = "Cancelled"
)

// Final reports whether p is a phase a job ends in.
func (p Job) Final() bool {
	switch p {
	case Completed, PartiallyFailed, Failed, Cancelled:
		return true
	}
	return false
}

// Valid reports whether p is a known job phase.
func (p Job) Valid() bool { return p == New || p == Running || p.Final() }

// VM is the phase of one VM (or other item) within a job.
type VM string

// VM phases.
const (
	Pending   VM = "Pending"
	VMRunning VM = "Running"
	Retrying  VM = "Retrying"
	Succeeded VM = "Succeeded"
	VMFailed  VM = "Failed"
	Skipped   VM = "Skipped"
)

// Final reports whether p is a phase a VM ends in.
func (p VM) Final() bool { return p == Succeeded || p == VMFailed || p == Skipped }

// Valid reports whether p is a known VM phase.
func (p VM) Valid() bool { return p == Pending || p == VMRunning || p == Retrying || p.Final() }

// Outcome is the job phase that follows from how many items succeeded,
// failed and were skipped.
func Outcome(succeeded, failed, skipped int) Job {
	switch {
	case failed == 0:
		return Completed
	case succeeded == 0:
		return Failed
	}
	return PartiallyFailed
}
