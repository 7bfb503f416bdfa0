package service

import (
	"context"
	"fmt"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// TagEdit changes a VM's kura tags.
type TagEdit struct {
	Add, Remove []string
	// Clear removes every tag first (Add then replaces them).
	Clear bool
}

// TagVM edits the kura tags of one VM (by name or UUID) on a connection
// that keeps them (hypervisor.Tagger) and returns the VM as it is then.
// Protection groups selecting tag:GLOB pick the change up at their next
// run.
func (s *Service) TagVM(ctx context.Context, key string, edit TagEdit) (hypervisor.VM, error) {
	if s.Conn == nil {
		return hypervisor.VM{}, ErrNoConnection
	}
	tagger, ok := s.Conn.(hypervisor.Tagger)
	if !ok {
		return hypervisor.VM{}, fmt.Errorf("%w: %s connections keep no kura tags (use the hypervisor's own, e.g. vSphere tags)",
			hypervisor.ErrUnsupported, s.Conn.Capabilities().Kind)
	}
	vm, err := s.Conn.LookupVM(ctx, key)
	if err != nil {
		return hypervisor.VM{}, err
	}
	tags, err := hypervisor.EditTags(vm.Attributes[hypervisor.TagAttr], edit.Add, edit.Remove, edit.Clear)
	if err != nil {
		return vm, err
	}
	if err := tagger.SetTags(ctx, vm.UUID, tags); err != nil {
		return vm, err
	}
	return s.Conn.LookupVM(ctx, vm.UUID)
}
