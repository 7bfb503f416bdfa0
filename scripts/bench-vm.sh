#!/usr/bin/env bash
# The whole side-by-side comparison of docs/benchmarks.md, in one run on
# this machine: the brief's work (running TCG guests with an 8 GiB qcow2
# disk holding 512 MiB random + 512 MiB text), each tool on its own VM of
# the same shape:
#   qemu-img convert -U -O raw     (copying the disk, the floor; again with sync)
#   virtnbdbackup, plain and --compress; incremental after 32 MiB written;
#   virtnbdrestore
#   restic and borg (lz4) on the whole image file
#   kura: full, incremental after 32 MiB written, restore as a new VM,
#   export of the disk to a qcow2 file, files get of a 1 GiB file, and
#   `kura benchmark` on the mixed 1 GiB image (ingest, duplicates, restore
#   of the disk to a file).
# Caches are dropped before each step. Every kura time is the whole command
# (passphrase KDF, libvirt session, commit and sync of the repository).
# It prints one table, then the ratios the targets are stated in, with the
# load average (1 min) when each step started and kura's peak RSS.
#
# KURA_BASE=/path/to/another/kura adds its rows (kura-base) to the same run:
# before/after comparisons of two builds measured side by side.
# KURA_BENCH_S3=1 adds the same kura backups into S3 (versitygw, loopback).
#
# Usage (as root): scripts/bench-vm.sh [WORKDIR]   (default /var/tmp/kura-perf)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
W=${1:-/var/tmp/kura-perf}
P=${KURA_BENCH_PREFIX:-kura-perf}
IMG=/var/lib/libvirt/images/$P
URI=qemu:///system
v() { virsh -q -c "$URI" "$@"; }

bash scripts/host-setup.sh
go build -o bin/kura ./cmd/kura
KURA="$PWD/bin/kura"
BASE=${KURA_BASE:-}
GUEST=${KURA_GUEST_CACHE:-/var/tmp/kura-guest}
bash scripts/build-guest.sh "$GUEST" >/dev/null

VMS="$P-kura $P-base $P-vnb $P-fs $P-kura-restored $P-base-restored $P-s3 $P-s3-restored"
cleanup_vms() {
	for d in $VMS; do
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
vmnames="kura vnb"
[ -n "$BASE" ] && vmnames="$vmnames base"
[ -n "${KURA_BENCH_S3:-}" ] && vmnames="$vmnames s3"
for n in $vmnames; do
	qemu-img convert -q -f raw -O qcow2 "$W/disk.raw" "$IMG/$n.qcow2"
done
rm -f "$W/disk.raw"
# A VM (never started) whose ext4 disk holds a 1 GiB file, for file-level
# recovery.
mkdir -p "$W/fsfiles/docs"
head -c 1073741824 /dev/urandom >"$W/fsfiles/big.bin"
BIGSUM=$(sha256sum <"$W/fsfiles/big.bin")
for i in $(seq 1 50); do echo "document $i" >"$W/fsfiles/docs/doc-$i.txt"; done
truncate -s 2G "$W/fs.raw"
mkfs.ext4 -q -F -T default -d "$W/fsfiles" "$W/fs.raw"
qemu-img convert -q -f raw -O qcow2 "$W/fs.raw" "$IMG/fs.qcow2"
rm -rf "$W/fs.raw" "$W/fsfiles"
chown -R libvirt-qemu:kvm "$IMG" 2>/dev/null || true

. scripts/bench-guest.sh
define() { bench_define "$1" "$2" "$W"; } # name disk
for n in $vmnames; do
	define "$P-$n" "$IMG/$n.qcow2"
	v start "$P-$n" >/dev/null
done
define "$P-fs" "$IMG/fs.qcow2"
sleep 15 # let the guests boot (their agents answer; the bench disk has no filesystem)
for i in $(seq 1 60); do # and settle: TCG boots keep the CPUs busy for a while
	awk '{exit !($1 < 0.8)}' /proc/loadavg && break
	sleep 2
done

declare -A T S L M R
now() { date +%s.%N; }
load1() { cut -d' ' -f1 /proc/loadavg; }
timeit() { # key command...
	local k=$1 t0 t1 d
	shift
	for d in $vmnames; do waitjob "$P-$d"; done
	sync
	echo 3 >/proc/sys/vm/drop_caches
	L[$k]=$(load1)
	t0=$(now)
	/usr/bin/time -f %M -o "$W/$k.rss" "$@" >"$W/$k.log" 2>&1 || { echo "FAILED: $k (see $W/$k.log)"; tail -5 "$W/$k.log"; return 1; }
	t1=$(now)
	T[$k]=$(awk "BEGIN{printf \"%.2f\", $t1 - $t0}")
	M[$k]=$(awk '{printf "%d", $1 / 1000}' "$W/$k.rss")
	echo "$k: ${T[$k]} s (load ${L[$k]}, peak RSS ${M[$k]} MB)"
}
size() { du -sb "$1" | cut -f1; }
waitjob() { # vm: until the domain has no job (a backup job ends a moment after its tool exits)
	local i
	for i in $(seq 1 300); do
		v domjobinfo "$1" 2>/dev/null | grep -q "^Job type: *None" && return 0
		sleep 0.1
	done
}
write32() { # vm pattern: 32 MiB written by the running guest's disk device
	waitjob "$1"
	v qemu-monitor-command "$1" --hmp "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"write -P $2 3G 32M\"" >/dev/null
}
lastpoint() { # kura-binary vm
	"$1" points list --vm "$2" --json | sed -n 's/^    "id": "\(.*\)",/\1/p' | tail -1
}

# Every tool reads its own copy of the disk: read each once, so that none
# pays alone for the first read of a file from the storage under this
# machine (its own page cache is dropped before every step all the same).
for f in "$IMG"/*.qcow2; do cat "$f" >/dev/null; done
# The first copy after the set-up ran 2-3 s slower than every later one:
# one untimed run first.
qemu-img convert -U -f qcow2 -O raw "$IMG/kura.qcow2" "$W/copy.raw"
rm -f "$W/copy.raw"

copies() { # round: the copy floor, three ways
	timeit "qemu-img-$1" qemu-img convert -U -f qcow2 -O raw "$IMG/kura.qcow2" "$W/copy.raw"
	rm -f "$W/copy.raw"
	# The same copy made durable, as every kura time is (its repository synced).
	timeit "qemu-img-sync-$1" sh -c "qemu-img convert -U -f qcow2 -O raw '$IMG/kura.qcow2' '$W/copy.raw' && sync"
	rm -f "$W/copy.raw"
	# The same copy past the page cache (-t none: O_DIRECT), as kura writes
	# its chunks: on this VM, page-cache pages not freed just before cost
	# about 3 ns per byte to fill (the host takes freed guest memory back).
	timeit "qemu-img-direct-$1" qemu-img convert -U -t none -f qcow2 -O raw "$IMG/kura.qcow2" "$W/copy.raw"
	rm -f "$W/copy.raw"
}

timeit vnb-full virtnbdbackup -d "$P-vnb" -l full -o "$W/vnb"
S[vnb-full]=$(size "$W/vnb")
ROUNDS=${KURA_BENCH_ROUNDS:-3}
for r in $(seq 1 "$ROUNDS"); do # incrementals: rounds too (see below)
	write32 "$P-vnb" $((0x60 + r))
	timeit "vnb-inc-$r" virtnbdbackup -d "$P-vnb" -l inc -o "$W/vnb"
done
timeit vnbc-full virtnbdbackup -d "$P-vnb" -l copy --compress -o "$W/vnbc"
S[vnbc-full]=$(size "$W/vnbc")

export KURA_PASSWORD=bench
kura_full() { # key binary vm [round]: a full backup into a fresh repository, timed with a round
	local k=$1 bin=$2 vm=$3 c
	export KURA_REPO="$W/$k-repo" KURA_CATALOG="$W/$k-catalog.db"
	rm -rf "$KURA_REPO" "$KURA_CATALOG"
	for c in $(v checkpoint-list "$vm" --name 2>/dev/null); do v checkpoint-delete "$vm" "$c" >/dev/null; done
	"$bin" repo init >/dev/null
	if [ -z "${4:-}" ]; then
		"$bin" backup --quiet --full "$vm" >/dev/null
		return
	fi
	timeit "$k-full-$4" "$bin" backup --quiet --full "$vm"
	S[$k-full]=$(size "$KURA_REPO")
}
# The full backups and the copy floor vary most from run to run: ROUNDS
# rounds of each, interleaved (kura, KURA_BASE, the copies), give the
# median and the range. Both builds back up the same VM (two VMs of the
# same shape differed by up to 0.6 s, the disk files lying apart on the
# storage under this machine).
kinds="kura"
[ -n "$BASE" ] && kinds="kura base"
for r in $(seq 1 "$ROUNDS"); do
	kura_full kura "$KURA" "$P-kura" "$r"
	[ -n "$BASE" ] && kura_full base "$BASE" "$P-kura" "$r"
	copies "$r"
done
median() { # key: T[key] and R[key] from T[key-1..ROUNDS]
	local ts
	ts=$(for r in $(seq 1 "$ROUNDS"); do echo "${T[$1-$r]}"; done | sort -n)
	T[$1]=$(sed -n "$(((ROUNDS + 1) / 2))p" <<<"$ts")
	R[$1]="$(head -1 <<<"$ts")–$(tail -1 <<<"$ts") s"
	M[$1]=${M[$1-1]}
}
for k in $kinds qemu-img qemu-img-sync qemu-img-direct vnb-inc; do
	[ "$k" = kura ] || [ "$k" = base ] && k=$k-full
	median "$k"
done
kura_inc() { # key binary vm round: an incremental after 32 MiB written
	local k=$1 bin=$2 vm=$3
	export KURA_REPO="$W/$k-repo" KURA_CATALOG="$W/$k-catalog.db"
	write32 "$vm" $((0x50 + $4))
	timeit "$k-inc-$4" "$bin" backup --quiet "$vm"
	PT[$k]=$(lastpoint "$bin" "$vm")
}
kura_restore() { # key binary vm round: restore as a new VM and export of the incremental point
	local k=$1 bin=$2 vm=$3
	export KURA_REPO="$W/$k-repo" KURA_CATALOG="$W/$k-catalog.db"
	timeit "$k-restore-$4" "$bin" restore "${PT[$k]}" --name "$vm-restored" --storage "$W/$k-restored" --on-conflict overwrite
	timeit "$k-export-$4" "$bin" export "${PT[$k]}" --out "$W/$k-export" --format qcow2
	rm -rf "$W/$k-restored" "$W/$k-export"
}
declare -A PT
kura_full kura "$KURA" "$P-kura" # untimed, the parent of the incrementals
[ -n "$BASE" ] && kura_full base "$BASE" "$P-base"
for r in $(seq 1 "$ROUNDS"); do
	kura_inc kura "$KURA" "$P-kura" "$r"
	[ -n "$BASE" ] && kura_inc base "$BASE" "$P-base" "$r"
done
# Incrementals, restores and exports move by ±0.4 s from run to run:
# rounds too.
for r in $(seq 1 "$ROUNDS"); do
	kura_restore kura "$KURA" "$P-kura" "$r"
	[ -n "$BASE" ] && kura_restore base "$BASE" "$P-base" "$r"
done
for k in $kinds; do
	median "$k-inc"
	median "$k-restore"
	median "$k-export"
done
export KURA_REPO="$W/kura-repo" KURA_CATALOG="$W/kura-catalog.db"

if [ -n "${KURA_BENCH_S3:-}" ]; then
	VGW="$(command -v versitygw || echo "$(go env GOPATH)/bin/versitygw")"
	mkdir -p "$W/s3/bench"
	S3PORT=$((20000 + RANDOM % 20000))
	"$VGW" --access benchaccess --secret benchsecret0123456789 --port "127.0.0.1:$S3PORT" posix "$W/s3" >"$W/versitygw.log" 2>&1 &
	VGWPID=$!
	until (exec 3<>"/dev/tcp/127.0.0.1/$S3PORT") 2>/dev/null; do sleep 0.2; done
	export AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=benchsecret0123456789
	S3REPO="s3:http://127.0.0.1:$S3PORT/bench/kura"
	KURA_REPO="$S3REPO" "$KURA" repo init >/dev/null
	timeit s3-full env KURA_REPO="$S3REPO" "$KURA" backup --quiet --full "$P-s3"
	S[s3-full]=$(size "$W/s3/bench")
	write32 "$P-s3" 0x3c
	timeit s3-inc env KURA_REPO="$S3REPO" "$KURA" backup --quiet "$P-s3"
	S3POINT=$(KURA_REPO="$S3REPO" lastpoint "$KURA" "$P-s3")
	timeit s3-restore env KURA_REPO="$S3REPO" "$KURA" restore "$S3POINT" --name "$P-s3-restored" --storage "$W/s3-restored" --on-conflict overwrite
	kill "$VGWPID"
	rm -rf "$W/s3" "$W/s3-restored"
fi

export RESTIC_PASSWORD=bench
restic init -q -r "$W/restic" >/dev/null
timeit restic-full restic -q -r "$W/restic" backup "$IMG/kura.qcow2"
S[restic-full]=$(size "$W/restic")
BORG_PASSPHRASE="" borg init -e none "$W/borg" >/dev/null 2>&1
timeit borg-full borg create --compression lz4 "$W/borg::a" "$IMG/kura.qcow2"
S[borg-full]=$(size "$W/borg")
rm -rf "$W/restic" "$W/borg"

timeit vnb-restore virtnbdrestore -i "$W/vnb" -o "$W/vnb-restored"
rm -rf "$W/vnb-restored"

"$KURA" backup --quiet "$P-fs" >/dev/null
FSPOINT=$(lastpoint "$KURA" "$P-fs")
timeit files-get "$KURA" --quiet files get "$FSPOINT" /big.bin --out "$W/extract"
[ "$(sha256sum <"$W/extract/big.bin")" = "$BIGSUM" ] || { echo "extracted big.bin differs" >&2; exit 1; }
rm -rf "$W/extract"

# kura benchmark writes its synthetic image (the same as content.raw) and
# ingests it from the page cache: the repository's pace, not this disk's
# reads (a cold read of the image first costs about 0.7 s more here).
sync
echo 3 >/proc/sys/vm/drop_caches
L[bench]=$(load1)
"$KURA" benchmark --dir "$W" --json >"$W/bench.json"

mb() { awk "BEGIN{printf \"%d\", $1 / 1000000}"; }
ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }
cell() { # key: "time s (load L)", or "median s (min–max s)"
	if [ -n "${R[$1]:-}" ]; then
		echo "${T[$1]} s (${R[$1]})"
	elif [ -n "${T[$1]:-}" ]; then
		echo "${T[$1]} s (${L[$1]})"
	fi
}
echo
echo "Times in seconds. Full backups, copies, incrementals, restores and exports: the median of $ROUNDS interleaved rounds, the range in"
echo "parentheses; other steps: one run, the load average (1 min) at its start in parentheses."
echo
echo "| tool | full backup | stored | incremental (32 MiB written) | full restore | export | peak RSS backup / restore |"
echo "|---|---|---|---|---|---|---|"
for k in kura base; do
	[ -n "${T[$k-full]:-}" ] || continue
	name=kura
	[ "$k" = base ] && name="kura (KURA_BASE)"
	echo "| $name | $(cell "$k-full") | $(mb "${S[$k-full]}") MB | $(cell "$k-inc") | $(cell "$k-restore") | $(cell "$k-export") | ${M[$k-full]} / ${M[$k-restore]} MB |"
done
[ -n "${T[s3-full]:-}" ] && echo "| kura to S3 (versitygw, loopback) | $(cell s3-full) | $(mb "${S[s3-full]}") MB | $(cell s3-inc) | $(cell s3-restore) | | ${M[s3-full]} / ${M[s3-restore]} MB |"
echo "| virtnbdbackup (no compression) | $(cell vnb-full) | $(mb "${S[vnb-full]}") MB | $(cell vnb-inc) | $(cell vnb-restore) (virtnbdrestore) | | ${M[vnb-full]} / ${M[vnb-restore]} MB |"
echo "| virtnbdbackup --compress (lz4) | $(cell vnbc-full) | $(mb "${S[vnbc-full]}") MB | | | | ${M[vnbc-full]} MB |"
echo "| restic (whole image file) | $(cell restic-full) | $(mb "${S[restic-full]}") MB | | | | ${M[restic-full]} MB |"
echo "| borg lz4 (whole image file) | $(cell borg-full) | $(mb "${S[borg-full]}") MB | | | | ${M[borg-full]} MB |"
echo "| qemu-img convert -U -O raw (copy only) | $(cell qemu-img) | | | | | ${M[qemu-img]} MB |"
echo "| qemu-img convert -U -O raw, then sync | $(cell qemu-img-sync) | | | | | |"
echo "| qemu-img convert -U -t none -O raw (O_DIRECT) | $(cell qemu-img-direct) | | | | | |"
echo
echo "| ratio (target) | kura |"
echo "|---|---|"
echo "| full backup / qemu-img convert (≤ 1.2) | $(ratio "${T[kura-full]}" "${T[qemu-img]}") |"
echo "| full backup / qemu-img convert then sync | $(ratio "${T[kura-full]}" "${T[qemu-img-sync]}") |"
echo "| full backup / qemu-img convert -t none | $(ratio "${T[kura-full]}" "${T[qemu-img-direct]}") |"
echo "| full backup / virtnbdbackup --compress (≤ 0.4) | $(ratio "${T[kura-full]}" "${T[vnbc-full]}") |"
echo "| stored / virtnbdbackup --compress (≤ 1) | $(ratio "${S[kura-full]}" "${S[vnbc-full]}") |"
echo "| incremental / virtnbdbackup's (≤ 0.4) | $(ratio "${T[kura-inc]}" "${T[vnb-inc]}") |"
echo "| full restore / virtnbdrestore (≤ 0.3) | $(ratio "${T[kura-restore]}" "${T[vnb-restore]}") |"
echo "| export / virtnbdrestore (≤ 0.3) | $(ratio "${T[kura-export]}" "${T[vnb-restore]}") |"
if [ -n "$BASE" ]; then
	echo "| full backup, this build / KURA_BASE | $(ratio "${T[kura-full]}" "${T[base-full]}") |"
	echo "| incremental, this build / KURA_BASE | $(ratio "${T[kura-inc]}" "${T[base-inc]}") |"
	echo "| restore, this build / KURA_BASE | $(ratio "${T[kura-restore]}" "${T[base-restore]}") |"
	echo "| export, this build / KURA_BASE | $(ratio "${T[kura-export]}" "${T[base-export]}") |"
fi
echo "| files get of a 1 GiB file (≥ 500 MB/s) | $(awk "BEGIN{printf \"%.0f\", 1073.741824 / ${T[files-get]}}") MB/s (${T[files-get]} s, load ${L[files-get]}) |"
python3 - "$W/bench.json" "${L[bench]}" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
aims = {"ingest (new data)": " (≥ 600 MB/s)", "ingest (all duplicates)": " (≥ 2000 MB/s)",
        "restore to a file": " (chunks read from disk)", "restore to a file, chunks cached": " (≥ 1000 MB/s)"}
for t in d["repository"]:
    aim = aims.get(t["name"], "")
    print(f"| kura benchmark {t['name']}{aim} | {t['mb_per_s']:.0f} MB/s ({t['seconds']:.2f} s, load {sys.argv[2]}) |")
print(f"| kura benchmark stored, peak RSS | {d['stored_bytes'] / 1e6:.0f} MB, {d['peak_rss_bytes'] / 1e6:.0f} MB |")
PY
cleanup_vms
# Keep the logs, drop the images and repositories.
rm -rf "$IMG" "$W"/*-repo "$W"/vnb "$W"/vnbc
