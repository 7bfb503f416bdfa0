package libvirt

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/hypervisor/hvtest"
)

func TestConformanceInstant(t *testing.T) {
	env, c := connect(t)
	hvtest.RunInstant(t, hvtest.InstantTarget{Connector: c, NewConfig: func(_ *testing.T, name, uuid string) []byte {
		return fmt.Appendf(nil, `<domain type='qemu'>
  <name>%s</name>
  <uuid>%s</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 mitigations=off</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/kura-hvt-gone/vda.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='kura-hvt-no-such-network'/>
      <model type='virtio'/>
    </interface>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
`, name, uuid, env.Kernel, env.Initrd)
	}})
}

// TestInstantLeftoverDirs: directories and networks of runs whose owner
// is gone are leftovers; those of live owners or used by a VM are not.
func TestInstantLeftoverDirs(t *testing.T) {
	_, c := connect(t)
	ctx := testCtx(t, time.Minute)
	id := fmt.Sprintf("%d", os.Getpid())
	src := "8b2b0c9e-4d33-4d0a-9a41-" + fmt.Sprintf("%012d", os.Getpid())
	tag := hypervisor.InstantTag{Role: hypervisor.RoleVerify, Source: src}
	live, err := c.InstantDir(ctx, VerifyPrefix+"l"+id, tag)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := c.InstantDir(ctx, InstantPrefix+"d"+id, tag)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(live); os.RemoveAll(dead) })
	if err := os.WriteFile(filepath.Join(dead, ownerFile), []byte(`{"pid":999999999}`), 0o600); err != nil {
		t.Fatal(err)
	}
	net := VerifyPrefix + "n" + id
	ndir, err := c.InstantDir(ctx, net, tag)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(ndir) })
	if err := os.WriteFile(filepath.Join(ndir, ownerFile), []byte(`{"pid":999999999}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateIsolatedNetwork(ctx, net); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.RemoveNetwork(ctx, net) })
	// Found by the VM the points were taken of.
	lo, err := c.Leftovers(ctx, hypervisor.LeftoverQuery{VMs: []string{src}})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, l := range lo {
		kinds[l.Name] = l.Kind
	}
	if len(lo) != 3 || kinds[dead] != KindInstantDir || kinds[net] != KindNetwork || kinds[ndir] != KindInstantDir {
		t.Fatalf("leftovers %+v, want the dead directories and the network without a live owner", lo)
	}
	for _, l := range lo {
		if err := c.RemoveLeftover(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Fatalf("dead directory still there: %v", err)
	}
	if lo, _ := c.Leftovers(ctx, hypervisor.LeftoverQuery{VMs: []string{src, filepath.Base(live)}}); len(lo) != 0 {
		t.Fatalf("leftovers after removal: %+v", lo)
	}
}
