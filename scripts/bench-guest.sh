# Sourced by the bench scripts: bench_define NAME DISK DIR defines a TCG
# guest of the benchmarks' shape (256 MiB, 1 vCPU, the kernel and initrd
# of scripts/build-guest.sh in $IMG, one virtio qcow2 disk, a guest agent
# channel, its console in DIR/NAME.console.log), writing DIR/NAME.xml.
# Needs $IMG and a function v (virsh on the bench's URI).
bench_define() {
	cat >"$3/$1.xml" <<XML
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$IMG/vmlinuz</kernel><initrd>$IMG/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>
      <source file='$2'/><target dev='vda' bus='virtio'/>
    </disk>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <serial type='file'><source path='$3/$1.console.log'/><target port='0'/></serial>
    <video><model type='none'/></video><memballoon model='none'/>
  </devices>
</domain>
XML
	v define "$3/$1.xml" >/dev/null
}
