#!/usr/bin/env bash
# File-level recovery benchmark, side by side in one run (docs/benchmarks.md):
# an ext4 disk holding real trees of this machine (default /usr/share,
# /usr/lib/x86_64-linux-gnu, /usr/lib/modules, /usr/lib/python3), a
# 20,000-entry directory and a 1 GiB random file is backed up by kura as a
# (never started) VM. Then, page caches dropped before each step:
#   - cp -a of the whole tree from a read-only loop mount of the image,
#   - kura files get POINT / of the same tree,
#   - kura files get of the 1 GiB file (MB/s),
#   - kura files ls of the root and of the 20,000-entry directory.
#
# Usage (as root): scripts/bench-files.sh [WORKDIR]  (default /var/tmp/kura-bench-files)
# KURA_BENCH_TREES overrides the source trees (space-separated). The image,
# the VM and the repository are kept in WORKDIR for the next run (delete
# it to rebuild them); outputs are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
W=${1:-/var/tmp/kura-bench-files}
TREES=${KURA_BENCH_TREES:-/usr/share /usr/lib/x86_64-linux-gnu /usr/lib/modules /usr/lib/python3}
IMG=/var/lib/libvirt/images/kura-bench-files
VM=kura-bench-files
URI=qemu:///system
v() { virsh -q -c "$URI" "$@"; }
now() { date +%s.%N; }
secs() { awk "BEGIN{printf \"%.2f\", $2 - $1}"; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

bash scripts/host-setup.sh
go build -o bin/kura ./cmd/kura
KURA="$PWD/bin/kura"

trap 'umount "$W/mnt" 2>/dev/null || true' EXIT
umount "$W/mnt" 2>/dev/null || true
rm -rf "$W/out-cp" "$W/out-kura" "$W/out-one"
export KURA_PASSWORD=bench KURA_REPO="$W/repo" KURA_CATALOG="$W/catalog.db"
if [ "$(cat "$W/trees" 2>/dev/null)" != "$TREES" ] || [ ! -f "$W/ready" ]; then
v undefine "$VM" --checkpoints-metadata >/dev/null 2>&1 || true
rm -rf "$W/out-cp" "$W/out-kura" "$W/out-one"
mkdir -p "$W/tree" "$W/mnt" "$IMG"
echo "== preparing the tree: $TREES, a 20,000-entry directory, a 1 GiB file"
for t in $TREES; do
	mkdir -p "$W/tree$(dirname "$t")"
	cp -a "$t" "$W/tree$(dirname "$t")/"
done
mkdir "$W/tree/bigdir"
(cd "$W/tree/bigdir" && seq -f "entry-with-a-longish-name-%05g" 1 20000 | xargs touch)
head -c 1073741824 /dev/urandom >"$W/tree/big.bin"
BIGSUM=$(sha256sum <"$W/tree/big.bin" | cut -d' ' -f1)
FILES=$(find "$W/tree" -type f | wc -l)
ENTRIES=$(find "$W/tree" | wc -l)
BYTES=$(du -sb "$W/tree" | cut -f1)
echo "$FILES $ENTRIES $BYTES $BIGSUM" >"$W/stats"
SIZE=$(((BYTES * 3 / 2 + (2 << 30)) / 1048576))
truncate -s "${SIZE}M" "$IMG/disk.raw"
mkfs.ext4 -q -F "$IMG/disk.raw"
mount -o loop "$IMG/disk.raw" "$W/mnt"
cp -a "$W/tree/." "$W/mnt/"
umount "$W/mnt"
rm -rf "$W/tree"
chown -R libvirt-qemu:kvm "$IMG" 2>/dev/null || true
cat >"$W/vm.xml" <<XML
<domain type='qemu'>
  <name>$VM</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$IMG/disk.raw'/><target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
XML
v define "$W/vm.xml" >/dev/null

"$KURA" --quiet repo init >/dev/null
"$KURA" --quiet backup "$VM" --retries 0 >/dev/null
echo "$TREES" >"$W/trees"
touch "$W/ready"
fi
read -r FILES ENTRIES BYTES BIGSUM <"$W/stats"
SIZE=$(($(stat -c %s "$IMG/disk.raw") / 1048576))
POINT=$("$KURA" points list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')

echo "== $ENTRIES entries, $FILES files, $((BYTES / 1000000)) MB; image ${SIZE} MiB"
# Each step runs with cold caches (dropped before), then warm: caches
# dropped, then the step's source alone read into the page cache (the
# image for cp -a, the repository for kura). "done" is when the command
# returns (data in the page cache), "+sync" adds writing it to disk.
rate() { awk "BEGIN{printf \"%.0f\", $1 / ($3 - $2) / 1e6}"; }
row() { # label bytes t0 t1 t2
	printf '| %s | %s s (%s MB/s) | %s s |\n' "$1" "$(secs "$3" "$4")" "$(rate "$2" "$3" "$4")" "$(secs "$3" "$5")"
}
echo "| step | done | +sync |"
echo "|---|---|---|"
warm() { # what to read into the page cache
	drop
	[ $cache = warm ] && find "$@" -type f -exec cat {} + >/dev/null
	true
}
for cache in cold warm; do
	warm "$IMG/disk.raw"
	mount -o ro,loop "$IMG/disk.raw" "$W/mnt"
	t0=$(now); cp -a "$W/mnt/." "$W/out-cp/"; t1=$(now); sync; t2=$(now)
	umount "$W/mnt"
	row "cp -a from a loop mount, whole tree ($cache)" "$BYTES" "$t0" "$t1" "$t2"
	rm -rf "$W/out-cp"; sync
	warm "$W/repo"
	t0=$(now); "$KURA" --quiet files get "$POINT" / --out "$W/out-kura" >/dev/null; t1=$(now); sync; t2=$(now)
	row "kura files get /, whole tree ($cache)" "$BYTES" "$t0" "$t1" "$t2"
	rm -rf "$W/out-kura"; sync
	warm "$W/repo"
	t0=$(now); "$KURA" --quiet files get "$POINT" /big.bin --out "$W/out-one" >/dev/null; t1=$(now); sync; t2=$(now)
	[ "$(sha256sum <"$W/out-one/big.bin" | cut -d' ' -f1)" = "$BIGSUM" ] || { echo "big.bin differs" >&2; exit 1; }
	row "kura files get of one 1 GiB file ($cache)" 1073741824 "$t0" "$t1" "$t2"
	rm -rf "$W/out-one"; sync
	warm "$W/repo"
	t0=$(now); "$KURA" --quiet files ls "$POINT" / >/dev/null; t1=$(now)
	echo "| kura files ls / ($cache) | $(secs "$t0" "$t1") s | |"
	t0=$(now); n=$("$KURA" --quiet files ls "$POINT" /bigdir | wc -l); t1=$(now)
	echo "| kura files ls /bigdir, $n entries ($cache) | $(secs "$t0" "$t1") s | |"
	t0=$(now); "$KURA" --quiet files volumes "$POINT" >/dev/null; t1=$(now)
	echo "| (kura files volumes: repository key derivation, partition table) | $(secs "$t0" "$t1") s | |"
done
rm -rf "$W/out-cp" "$W/out-kura" "$W/out-one"
