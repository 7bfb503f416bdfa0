#!/bin/sh
# demo-guest.sh: create (when absent) and start the persistent demo VM
# "kura-demo": the test guest kernel/initramfs (scripts/build-guest.sh), a
# guest agent channel and an ext4 data disk (vda, mounted on /mnt/data in the
# guest) holding a few files. Images live in /var/lib/libvirt/images/kura-demo/.
# Idempotent; prints the VM name. Needs libvirtd running (scripts/host-setup.sh).
set -eu

NAME=kura-demo
DIR=/var/lib/libvirt/images/kura-demo
URI=qemu:///system
HERE=$(dirname "$(readlink -f "$0")")

die() { echo "demo-guest: $*" >&2; exit 1; }
v() { virsh -q -c "$URI" "$@"; }

[ "$(id -u)" = 0 ] || die "must run as root"
v version >/dev/null 2>&1 || die "libvirtd not answering (run scripts/host-setup.sh)"

if ! v dominfo "$NAME" >/dev/null 2>&1; then
	"$HERE/build-guest.sh" "${KURA_GUEST_CACHE:-/var/tmp/kura-guest}"
	mkdir -p "$DIR"
	cp "${KURA_GUEST_CACHE:-/var/tmp/kura-guest}/vmlinuz" "$DIR/vmlinuz"
	cp "${KURA_GUEST_CACHE:-/var/tmp/kura-guest}/initrd.img" "$DIR/initrd.img"
	if [ ! -f "$DIR/data.qcow2" ]; then
		tmp=$(mktemp -d)
		trap 'rm -rf "$tmp"' EXIT
		mkdir -p "$tmp/files/docs" "$tmp/files/photos" "$tmp/files/db"
		printf 'Hello from the kura demo VM.\n' >"$tmp/files/README.txt"
		for i in 1 2 3; do
			printf 'Quarterly report %s\nrevenue: %s\n' "$i" "$((i * 1000))" >"$tmp/files/docs/report-$i.txt"
		done
		head -c 2097152 /dev/urandom >"$tmp/files/photos/holiday.jpg"
		head -c 1048576 /dev/urandom >"$tmp/files/db/data.bin"
		truncate -s 256M "$tmp/data.raw"
		mkfs.ext4 -q -F -T default -L kura-demo -E root_owner=0:0 -d "$tmp/files" "$tmp/data.raw" ||
			die "mkfs.ext4 failed"
		qemu-img convert -q -f raw -O qcow2 "$tmp/data.raw" "$DIR/data.qcow2" ||
			die "qemu-img convert failed"
	fi
	xml=$(mktemp)
	cat >"$xml" <<XML
<domain type='qemu'>
  <name>$NAME</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$DIR/vmlinuz</kernel>
    <initrd>$DIR/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 mitigations=off</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>
      <source file='$DIR/data.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='$DIR/console.log' append='on'/>
      <target port='0'/>
    </serial>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
XML
	v define "$xml" >/dev/null || { rm -f "$xml"; die "cannot define $NAME"; }
	rm -f "$xml"
fi

if ! v domstate "$NAME" 2>/dev/null | grep -q '^running'; then
	v start "$NAME" >/dev/null || die "cannot start $NAME"
fi
echo "$NAME"
