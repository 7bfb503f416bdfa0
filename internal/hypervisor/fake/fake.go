// Package fake is an in-memory hypervisor.Connector for tests of the
// engine. VMs have disks held as byte slices, checkpoints are dirty-block
// maps, and failures can be injected per VM. Its configurations are
// libvirt domain XML and its restores write real image files (planned by
// package domxml, written by diskwrite), so restore tests check real
// bytes. It passes hvtest.Run.
package fake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// BlockSize is the granularity of allocation and dirty tracking.
const BlockSize = 64 << 10

// ErrInjected is returned by injected failures.
var ErrInjected = errors.New("injected failure")

// DiskSpec describes a disk of a fake VM.
type DiskSpec struct {
	Target string
	Size   int64 // rounded up to BlockSize
	// Unprotectable, when non-empty, is the reason the disk cannot be
	// backed up.
	Unprotectable string
}

// VMSpec describes a fake VM.
type VMSpec struct {
	Name, UUID string
	State      hypervisor.PowerState // PowerOn when empty
	Disks      []DiskSpec
	Addresses  []string
	NoAgent    bool
	// Tags are the VM's kura tags (Tagger; attribute "tag").
	Tags []string
	// FailBegin, when set, is returned (wrapped) by BeginBackup.
	FailBegin error
	// FailReadsAfter > 0 makes session reads fail with ErrInjected once
	// that many bytes were read in the session.
	FailReadsAfter int64
}

type disk struct {
	spec  DiskSpec
	path  string // source file of a disk of a defined VM
	data  []byte
	alloc []bool
}

type checkpoint struct {
	name  string
	dirty map[string][]bool // target -> block dirty since the checkpoint
}

type vmState struct {
	spec        VMSpec
	config      []byte // set for VMs created by DefineVM
	disks       []*disk
	checkpoints []*checkpoint // oldest first
	job         *session      // active backup job
}

// Connector is the fake connector. The zero value is not usable: use New.
type Connector struct {
	mu  sync.Mutex
	vms []*vmState

	// ImageDir, when set, makes the disks' sources (in the inventory and
	// the saved configuration) files <ImageDir>/<vm>-<target>.raw instead
	// of "mem:" names, so that restores in place have somewhere to write.
	ImageDir string
	// Pools maps storage pool names to directories (restore --storage).
	Pools map[string]string
}

// Kind is the fake connector's kind (Capabilities.Kind).
const Kind = "fake"

// New returns an empty fake connector.
func New() *Connector { return &Connector{} }

// AddVM adds a VM; its disks start unallocated (reading as zeros).
func (c *Connector) AddVM(spec VMSpec) hypervisor.VM {
	c.mu.Lock()
	defer c.mu.Unlock()
	if spec.State == "" {
		spec.State = hypervisor.PowerOn
	}
	st := &vmState{spec: spec}
	for _, d := range spec.Disks {
		n := (d.Size + BlockSize - 1) / BlockSize
		d.Size = n * BlockSize
		st.disks = append(st.disks, &disk{spec: d, data: make([]byte, d.Size), alloc: make([]bool, n)})
	}
	c.vms = append(c.vms, st)
	return st.vm(c.ImageDir)
}

// SetFailures changes the injected failures of a VM.
func (c *Connector) SetFailures(name string, failBegin error, failReadsAfter int64, noAgent bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.find(name); st != nil {
		st.spec.FailBegin, st.spec.FailReadsAfter, st.spec.NoAgent = failBegin, failReadsAfter, noAgent
	}
}

// SetState changes the power state of a VM.
func (c *Connector) SetState(name string, s hypervisor.PowerState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.find(name); st != nil {
		st.spec.State = s
	}
}

// Write writes data into a disk as the guest would, marking the blocks
// allocated and dirty for every checkpoint.
func (c *Connector) Write(name, target string, off int64, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.find(name)
	if st == nil {
		return fmt.Errorf("fake write: %w: %s", hypervisor.ErrVMNotFound, name)
	}
	for _, d := range st.disks {
		if d.spec.Target != target {
			continue
		}
		if off < 0 || off+int64(len(data)) > d.spec.Size {
			return fmt.Errorf("fake write: %d+%d beyond disk size %d", off, len(data), d.spec.Size)
		}
		copy(d.data[off:], data)
		for b := off / BlockSize; b*BlockSize < off+int64(len(data)); b++ {
			d.alloc[b] = true
			for _, cp := range st.checkpoints {
				cp.dirty[target][b] = true
			}
		}
		return nil
	}
	return fmt.Errorf("fake write: vm %s has no disk %s", name, target)
}

// Checkpoints returns the checkpoint names of a VM, oldest first.
func (c *Connector) Checkpoints(name string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	if st := c.find(name); st != nil {
		for _, cp := range st.checkpoints {
			out = append(out, cp.name)
		}
	}
	return out
}

func (c *Connector) find(key string) *vmState {
	for _, st := range c.vms {
		if st.spec.Name == key || strings.EqualFold(st.spec.UUID, key) {
			return st
		}
	}
	return nil
}

func (st *vmState) vm(imageDir string) hypervisor.VM {
	vm := hypervisor.VM{Name: st.spec.Name, UUID: st.spec.UUID, State: st.spec.State,
		Addresses: slices.Clone(st.spec.Addresses), Persistent: true,
		HasAgent: !st.spec.NoAgent && st.spec.State == hypervisor.PowerOn}
	for _, d := range st.disks {
		vm.Disks = append(vm.Disks, hypervisor.Disk{Target: d.spec.Target, Source: d.source(st.spec.Name, imageDir),
			Type: "file", Format: "raw", Device: "disk", Size: d.spec.Size,
			Protectable: d.spec.Unprotectable == "", Reason: d.spec.Unprotectable})
	}
	if len(st.spec.Tags) > 0 {
		vm.Attributes = map[string][]string{hypervisor.TagAttr: slices.Clone(st.spec.Tags)}
	}
	return vm
}

// SetTags implements hypervisor.Tagger.
func (c *Connector) SetTags(_ context.Context, key string, tags []string) error {
	for _, t := range tags {
		if err := hypervisor.CheckTag(t); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.find(key)
	if st == nil {
		return fmt.Errorf("fake: %w: %s", hypervisor.ErrVMNotFound, key)
	}
	st.spec.Tags, _ = hypervisor.EditTags(nil, tags, nil, false)
	return nil
}

func (st *vmState) checkpoint(name string) int {
	return slices.IndexFunc(st.checkpoints, func(cp *checkpoint) bool { return cp.name == name })
}

// URI implements hypervisor.Connector.
func (c *Connector) URI() string { return "fake:///" }

// Host implements hypervisor.Connector.
func (c *Connector) Host(context.Context) (string, error) { return "fakehost", nil }

// ListVMs implements hypervisor.Connector.
func (c *Connector) ListVMs(context.Context) ([]hypervisor.VM, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]hypervisor.VM, 0, len(c.vms))
	for _, st := range c.vms {
		out = append(out, st.vm(c.ImageDir))
	}
	return out, nil
}

// LookupVM implements hypervisor.Connector.
func (c *Connector) LookupVM(_ context.Context, key string) (hypervisor.VM, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.find(key); st != nil {
		return st.vm(c.ImageDir), nil
	}
	return hypervisor.VM{}, fmt.Errorf("fake: %w: %s", hypervisor.ErrVMNotFound, key)
}

// Close implements hypervisor.Connector.
func (c *Connector) Close() error { return nil }

var _ hypervisor.Connector = (*Connector)(nil)
var _ hypervisor.Tagger = (*Connector)(nil)
var _ io.ReaderAt = (*reader)(nil)
