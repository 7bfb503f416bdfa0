package fake

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/hvtest"
)

var seq atomic.Int64

func newVM(t *testing.T, c *Connector) (hypervisor.VM, hvtest.WriteFunc) {
	n := seq.Add(1)
	vm := c.AddVM(VMSpec{Name: fmt.Sprintf("vm%d", n), UUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n),
		Disks: []DiskSpec{{Target: "vda", Size: 16 << 20}, {Target: "sda", Size: 1 << 20, Unprotectable: "pass-through block LUN"}}})
	return vm, func(off int64, data []byte) {
		if err := c.Write(vm.Name, "vda", off, data); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConformance(t *testing.T) {
	c := New()
	hvtest.Run(t, hvtest.Target{Connector: c, MakeVM: func(t *testing.T) (hypervisor.VM, hvtest.WriteFunc) { return newVM(t, c) },
		NewConfig: func(_ *testing.T, name, uuid string) []byte {
			return fmt.Appendf(nil, "<domain type='fake'><name>%s</name><uuid>%s</uuid></domain>", name, uuid)
		},
		Abandon: func(t *testing.T, vm hypervisor.VM, base, next string, ids map[string]string) {
			if err := c.Abandon(context.Background(), vm, hypervisor.BackupOptions{BaseCheckpoint: base, NewCheckpoint: next, BaseChangeIDs: ids}); err != nil {
				t.Fatal(err)
			}
		},
		Storage:  func(t *testing.T) string { return t.TempDir() },
		ReadDisk: hvtest.ReadLocalImage})
}

func TestInjectedFailures(t *testing.T) {
	ctx := context.Background()
	c := New()
	vm, write := newVM(t, c)
	write(0, make([]byte, 1<<20))
	opts := hypervisor.BackupOptions{Consistency: hypervisor.ModeApplication, NewCheckpoint: "kura-1"}

	c.SetFailures(vm.Name, nil, 0, true)
	if _, err := c.BeginBackup(ctx, vm, opts); !errors.Is(err, hypervisor.ErrNoAgent) {
		t.Fatalf("application mode without agent: %v", err)
	}
	opts.Consistency = hypervisor.ModeAuto
	s, err := c.BeginBackup(ctx, vm, opts)
	if err != nil || s.Consistency() != hypervisor.ConsistencyCrash || len(s.Notes()) == 0 {
		t.Fatalf("auto without agent: %v %v %v", err, s, err)
	}
	if _, err := c.BeginBackup(ctx, vm, hypervisor.BackupOptions{NewCheckpoint: "kura-2"}); !errors.Is(err, hypervisor.ErrBusy) {
		t.Fatalf("second session: %v, want ErrBusy", err)
	}
	_ = s.Close(ctx, false)

	c.SetFailures(vm.Name, ErrInjected, 0, false)
	if _, err := c.BeginBackup(ctx, vm, opts); !errors.Is(err, ErrInjected) {
		t.Fatalf("fail begin: %v", err)
	}
	c.SetFailures(vm.Name, nil, 100<<10, false)
	s, err = c.BeginBackup(ctx, vm, opts)
	if err != nil || s.Consistency() != hypervisor.ConsistencyApplication {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	r := s.Disks()[0].Reader
	if _, err := r.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadAt(buf, 64<<10); !errors.Is(err, ErrInjected) {
		t.Fatalf("read past the limit: %v", err)
	}
	if err := s.Close(ctx, false); err != nil || len(c.Checkpoints(vm.Name)) != 0 {
		t.Fatalf("close: %v, checkpoints %v", err, c.Checkpoints(vm.Name))
	}
}
