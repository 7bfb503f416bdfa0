// Package hvtest is the conformance suite every hypervisor.Connector (and
// every fake of one) must pass.
//
// The suite creates a VM through Target.MakeVM, writes patterns into its
// first protectable disk through the write function MakeVM returns, and
// checks the connector's capabilities against what it does, inventory,
// full and incremental sessions (named checkpoints or per-disk change ids,
// as Capabilities.ChangeTracking says), checkpoint handling on failure,
// the missing-base error, leftover cleanup, a whole restore as a new VM
// through the Restorer interface (plan, plan file, rendered configuration,
// disk sinks, define), and the restore-target methods (define, start, stop,
// undefine).
//
// RunInstant is the suite of the optional instant recovery capabilities
// (hypervisor.InstantHost, GuestAgent, Console).
package hvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// WriteFunc writes data at off into the first protectable disk of the VM,
// the way a guest would (the next backup session must see it). The suite
// only writes runs of one repeated byte, 1 MiB long and 1 MiB aligned, so a
// connector may implement it with a pattern writer such as qemu-io.
type WriteFunc func(off int64, data []byte)

// Target describes the connector under test.
type Target struct {
	Connector hypervisor.Connector
	// MakeVM creates a fresh VM with at least one protectable disk of at
	// least 8 MiB, in the power state the target wants to test.
	MakeVM func(t *testing.T) (hypervisor.VM, WriteFunc)
	// Consistency is the mode sessions are opened with (ModeCrash when empty).
	Consistency hypervisor.ConsistencyMode
	// ScratchDir returns a scratch directory (t.TempDir when nil).
	ScratchDir func(t *testing.T) string
	// Timeout bounds each sub-test (2 minutes when zero).
	Timeout time.Duration
	// NewConfig returns a configuration DefineVM accepts for a new VM of
	// that name and UUID, which StartVM can boot. Required.
	NewConfig func(t *testing.T, name, uuid string) []byte
	// Abandon opens a backup session of vm (incremental from base,
	// creating checkpoint next) in a process that then dies without
	// closing it, as a killed kura would. Required.
	Abandon func(t *testing.T, vm hypervisor.VM, base, next string, ids map[string]string)
	// Storage returns the RestoreRequest.Storage of restores as a new VM
	// (a directory the test owns, a datastore). Required.
	Storage func(t *testing.T) string
	// ReadDisk returns the guest-visible bytes of a restored image at a
	// plan path (ReadLocalImage for images on this host). Required.
	ReadDisk func(t *testing.T, path, format string) []byte
}

const mib = 1 << 20

// Run runs the conformance suite.
func Run(t *testing.T, tg Target) {
	if tg.Consistency == "" {
		tg.Consistency = hypervisor.ModeCrash
	}
	if tg.ScratchDir == nil {
		tg.ScratchDir = func(t *testing.T) string { return t.TempDir() }
	}
	if tg.Timeout == 0 {
		tg.Timeout = 2 * time.Minute
	}
	if tg.NewConfig == nil || tg.Storage == nil || tg.ReadDisk == nil {
		t.Fatal("hvtest.Target needs NewConfig, Storage and ReadDisk")
	}
	caps := tg.Connector.Capabilities()
	t.Run("Capabilities", func(t *testing.T) { testCapabilities(t, caps) })
	t.Run("Inventory", func(t *testing.T) { testInventory(t, tg) })
	if !caps.Backup {
		t.Run("NoBackup", func(t *testing.T) { testNoBackup(t, tg) })
	} else {
		t.Run("FullThenIncremental", func(t *testing.T) { testFullIncremental(t, tg) })
		t.Run("MissingBase", func(t *testing.T) { testMissingBase(t, tg) })
		t.Run("Leftovers", func(t *testing.T) { testLeftovers(t, tg) })
		t.Run("Reclaim", func(t *testing.T) { testReclaim(t, tg) })
		t.Run("TwoOwners", func(t *testing.T) { testTwoOwners(t, tg) })
		t.Run("RestoreNewVM", func(t *testing.T) { testRestoreNewVM(t, tg) })
		t.Run("Pause", func(t *testing.T) { testPause(t, tg) })
	}
	t.Run("RestoreTarget", func(t *testing.T) { testRestoreTarget(t, tg) })
	if tagger, ok := tg.Connector.(hypervisor.Tagger); ok {
		t.Run("Tags", func(t *testing.T) { testTags(t, tg, tagger) })
	}
}

// testTags: tags a Tagger sets show in the inventory as attribute "tag",
// sorted, select the VM with tag:GLOB, replace the previous ones, and go
// away when set to none; an invalid tag changes nothing.
func testTags(t *testing.T, tg Target, tagger hypervisor.Tagger) {
	ctx := tg.ctx(t)
	vm, _ := tg.MakeVM(t)
	tagsOf := func() []string {
		t.Helper()
		got, err := tg.Connector.LookupVM(ctx, vm.UUID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Attributes[hypervisor.TagAttr]
	}
	if err := tagger.SetTags(ctx, vm.UUID, []string{"backup-daily", "team/web"}); err != nil {
		t.Fatalf("SetTags: %v", err)
	}
	if got := tagsOf(); !slices.Equal(got, []string{"backup-daily", "team/web"}) {
		t.Fatalf("tags after SetTags = %q", got)
	}
	vms, err := tg.Connector.ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := hypervisor.ParseSelector("tag:team/*")
	if err != nil {
		t.Fatal(err)
	}
	picked, err := hypervisor.Select(ctx, vms, []hypervisor.Selector{sel}, nil)
	if err != nil || !slices.ContainsFunc(picked, func(v hypervisor.VM) bool { return v.UUID == vm.UUID }) {
		t.Fatalf("tag:team/* selects %v (%v), not %s", picked, err, vm.Name)
	}
	if err := tagger.SetTags(ctx, vm.UUID, []string{"bad tag"}); !errors.Is(err, hypervisor.ErrBadTag) {
		t.Fatalf("SetTags with a space: %v, want ErrBadTag", err)
	}
	if err := tagger.SetTags(ctx, vm.UUID, []string{"weekly"}); err != nil {
		t.Fatal(err)
	}
	if got := tagsOf(); !slices.Equal(got, []string{"weekly"}) {
		t.Fatalf("tags after replacing = %q", got)
	}
	if err := tagger.SetTags(ctx, vm.UUID, nil); err != nil {
		t.Fatal(err)
	}
	if got := tagsOf(); len(got) != 0 {
		t.Fatalf("tags after removing all = %q", got)
	}
}

func testCapabilities(t *testing.T, caps hypervisor.Capabilities) {
	if caps.Kind == "" || caps.ConfigFormat == "" {
		t.Errorf("capabilities %+v: kind and config format must be set", caps)
	}
	if !slices.Contains(caps.RestoreFormats, caps.ConfigFormat) {
		t.Errorf("capabilities %+v: the connector cannot restore its own configuration format", caps)
	}
	switch caps.ChangeTracking {
	case hypervisor.TrackNone, hypervisor.TrackCheckpoints, hypervisor.TrackChangeIDs:
	default:
		t.Errorf("capabilities: change tracking %q unknown", caps.ChangeTracking)
	}
}

// testPause checks the Pause capability on a running VM: a pause session
// reaches ConsistencyPause, or ModePause is refused as unsupported.
func testPause(t *testing.T, tg Target) {
	vm, _ := tg.MakeVM(t)
	if vm.State != hypervisor.PowerOn {
		t.Log("the target's VMs are not running: pause does not apply")
		return
	}
	ctx := tg.ctx(t)
	s, err := tg.Connector.BeginBackup(ctx, vm, hypervisor.BackupOptions{Consistency: hypervisor.ModePause, NewCheckpoint: "kura-hvt-p", ScratchDir: tg.ScratchDir(t)})
	if !tg.Connector.Capabilities().Pause {
		if !errors.Is(err, hypervisor.ErrUnsupported) {
			t.Fatalf("ModePause without the Pause capability: %v, want ErrUnsupported", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("ModePause: %v", err)
	}
	defer s.Close(ctx, false)
	if s.Consistency() != hypervisor.ConsistencyPause {
		t.Errorf("ModePause reached %s", s.Consistency())
	}
}

func testNoBackup(t *testing.T, tg Target) {
	vm, _ := tg.MakeVM(t)
	if _, err := tg.begin(t, tg.ctx(t), vm, "", "kura-hvt-nb", nil); !errors.Is(err, hypervisor.ErrUnsupported) {
		t.Fatalf("BeginBackup on a connection without Backup: %v, want ErrUnsupported", err)
	}
}

func (tg Target) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), tg.Timeout)
	t.Cleanup(cancel)
	return ctx
}

func (tg Target) begin(t *testing.T, ctx context.Context, vm hypervisor.VM, base, next string, ids map[string]string) (hypervisor.BackupSession, error) {
	s, err := tg.Connector.BeginBackup(ctx, vm, hypervisor.BackupOptions{
		Consistency: tg.Consistency, BaseCheckpoint: base, NewCheckpoint: next,
		BaseChangeIDs: ids, ScratchDir: tg.ScratchDir(t),
	})
	if err == nil {
		t.Cleanup(func() { _ = s.Close(context.Background(), false) })
	}
	return s, err
}

func firstProtectable(t *testing.T, vm hypervisor.VM) hypervisor.Disk {
	for _, d := range vm.Disks {
		if d.Protectable {
			return d
		}
	}
	t.Fatalf("vm %s has no protectable disk", vm.Name)
	return hypervisor.Disk{}
}

func testInventory(t *testing.T, tg Target) {
	ctx := tg.ctx(t)
	vm, _ := tg.MakeVM(t)
	vms, err := tg.Connector.ListVMs(ctx)
	if err != nil {
		t.Fatalf("ListVMs: %v", err)
	}
	i := slices.IndexFunc(vms, func(v hypervisor.VM) bool { return v.Name == vm.Name })
	if i < 0 {
		t.Fatalf("ListVMs does not list %s", vm.Name)
	}
	if vms[i].UUID != vm.UUID || len(vms[i].Disks) != len(vm.Disks) {
		t.Errorf("ListVMs entry %+v differs from MakeVM's %+v", vms[i], vm)
	}
	for _, key := range []string{vm.Name, vm.UUID} {
		got, err := tg.Connector.LookupVM(ctx, key)
		if err != nil || got.Name != vm.Name || got.UUID != vm.UUID {
			t.Errorf("LookupVM(%q) = %s/%s, %v", key, got.Name, got.UUID, err)
		}
	}
	d := firstProtectable(t, vm)
	if d.Size < 8*mib {
		t.Errorf("disk %s size %d, want >= 8 MiB", d.Target, d.Size)
	}
	for _, key := range []string{"kura-hvtest-no-such-vm", "00000000-0000-4000-8000-00000000dead"} {
		if _, err := tg.Connector.LookupVM(ctx, key); !errors.Is(err, hypervisor.ErrVMNotFound) {
			t.Errorf("LookupVM(%q) error = %v, want ErrVMNotFound", key, err)
		}
	}
	if _, err := tg.Connector.Host(ctx); err != nil {
		t.Errorf("Host: %v", err)
	}
}

// CheckExtents verifies that ext is sorted, contiguous, non-empty and covers
// [0, size), and returns the bytes per kind.
func CheckExtents(ext []hypervisor.Extent, size int64) (map[hypervisor.ExtentKind]int64, error) {
	sum := map[hypervisor.ExtentKind]int64{}
	var pos int64
	for i, e := range ext {
		if e.Offset != pos || e.Length <= 0 {
			return nil, fmt.Errorf("extent %d %+v: want offset %d and positive length", i, e, pos)
		}
		if e.Kind > hypervisor.ExtentUnchangedZero {
			return nil, fmt.Errorf("extent %d: bad kind %d", i, e.Kind)
		}
		sum[e.Kind] += e.Length
		pos += e.Length
	}
	if pos != size {
		return nil, fmt.Errorf("extents end at %d, disk size %d", pos, size)
	}
	return sum, nil
}

// kindAt returns the kinds of the extents overlapping [off, off+n).
func kindsIn(ext []hypervisor.Extent, off, n int64) []hypervisor.ExtentKind {
	var out []hypervisor.ExtentKind
	for _, e := range ext {
		if e.Offset < off+n && off < e.Offset+e.Length && !slices.Contains(out, e.Kind) {
			out = append(out, e.Kind)
		}
	}
	return out
}

func sessionDisk(t *testing.T, s hypervisor.BackupSession, target string) hypervisor.SessionDisk {
	for _, d := range s.Disks() {
		if d.Target == target {
			return d
		}
	}
	t.Fatalf("session does not expose disk %s", target)
	return hypervisor.SessionDisk{}
}

func pattern(b byte) []byte { return bytes.Repeat([]byte{b}, mib) }

func readEqual(t *testing.T, d hypervisor.SessionDisk, off int64, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := d.Reader.ReadAt(got, off); err != nil {
		t.Fatalf("ReadAt(%d): %v", off, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("disk %s at %d: read differs from what was written (first byte %#x, want %#x)", d.Target, off, got[0], want[0])
	}
}

// changeIDs returns the change ids a session reported, by target.
func changeIDs(s hypervisor.BackupSession) map[string]string {
	ids := map[string]string{}
	for _, d := range s.Disks() {
		if d.ChangeID != "" {
			ids[d.Target] = d.ChangeID
		}
	}
	return ids
}

func testFullIncremental(t *testing.T, tg Target) {
	ctx := tg.ctx(t)
	caps := tg.Connector.Capabilities()
	vm, write := tg.MakeVM(t)
	disk := firstProtectable(t, vm)
	write(2*mib, pattern(0xa1))

	s1, err := tg.begin(t, ctx, vm, "", "kura-hvt-1", nil)
	if err != nil {
		t.Fatalf("full BeginBackup: %v", err)
	}
	for _, vd := range vm.Disks {
		if vd.Protectable && !slices.ContainsFunc(s1.Disks(), func(d hypervisor.SessionDisk) bool { return d.Target == vd.Target }) {
			t.Errorf("full session lacks protectable disk %s", vd.Target)
		}
	}
	for _, d := range s1.Disks() {
		sum, err := CheckExtents(d.Extents, d.Size)
		if err != nil {
			t.Fatalf("disk %s: %v", d.Target, err)
		}
		if unchanged := sum[hypervisor.ExtentUnchanged] + sum[hypervisor.ExtentUnchangedZero]; d.Incremental || unchanged != 0 {
			t.Errorf("full session disk %s: incremental=%v unchanged=%d", d.Target, d.Incremental, unchanged)
		}
	}
	d1 := sessionDisk(t, s1, disk.Target)
	if k := kindsIn(d1.Extents, 2*mib, mib); !slices.Equal(k, []hypervisor.ExtentKind{hypervisor.ExtentData}) {
		t.Errorf("written range has kinds %v in full session, want only Data", k)
	}
	readEqual(t, d1, 2*mib, pattern(0xa1))
	if cp := s1.Checkpoint(); cp != "" && cp != "kura-hvt-1" {
		t.Errorf("Checkpoint() = %q, want kura-hvt-1", cp)
	}
	if _, f := s1.Config(); f != caps.ConfigFormat {
		t.Errorf("Config() format %q, capabilities say %q", f, caps.ConfigFormat)
	}
	ids := changeIDs(s1)
	tracked := caps.ChangeTracking != hypervisor.TrackNone && (vm.State != hypervisor.PowerOff || caps.OfflineChangeTracking)
	switch {
	case tracked && s1.Checkpoint() == "":
		t.Errorf("capabilities claim change tracking (%s, offline %v) for this %s vm, but the session has no checkpoint",
			caps.ChangeTracking, caps.OfflineChangeTracking, vm.State)
	case !tracked && s1.Checkpoint() != "":
		t.Errorf("capabilities claim no change tracking for this %s vm, but the session made checkpoint %s", vm.State, s1.Checkpoint())
	case caps.ChangeTracking == hypervisor.TrackChangeIDs && tracked && ids[disk.Target] == "":
		t.Errorf("change-id tracking: disk %s reports no change id", disk.Target)
	case caps.ChangeTracking != hypervisor.TrackChangeIDs && len(ids) > 0:
		t.Errorf("change ids %v reported by a connector tracking by %s", ids, caps.ChangeTracking)
	}
	if err := s1.Close(ctx, true); err != nil {
		t.Fatalf("Close(true): %v", err)
	}
	if s1.Checkpoint() == "" {
		return // no change tracking: nothing more to check
	}

	write(5*mib, pattern(0xb2))
	s2, err := tg.begin(t, ctx, vm, "kura-hvt-1", "kura-hvt-2", ids)
	if err != nil {
		t.Fatalf("incremental BeginBackup: %v", err)
	}
	checkIncremental(t, sessionDisk(t, s2, disk.Target), 5*mib, pattern(0xb2))
	if err := s2.Close(ctx, false); err != nil {
		t.Fatalf("Close(false): %v", err)
	}

	// The failed session must leave kura-hvt-1 usable as a base, with the
	// write still counted as changed.
	s3, err := tg.begin(t, ctx, vm, "kura-hvt-1", "kura-hvt-3", ids)
	if err != nil {
		t.Fatalf("BeginBackup after Close(false): %v", err)
	}
	checkIncremental(t, sessionDisk(t, s3, disk.Target), 5*mib, pattern(0xb2))
	if err := s3.Close(ctx, true); err != nil {
		t.Fatalf("Close(true): %v", err)
	}
	if caps.ChangeTracking == hypervisor.TrackChangeIDs {
		// Change ids live with the points: an id the hypervisor never
		// issued is a missing base.
		bogus := map[string]string{disk.Target: "52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00/999"}
		if _, err := tg.begin(t, ctx, vm, "kura-hvt-3", "kura-hvt-4", bogus); !errors.Is(err, hypervisor.ErrCheckpointMissing) {
			t.Errorf("unknown change id: error %v, want ErrCheckpointMissing", err)
		}
		return
	}
	// After success the older kura checkpoint is gone.
	if _, err := tg.begin(t, ctx, vm, "kura-hvt-1", "kura-hvt-4", ids); !errors.Is(err, hypervisor.ErrCheckpointMissing) {
		t.Errorf("base kura-hvt-1 after a later success: error %v, want ErrCheckpointMissing", err)
	}
}

func checkIncremental(t *testing.T, d hypervisor.SessionDisk, off int64, want []byte) {
	t.Helper()
	sum, err := CheckExtents(d.Extents, d.Size)
	if err != nil {
		t.Fatalf("disk %s: %v", d.Target, err)
	}
	if !d.Incremental {
		t.Fatalf("disk %s: session with a base is not incremental", d.Target)
	}
	if k := kindsIn(d.Extents, off, int64(len(want))); !slices.Equal(k, []hypervisor.ExtentKind{hypervisor.ExtentData}) {
		t.Errorf("written range has kinds %v, want only Data", k)
	}
	// The guest may touch a little more than we wrote; never much more.
	if data := sum[hypervisor.ExtentData]; data > int64(len(want))+4*mib {
		t.Errorf("incremental reports %d data bytes after a %d-byte write", data, len(want))
	}
	if sum[hypervisor.ExtentUnchanged]+sum[hypervisor.ExtentUnchangedZero] == 0 {
		t.Errorf("incremental has no unchanged extents")
	}
	readEqual(t, d, off, want)
}

func testMissingBase(t *testing.T, tg Target) {
	ctx := tg.ctx(t)
	vm, _ := tg.MakeVM(t)
	_, err := tg.begin(t, ctx, vm, "kura-hvt-never-made", "kura-hvt-x", nil)
	if !errors.Is(err, hypervisor.ErrCheckpointMissing) {
		t.Fatalf("BeginBackup with a missing base: error %v, want ErrCheckpointMissing", err)
	}
	// The failed attempt must not leave the new checkpoint behind.
	s, err := tg.begin(t, ctx, vm, "", "kura-hvt-x", nil)
	if err != nil {
		t.Fatalf("full BeginBackup after the failure: %v", err)
	}
	if err := s.Close(ctx, true); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func testLeftovers(t *testing.T, tg Target) {
	ctx := tg.ctx(t)
	vm, write := tg.MakeVM(t)
	disk := firstProtectable(t, vm)
	write(mib, pattern(0xc1))
	s, err := tg.begin(t, ctx, vm, "", "kura-hvt-l1", nil)
	if err != nil {
		t.Fatalf("BeginBackup: %v", err)
	}
	ids := changeIDs(s)
	if err := s.Close(ctx, true); err != nil {
		t.Fatalf("Close: %v", err)
	}
	q := hypervisor.LeftoverQuery{VMs: []string{vm.Name}, Keep: map[string]bool{"kura-hvt-l1": true}}
	if lo, err := tg.Connector.Leftovers(ctx, q); err != nil || len(lo) != 0 {
		t.Fatalf("Leftovers after a clean session = %v, %v; want none", lo, err)
	}
	// A session still open is no leftover, and holds the VM.
	open, err := tg.begin(t, ctx, vm, "kura-hvt-l1", "kura-hvt-l2", ids)
	if err != nil {
		t.Fatalf("BeginBackup: %v", err)
	}
	if lo, err := tg.Connector.Leftovers(ctx, q); err != nil || len(lo) != 0 {
		t.Fatalf("Leftovers while a session is open = %v, %v; want none", lo, err)
	}
	if _, err := tg.begin(t, ctx, vm, "kura-hvt-l1", "kura-hvt-l9", ids); !errors.Is(err, hypervisor.ErrBusy) {
		t.Fatalf("BeginBackup while another session is open: %v, want ErrBusy", err)
	}
	if err := open.Close(ctx, false); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// A session of a killed process: reported, removed by RemoveLeftover.
	tg.Abandon(t, vm, "kura-hvt-l1", "kura-hvt-l2", ids)
	lo, err := tg.Connector.Leftovers(ctx, q)
	if err != nil {
		t.Fatalf("Leftovers: %v", err)
	}
	if len(lo) == 0 {
		t.Fatalf("Leftovers reports nothing after an abandoned session")
	}
	for _, l := range lo {
		if l.VM != vm.Name || l.Kind == "" || l.Name == "" || l.Foreign {
			t.Errorf("bad leftover %+v", l)
		}
		if l.Name == "kura-hvt-l1" {
			t.Errorf("leftover %+v is in keep", l)
		}
	}
	for _, l := range lo {
		if err := tg.Connector.RemoveLeftover(ctx, l); err != nil {
			t.Errorf("RemoveLeftover(%+v): %v", l, err)
		}
	}
	if lo, err := tg.Connector.Leftovers(ctx, q); err != nil || len(lo) != 0 {
		t.Fatalf("Leftovers after RemoveLeftover = %v, %v; want none", lo, err)
	}
	// The kept base still works.
	write(3*mib, pattern(0xc3))
	s2, err := tg.begin(t, ctx, vm, "kura-hvt-l1", "kura-hvt-l3", ids)
	if err != nil {
		t.Fatalf("BeginBackup after cleanup: %v", err)
	}
	checkIncremental(t, sessionDisk(t, s2, disk.Target), 3*mib, pattern(0xc3))
	if err := s2.Close(ctx, true); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// testReclaim: the next backup of a VM clears what a killed session left
// on it by itself, says so, and is incremental from the last good base.
func testReclaim(t *testing.T, tg Target) {
	ctx := tg.ctx(t)
	vm, write := tg.MakeVM(t)
	disk := firstProtectable(t, vm)
	s, err := tg.begin(t, ctx, vm, "", "kura-hvt-r1", nil)
	if err != nil {
		t.Fatalf("BeginBackup: %v", err)
	}
	ids := changeIDs(s)
	if err := s.Close(ctx, true); err != nil {
		t.Fatalf("Close: %v", err)
	}
	tg.Abandon(t, vm, "kura-hvt-r1", "kura-hvt-r2", ids)
	write(2*mib, pattern(0xd2))
	s, err = tg.begin(t, ctx, vm, "kura-hvt-r1", "kura-hvt-r3", ids)
	if err != nil {
		t.Fatalf("BeginBackup after a killed session: %v", err)
	}
	if !slices.ContainsFunc(s.Notes(), func(n string) bool { return strings.Contains(n, "killed") }) {
		t.Errorf("session notes %q do not say what was reclaimed", s.Notes())
	}
	checkIncremental(t, sessionDisk(t, s, disk.Target), 2*mib, pattern(0xd2))
	if err := s.Close(ctx, true); err != nil {
		t.Fatalf("Close: %v", err)
	}
	q := hypervisor.LeftoverQuery{VMs: []string{vm.UUID}, Keep: map[string]bool{"kura-hvt-r3": true}}
	if lo, err := tg.Connector.Leftovers(ctx, q); err != nil || len(lo) != 0 {
		t.Fatalf("Leftovers after the reclaiming backup = %v, %v; want none", lo, err)
	}
}

// testTwoOwners: two repositories back up the same VM, each keeping its
// own chain; neither breaks the other's, and cleanup for one lists the
// other's checkpoints as foreign (connectors with checkpoints on the VM).
func testTwoOwners(t *testing.T, tg Target) {
	ctx := tg.ctx(t)
	vm, write := tg.MakeVM(t)
	disk := firstProtectable(t, vm)
	a1, a2 := hypervisor.CheckpointName("aaaaaaaa", "p1"), hypervisor.CheckpointName("aaaaaaaa", "p2")
	b1, b2 := hypervisor.CheckpointName("bbbbbbbb", "p1"), hypervisor.CheckpointName("bbbbbbbb", "p2")
	ids := map[string]map[string]string{} // change ids per checkpoint (vSphere)
	run := func(owner, base, next string, wantOff int64, want []byte) {
		t.Helper()
		s, err := tg.Connector.BeginBackup(ctx, vm, hypervisor.BackupOptions{Consistency: tg.Consistency,
			BaseCheckpoint: base, NewCheckpoint: next, Owner: owner, BaseChangeIDs: ids[base], ScratchDir: tg.ScratchDir(t)})
		if err != nil {
			t.Fatalf("BeginBackup %s from %q: %v", next, base, err)
		}
		if base != "" {
			checkIncremental(t, sessionDisk(t, s, disk.Target), wantOff, want)
		}
		ids[next] = changeIDs(s)
		if err := s.Close(ctx, true); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	run("aaaaaaaa", "", a1, 0, nil)
	run("bbbbbbbb", "", b1, 0, nil)
	write(4*mib, pattern(0xe4))
	run("aaaaaaaa", a1, a2, 4*mib, pattern(0xe4))
	run("bbbbbbbb", b1, b2, 4*mib, pattern(0xe4))
	lo, err := tg.Connector.Leftovers(ctx, hypervisor.LeftoverQuery{VMs: []string{vm.Name}, Owner: "aaaaaaaa",
		Keep: map[string]bool{a2: true}})
	if err != nil {
		t.Fatal(err)
	}
	if tg.Connector.Capabilities().ChangeTracking == hypervisor.TrackChangeIDs {
		// Change ids live in the disks: nothing of either chain stays on
		// the VM between sessions.
		if len(lo) != 0 {
			t.Errorf("leftovers after clean sessions of two repositories: %v", lo)
		}
		return
	}
	foreign := 0
	for _, l := range lo {
		if !l.Foreign || l.Owner != "bbbbbbbb" {
			t.Errorf("leftover %+v: only b's checkpoint should be listed, as foreign", l)
			continue
		}
		foreign++
		if err := tg.Connector.RemoveLeftover(ctx, l); err == nil {
			t.Errorf("RemoveLeftover removed a foreign checkpoint %s", l.Name)
		}
	}
	if foreign == 0 {
		t.Errorf("b's checkpoint %s is not listed as foreign: %v", b2, lo)
	}
}
