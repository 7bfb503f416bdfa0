// Package testenv gives tests of other packages real libvirt guests to work
// on. It is imported only from _test.go files.
//
// A guest is the host's Debian kernel plus a tiny busybox initramfs built by
// scripts/build-guest.sh (cached under KURA_GUEST_CACHE, default
// /var/tmp/kura-guest). The kernel is booted uncompressed through PVH when
// the script could extract it (vmlinux: about twice as fast under TCG as
// the bzImage vmlinuz). It runs under QEMU's TCG (domain type "qemu": KVM
// guests hang on the CI machines), boots in a few seconds, mounts ext4 data
// disks (vda on /mnt/data, vdX on /mnt/vdX) and, when asked, runs
// qemu-guest-agent with an fsfreeze hook that appends "freeze"/"thaw" lines to
// /run/fsfreeze.log inside the guest.
//
// Tests needing a component that is missing are skipped, unless
// KURA_TEST_STRICT=1 (as in CI), in which case they fail: see Need.
//
// Disk images live under /var/lib/libvirt/images/kura-test/<domain>/ because
// libvirt's qemu user cannot traverse root's private temporary directories.
// Every guest registers a cleanup that destroys and undefines the domain
// (with its checkpoint and snapshot metadata) and removes its images. Guests
// left behind by a killed test process (their <description> names the owning
// PID) are swept by the next RequireLibvirt.
package testenv
