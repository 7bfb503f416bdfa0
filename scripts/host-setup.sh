#!/bin/sh
# host-setup.sh: prepare a Debian 12 host (run as root) for kura's tests and demo.
# Installs the needed packages when missing, starts virtlogd and libvirtd
# without systemd when they are not running, and makes sure libvirt's
# "default" network exists. Idempotent; quiet on success.
# exim4-daemon-light is for internal/notify's tests, which run their own
# private exim (exim4 -C) on loopback ports; the system's exim daemon is
# not needed and is not started here.
# chromium is the real browser the web console's tests drive (chromedp).
set -eu

PACKAGES="qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients
nbdkit libnbd-bin linux-image-amd64 busybox-static qemu-guest-agent
e2fsprogs xfsprogs ntfs-3g fuse3 parted lvm2 tar unzip dnsmasq-base cpio restic
borgbackup virtnbdbackup python3 kmod exim4-daemon-light openssl curl jq syslinux syslinux-common mtools dosfstools
chromium"
SOCK=/var/run/libvirt/libvirt-sock
URI=qemu:///system

die() { echo "host-setup: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

# 1. Packages: install only what is missing.
missing=""
for p in $PACKAGES; do
	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case "$st" in ii*) ;; *) missing="$missing $p" ;; esac
done
if [ -n "$missing" ]; then
	log=$(mktemp)
	export DEBIAN_FRONTEND=noninteractive
	# With recommends: the tests were written against that set (libvirt's
	# network and storage helpers among them).
	if ! { apt-get -qq update && apt-get -qq -y \
		-o Dpkg::Options::=--force-confold install $missing; } >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		die "apt-get install failed for:$missing"
	fi
	rm -f "$log"
fi

# 2. Daemons (no systemd here: start them directly).
running() { pgrep -x "$1" >/dev/null 2>&1; }
if ! running virtlogd; then
	virtlogd -d || die "cannot start virtlogd"
fi
if ! running libvirtd; then
	libvirtd -d || die "cannot start libvirtd"
fi
i=0
until [ -S "$SOCK" ] && virsh -q -c "$URI" version >/dev/null 2>&1; do
	i=$((i + 1))
	[ "$i" -le 150 ] || die "libvirtd socket $SOCK not answering after 30 s"
	sleep 0.2
done

# 3. The "default" network (guests need not use it; failures are only warned).
if ! virsh -q -c "$URI" net-info default >/dev/null 2>&1; then
	xml=/usr/share/libvirt/networks/default.xml
	if [ -f "$xml" ]; then
		virsh -q -c "$URI" net-define "$xml" >/dev/null 2>&1 ||
			echo "host-setup: warning: cannot define network default" >&2
	fi
fi
if virsh -q -c "$URI" net-info default 2>/dev/null | grep -q '^Active:.*no'; then
	virsh -q -c "$URI" net-start default >/dev/null 2>&1 ||
		echo "host-setup: warning: cannot start network default (guests do not need it)" >&2
fi
virsh -q -c "$URI" net-autostart default >/dev/null 2>&1 || true
exit 0
