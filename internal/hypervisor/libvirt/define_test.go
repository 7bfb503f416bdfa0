package libvirt

import (
	"fmt"
	"testing"

	"github.com/kurabackup/kura/internal/testenv"
)

// newConfigFunc returns hvtest's NewConfig: a diskless TCG domain booting
// the test kernel.
func newConfigFunc(env *testenv.Env) func(t *testing.T, name, uuid string) []byte {
	return func(_ *testing.T, name, uuid string) []byte {
		return fmt.Appendf(nil, `<domain type='qemu'>
  <name>%s</name>
  <uuid>%s</uuid>
  <memory unit='MiB'>96</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
`, name, uuid, env.Kernel, env.Initrd)
	}
}
