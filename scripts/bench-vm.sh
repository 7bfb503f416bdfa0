#!/usr/bin/env bash
# Side-by-side benchmark of VM backup and restore, in one run on this
# machine (docs/benchmarks.md): a running TCG guest with an 8 GiB qcow2 disk
# holding 512 MiB random + 512 MiB text, backed up by kura, virtnbdbackup
# (plain and --compress), restic and borg (whole image file) and copied by
# qemu-img convert; then an incremental after 32 MiB written in the guest,
# dedup of a second VM cloned from the same image, and a full restore
# (kura restore vs virtnbdrestore).
#
# Usage (as root): scripts/bench-vm.sh [WORKDIR]   (default /var/tmp/kura-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
W=${1:-/var/tmp/kura-bench}
IMG=/var/lib/libvirt/images/kura-bench
VM=kura-bench
VM2=kura-bench-clone
URI=qemu:///system
v() { virsh -q -c "$URI" "$@"; }

bash scripts/host-setup.sh
go build -o bin/kura ./cmd/kura
KURA="$PWD/bin/kura"
GUEST=${KURA_GUEST_CACHE:-/var/tmp/kura-guest}
bash scripts/build-guest.sh "$GUEST" >/dev/null

cleanup_vms() {
	for d in "$VM" "$VM2" "$VM-restored" "$VM-s3-restored" "$VM-fs"; do
		v destroy "$d" >/dev/null 2>&1 || true
		v undefine "$d" --checkpoints-metadata >/dev/null 2>&1 || true
	done
}
cleanup_vms
rm -rf "$W" "$IMG"
mkdir -p "$W" "$IMG"
cp "$GUEST/vmlinuz" "$GUEST/initrd.img" "$IMG/"

echo "== preparing the work: 8 GiB qcow2, 512 MiB random + 512 MiB text"
"$KURA" benchmark --write-image "$W/content.raw" --size 1GiB
truncate -s 8G "$W/disk.raw"
dd if="$W/content.raw" of="$W/disk.raw" bs=4M conv=notrunc,sparse status=none
qemu-img convert -q -f raw -O qcow2 "$W/disk.raw" "$IMG/disk.qcow2"
qemu-img convert -q -f raw -O qcow2 "$W/disk.raw" "$IMG/clone.qcow2"
rm -f "$W/disk.raw" "$W/content.raw"
# A third VM (never started) whose ext4 disk holds a 256 MiB file, for
# file-level recovery: list the root, extract the file.
mkdir -p "$W/fsfiles/docs"
head -c 268435456 /dev/urandom >"$W/fsfiles/big.bin"
BIGSUM=$(sha256sum <"$W/fsfiles/big.bin")
for i in $(seq 1 50); do echo "document $i" >"$W/fsfiles/docs/doc-$i.txt"; done
truncate -s 1G "$W/fs.raw"
mkfs.ext4 -q -F -T default -d "$W/fsfiles" "$W/fs.raw"
qemu-img convert -q -f raw -O qcow2 "$W/fs.raw" "$IMG/fs.qcow2"
rm -rf "$W/fs.raw" "$W/fsfiles"
chown -R libvirt-qemu:kvm "$IMG" 2>/dev/null || true

define() { # name disk running
	cat >"$W/$1.xml" <<XML
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
    <serial type='file'><source path='$W/$1.console.log'/><target port='0'/></serial>
    <video><model type='none'/></video><memballoon model='none'/>
  </devices>
</domain>
XML
	v define "$W/$1.xml" >/dev/null
}
define "$VM" "$IMG/disk.qcow2"
define "$VM2" "$IMG/clone.qcow2"
define "$VM-fs" "$IMG/fs.qcow2"
v start "$VM" >/dev/null
sleep 15 # let the guest boot (its agent answers; the bench disk has no filesystem)

declare -A T S
now() { date +%s.%N; }
timeit() { # key command...
	local k=$1 t0 t1
	shift
	sync
	echo 3 >/proc/sys/vm/drop_caches
	t0=$(now)
	"$@" >"$W/$k.log" 2>&1 || { echo "FAILED: $k (see $W/$k.log)"; tail -5 "$W/$k.log"; return 1; }
	t1=$(now)
	T[$k]=$(awk "BEGIN{printf \"%.2f\", $t1 - $t0}")
	echo "$k: ${T[$k]} s"
}
size() { du -sb "$1" | cut -f1; }
write32() { # 32 MiB written by the running guest's disk device
	v qemu-monitor-command "$VM" --hmp "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"write -P $1 3G 32M\"" >/dev/null
}

timeit vnb-full virtnbdbackup -d "$VM" -l full -o "$W/vnb"
S[vnb-full]=$(size "$W/vnb")
write32 0x6b
timeit vnb-inc virtnbdbackup -d "$VM" -l inc -o "$W/vnb"
timeit vnbc-full virtnbdbackup -d "$VM" -l copy --compress -o "$W/vnbc"
S[vnbc-full]=$(size "$W/vnbc")
# virtnbdbackup refuses to run beside checkpoints it did not create, and
# kura's own are removed by kura: drop virtnbdbackup's before kura runs.
for cp in $(v checkpoint-list "$VM" --name); do v checkpoint-delete "$VM" "$cp" >/dev/null; done

export KURA_REPO="$W/kura-repo" KURA_PASSWORD=bench KURA_CATALOG="$W/catalog.db"
"$KURA" repo init >/dev/null
timeit kura-full "$KURA" backup --quiet --full "$VM"
S[kura-full]=$(size "$KURA_REPO")
write32 0x5a
timeit kura-inc "$KURA" backup --quiet "$VM"
timeit kura-clone "$KURA" backup --quiet --full "$VM2"
S[kura-clone]=$(( $(size "$KURA_REPO") - S[kura-full] ))

# The same backups into S3: versitygw (scripts/test.sh installs it) serving
# a directory on the same disk, over loopback.
VGW="$(command -v versitygw || echo "$(go env GOPATH)/bin/versitygw")"
if [ -x "$VGW" ]; then
	mkdir -p "$W/s3"
	S3PORT=$((20000 + RANDOM % 20000))
	AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=benchsecret0123456789 \
		"$VGW" --access benchaccess --secret benchsecret0123456789 --port "127.0.0.1:$S3PORT" posix "$W/s3" >"$W/versitygw.log" 2>&1 &
	VGWPID=$!
	mkdir -p "$W/s3/bench"
	until (exec 3<>"/dev/tcp/127.0.0.1/$S3PORT") 2>/dev/null; do sleep 0.2; done
	S3REPO="s3:http://127.0.0.1:$S3PORT/bench/kura"
	export AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=benchsecret0123456789
	KURA_REPO="$S3REPO" "$KURA" repo init >/dev/null
	for cp in $(v checkpoint-list "$VM" --name); do v checkpoint-delete "$VM" "$cp" >/dev/null; done
	timeit kura-s3-full env KURA_REPO="$S3REPO" "$KURA" backup --quiet --full "$VM"
	S[kura-s3-full]=$(size "$W/s3/bench")
	write32 0x3c
	timeit kura-s3-inc env KURA_REPO="$S3REPO" "$KURA" backup --quiet "$VM"
	KURA_REPO="$S3REPO" "$KURA" repo info >"$W/kura-s3-info.txt"
	S3POINT=$(KURA_REPO="$S3REPO" "$KURA" points list --vm "$VM" --json | sed -n 's/^    "id": "\(.*\)",/\1/p' | tail -1)
	timeit kura-s3-restore env KURA_REPO="$S3REPO" "$KURA" restore "$S3POINT" --name "$VM-s3-restored" --storage "$W/restore-kura-s3" --on-conflict overwrite
	# Back to the local repository's checkpoint chain for what follows.
	for cp in $(v checkpoint-list "$VM" --name); do v checkpoint-delete "$VM" "$cp" >/dev/null; done
fi


export RESTIC_PASSWORD=bench
restic init -q -r "$W/restic" >/dev/null
timeit restic-full restic -q -r "$W/restic" backup "$IMG/disk.qcow2"
S[restic-full]=$(size "$W/restic")
BORG_PASSPHRASE="" borg init -e none "$W/borg" >/dev/null 2>&1
timeit borg-full borg create --compression lz4 "$W/borg::a" "$IMG/disk.qcow2"
S[borg-full]=$(size "$W/borg")
timeit qemu-img-convert qemu-img convert -U -f qcow2 -O raw "$IMG/disk.qcow2" "$W/copy.raw"
rm -f "$W/copy.raw"

POINT=$("$KURA" points list --vm "$VM" --json | sed -n 's/^    "id": "\(.*\)",/\1/p' | tail -1)
if "$KURA" restore --help >/dev/null 2>&1; then
	timeit kura-restore "$KURA" restore "$POINT" --name "$VM-restored" --storage "$W/restore-kura" --on-conflict overwrite
fi
timeit vnb-restore virtnbdrestore -i "$W/vnb" -o "$W/restore-vnb"

"$KURA" backup --quiet "$VM-fs" >/dev/null
FSPOINT=$("$KURA" points list --vm "$VM-fs" --json | sed -n 's/^    "id": "\(.*\)",/\1/p' | tail -1)
timeit files-ls "$KURA" files ls "$FSPOINT" /
timeit files-get "$KURA" --quiet files get "$FSPOINT" /big.bin --out "$W/extract"
[ "$(sha256sum <"$W/extract/big.bin")" = "$BIGSUM" ] || { echo "extracted big.bin differs" >&2; exit 1; }

mb() { awk "BEGIN{printf \"%d\", $1 / 1000000}"; }
echo
echo "| tool | full backup | stored | incremental (32 MiB written) | full restore |"
echo "|---|---|---|---|---|"
echo "| kura | ${T[kura-full]} s | $(mb "${S[kura-full]}") MB | ${T[kura-inc]} s | ${T[kura-restore]:-n/a} s |"
[ -n "${T[kura-s3-full]:-}" ] && echo "| kura to S3 (versitygw, loopback) | ${T[kura-s3-full]} s | $(mb "${S[kura-s3-full]}") MB | ${T[kura-s3-inc]} s | ${T[kura-s3-restore]} s |"
echo "| virtnbdbackup (no compression) | ${T[vnb-full]} s | $(mb "${S[vnb-full]}") MB | ${T[vnb-inc]} s | ${T[vnb-restore]} s |"
echo "| virtnbdbackup --compress | ${T[vnbc-full]} s | $(mb "${S[vnbc-full]}") MB | | |"
echo "| restic (whole image file) | ${T[restic-full]} s | $(mb "${S[restic-full]}") MB | | |"
echo "| borg lz4 (whole image file) | ${T[borg-full]} s | $(mb "${S[borg-full]}") MB | | |"
echo "| qemu-img convert to raw (copy only) | ${T[qemu-img-convert]} s | | | |"
echo
echo "file-level: list the root of the point's ext4 in ${T[files-ls]} s; extract a 256 MiB file in ${T[files-get]} s ($(awk "BEGIN{printf \"%.0f\", 268.435456 / ${T[files-get]}}") MB/s), kura process start included"
echo "second VM cloned from the same image: kura stored $(mb "${S[kura-clone]}") MB more (full read ${T[kura-clone]} s)"
[ -n "${VGWPID:-}" ] && { grep -A3 "last job" "$W/kura-s3-info.txt" || true; kill "$VGWPID"; }
cleanup_vms
# Keep the logs, drop the images and repositories.
rm -rf "$IMG" "$W"/kura-repo "$W"/s3 "$W"/vnb "$W"/vnbc "$W"/restic "$W"/borg "$W"/restore-* "$W"/extract
