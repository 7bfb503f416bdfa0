package hvtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"github.com/kurabackup/kura/internal/hypervisor"
)

func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// testRestoreTarget checks DefineVM, StartVM, StopVM and UndefineVM.
func testRestoreTarget(t *testing.T, tg Target) {
	ctx := tg.ctx(t)
	c := tg.Connector
	name, uuid := "kura-hvt-"+randomUUID()[:8], randomUUID()
	t.Cleanup(func() { _ = c.UndefineVM(ctx, uuid) })
	cfg := tg.NewConfig(t, name, uuid)

	vm, err := c.DefineVM(ctx, cfg)
	if err != nil {
		t.Fatalf("DefineVM: %v", err)
	}
	if vm.Name != name || !sameUUID(vm.UUID, uuid) || vm.State != hypervisor.PowerOff {
		t.Fatalf("DefineVM = %s %s %s, want %s %s off", vm.Name, vm.UUID, vm.State, name, uuid)
	}
	if got, err := c.LookupVM(ctx, name); err != nil || !sameUUID(got.UUID, uuid) {
		t.Fatalf("LookupVM after define = %+v, %v", got, err)
	}
	if _, err := c.DefineVM(ctx, cfg); err != nil {
		t.Fatalf("DefineVM of the same name and uuid (replace): %v", err)
	}
	if _, err := c.DefineVM(ctx, tg.NewConfig(t, name, randomUUID())); !errors.Is(err, hypervisor.ErrExists) {
		t.Fatalf("DefineVM of a taken name = %v, want ErrExists", err)
	}
	if _, err := c.DefineVM(ctx, tg.NewConfig(t, name+"-b", uuid)); !errors.Is(err, hypervisor.ErrExists) {
		t.Fatalf("DefineVM of a taken uuid = %v, want ErrExists", err)
	}

	for i, want := range []hypervisor.PowerState{hypervisor.PowerOn, hypervisor.PowerOn, hypervisor.PowerOff, hypervisor.PowerOff, hypervisor.PowerOn} {
		op, f := "StartVM", c.StartVM
		if want == hypervisor.PowerOff {
			op, f = "StopVM", c.StopVM
		}
		if err := f(ctx, name); err != nil {
			t.Fatalf("step %d: %s: %v", i, op, err)
		}
		got, err := c.LookupVM(ctx, uuid)
		if err != nil || got.State != want {
			t.Fatalf("step %d: after %s state %s, %v; want %s", i, op, got.State, err, want)
		}
	}
	// Undefining a running VM stops it first.
	if err := c.UndefineVM(ctx, name); err != nil {
		t.Fatalf("UndefineVM of a running vm: %v", err)
	}
	if _, err := c.LookupVM(ctx, uuid); !errors.Is(err, hypervisor.ErrVMNotFound) {
		t.Fatalf("LookupVM after undefine = %v, want ErrVMNotFound", err)
	}
	if err := c.UndefineVM(ctx, name); !errors.Is(err, hypervisor.ErrVMNotFound) {
		t.Fatalf("second UndefineVM = %v, want ErrVMNotFound", err)
	}
	if err := c.StartVM(ctx, name); !errors.Is(err, hypervisor.ErrVMNotFound) {
		t.Fatalf("StartVM of an undefined vm = %v, want ErrVMNotFound", err)
	}
}

func sameUUID(a, b string) bool {
	norm := func(s string) string {
		out := make([]byte, 0, 32)
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '-':
			case c >= 'A' && c <= 'F':
				out = append(out, c+'a'-'A')
			default:
				out = append(out, c)
			}
		}
		return string(out)
	}
	return norm(a) == norm(b)
}
