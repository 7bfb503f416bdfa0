#!/bin/sh
# build-guest.sh [OUTDIR]: build a tiny test guest for kura: the host's Debian
# kernel (OUTDIR/vmlinuz, and when it can be extracted the uncompressed
# OUTDIR/vmlinux, which QEMU boots directly through PVH about twice as fast
# under TCG) plus a busybox initramfs (OUTDIR/initrd.img) that
# loads the virtio and ext4 modules, mounts data disks (vda on /mnt/data,
# vdX on /mnt/vdX), answers power-button presses and runs qemu-guest-agent
# with an fsfreeze hook that logs to /run/fsfreeze.log.
# Cached: does nothing when OUTDIR is up to date with its inputs.
set -eu

OUT=${1:-${KURA_GUEST_CACHE:-/var/tmp/kura-guest}}
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
virtio_blk virtio_console crc16 mbcache jbd2 crc32c_generic ext4 evdev button"
BUSYBOX=/bin/busybox
QGA=/usr/sbin/qemu-ga

die() { echo "build-guest: $*" >&2; exit 1; }

# The newest /boot/vmlinuz-* that has its modules installed.
KVER=""
for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V -r); do
	v=${k#/boot/vmlinuz-}
	if [ -d "/lib/modules/$v/kernel" ]; then KVER=$v; break; fi
done
[ -n "$KVER" ] || die "no /boot/vmlinuz-* with /lib/modules/<version> (install linux-image-amd64)"
[ -r "/boot/vmlinuz-$KVER" ] || die "cannot read /boot/vmlinuz-$KVER"
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (install busybox-static)"
[ -x "$QGA" ] || die "$QGA missing (install qemu-guest-agent)"
for t in cpio ldd; do
	command -v "$t" >/dev/null || die "$t missing"
done

SELF=$(readlink -f "$0")
STAMP=$( {
	echo "$KVER"
	cat "$SELF"
	ls -lL "/boot/vmlinuz-$KVER" "$BUSYBOX" "$QGA"
} | sha256sum | cut -d' ' -f1)
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ] &&
	[ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ]; then
	exit 0
fi

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
mkdir -p "$R"/bin "$R"/sbin "$R"/usr/bin "$R"/usr/sbin "$R"/etc/init.d "$R"/etc/qemu \
	"$R"/etc/acpi/PWRF "$R"/proc "$R"/sys "$R"/dev "$R"/run "$R"/tmp "$R"/mnt/data \
	"$R"/lib/modules "$R"/root "$R"/var
ln -s ../run "$R"/var/run
chmod 1777 "$R"/tmp

cp "$BUSYBOX" "$R"/bin/busybox
for a in $("$BUSYBOX" --list); do
	case "$a" in busybox|init|shutdown) continue ;; esac
	ln -s busybox "$R/bin/$a"
done
ln -s ../bin/busybox "$R"/sbin/init

# Kernel modules (decompressed when shipped as .ko.xz / .ko.zst / .ko.gz).
for m in $MODULES; do
	f=$(find "/lib/modules/$KVER/kernel" -name "$m.ko*" | head -n1)
	[ -n "$f" ] || die "module $m not found for kernel $KVER"
	case "$f" in
	*.ko.xz) xz -dc "$f" >"$R/lib/modules/$m.ko" ;;
	*.ko.zst) zstd -qdc "$f" >"$R/lib/modules/$m.ko" ;;
	*.ko.gz) gzip -dc "$f" >"$R/lib/modules/$m.ko" ;;
	*) cp "$f" "$R/lib/modules/$m.ko" ;;
	esac
done
echo "$MODULES" | tr '\n' ' ' >"$R"/lib/modules/order

# qemu-ga and the shared libraries it links (with the dynamic loader).
cp "$QGA" "$R"/usr/sbin/qemu-ga
for lib in $(ldd "$QGA" | awk '/=> \//{print $3} /^\t\//{print $1}'); do
	mkdir -p "$R$(dirname "$lib")"
	cp -L "$lib" "$R$lib"
done

cat >"$R"/init <<'EOS'
#!/bin/sh
# Stage 0: pseudo filesystems, then busybox init (reads /etc/inittab).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755 tmpfs /run
exec /sbin/init
EOS

cat >"$R"/etc/inittab <<'EOS'
::sysinit:/etc/init.d/rcS
::respawn:/etc/init.d/agent
::ctrlaltdel:/sbin/kura-poweroff
::shutdown:/etc/init.d/rcK
EOS

cat >"$R"/etc/init.d/rcS <<'EOS'
#!/bin/sh
for m in $(cat /lib/modules/order); do
	insmod /lib/modules/$m.ko 2>/dev/null
done
hostname kura-guest
# Data disks: vda on /mnt/data, any other vdX on /mnt/vdX.
for b in /sys/block/vd*; do
	[ -e "$b" ] || continue
	n=${b##*/}
	[ -b /dev/$n ] || mknod /dev/$n b $(tr ':' ' ' <$b/dev)
	d=/mnt/$n
	[ "$n" = vda ] && d=/mnt/data
	mkdir -p $d
	mount -t ext4 /dev/$n $d 2>/dev/null || rmdir $d 2>/dev/null
done
mkdir -p /dev/input
for e in /sys/class/input/event*; do
	[ -e "$e" ] || continue
	[ -c /dev/input/${e##*/} ] || mknod /dev/input/${e##*/} c $(tr ':' ' ' <$e/dev)
done
acpid -c /etc/acpi -l /run/acpid.log 2>/dev/null
echo "kura-guest: ready" >/dev/console
EOS

cat >"$R"/etc/init.d/agent <<'EOS'
#!/bin/sh
# Run qemu-ga on the org.qemu.guest_agent.0 virtio port; sleep if there is none.
for p in /sys/class/virtio-ports/*; do
	[ -f "$p/name" ] || continue
	[ "$(cat $p/name)" = org.qemu.guest_agent.0 ] || continue
	dev=/dev/${p##*/}
	[ -c $dev ] || mknod $dev c $(tr ':' ' ' <$p/dev)
	exec /usr/sbin/qemu-ga -m virtio-serial -p $dev -t /run -F/etc/qemu/fsfreeze-hook
done
exec sleep 2147483647
EOS

cat >"$R"/etc/init.d/rcK <<'EOS'
#!/bin/sh
sync
for d in /mnt/*; do
	umount $d 2>/dev/null || mount -o remount,ro $d 2>/dev/null
done
sync
EOS

cat >"$R"/etc/qemu/fsfreeze-hook <<'EOS'
#!/bin/sh
# Called by qemu-ga with "freeze" before freezing and "thaw" after thawing.
# /run/fsfreeze-delay, when there, holds seconds a freeze takes (a slow
# application flush, for tests).
echo "$1 $(date +%s) $(cut -d" " -f1 /proc/uptime)" >>/run/fsfreeze.log
if [ "$1" = freeze ] && [ -f /run/fsfreeze-delay ]; then
	sleep "$(cat /run/fsfreeze-delay)"
fi
EOS

# Fast power off: busybox init's own shutdown path sleeps for seconds.
cat >"$R"/sbin/kura-poweroff <<'EOS'
#!/bin/sh
/etc/init.d/rcK
exec /bin/poweroff -f
EOS

# qemu-ga runs /sbin/shutdown for guest-shutdown; busybox has no such applet.
cat >"$R"/sbin/shutdown <<'EOS'
#!/bin/sh
case " $* " in
*" -r "*) exec /bin/reboot ;;
*" -H "*) exec /bin/halt ;;
*) exec /sbin/kura-poweroff ;;
esac
EOS

cat >"$R"/etc/acpi/PWRF/00000080 <<'EOS'
#!/bin/sh
exec /sbin/kura-poweroff
EOS

chmod 0755 "$R"/init "$R"/etc/init.d/* "$R"/etc/qemu/fsfreeze-hook "$R"/sbin/shutdown "$R"/sbin/kura-poweroff \
	"$R"/etc/acpi/PWRF/00000080
echo "root:x:0:0:root:/root:/bin/sh" >"$R"/etc/passwd
echo "root:x:0:" >"$R"/etc/group

# Uncompressed kernel: find the payload inside the bzImage and decompress it
# (trailing bytes make the decompressor complain: only the ELF magic counts).
extract_vmlinux() {
	for kind in 'xz:\xfd7zXZ\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08'; do
		tool=${kind%%:*}
		command -v "$tool" >/dev/null || continue
		for off in $(LC_ALL=C grep -obUaP "${kind#*:}" "$1" 2>/dev/null | head -n3 | cut -d: -f1); do
			tail -c +$((off + 1)) "$1" | "$tool" -dcq >"$2" 2>/dev/null || true
			[ "$(head -c4 "$2" | od -An -c | tr -d ' ')" = '177ELF' ] && return 0
		done
	done
	rm -f "$2"
	return 1
}
extract_vmlinux "/boot/vmlinuz-$KVER" "$WORK/vmlinux" || true

(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$WORK/initrd.img"
cp "/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
chmod 0644 "$WORK/initrd.img" "$WORK/vmlinuz"
mv -f "$WORK/vmlinuz" "$OUT/vmlinuz"
if [ -f "$WORK/vmlinux" ]; then
	chmod 0644 "$WORK/vmlinux"
	mv -f "$WORK/vmlinux" "$OUT/vmlinux"
else
	rm -f "$OUT/vmlinux"
fi
mv -f "$WORK/initrd.img" "$OUT/initrd.img"
echo "$STAMP" >"$OUT/stamp"
