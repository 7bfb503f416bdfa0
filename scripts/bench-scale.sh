#!/usr/bin/env bash
# Bounds at scale (docs/benchmarks.md), in one run on this machine:
#  1. peak memory of kura backup, restore and export of a running TCG guest
#     whose disk is a 100 GiB sparse qcow2 holding 4 GiB of data (1 GiB
#     at 0, 30, 60 and 99 GiB; half random, half text);
#  2. gc and verify of a repository of KURA_SCALE_CHUNKS (default one
#     million) 64 KiB chunks while writers commit (TestScaleMillionChunks);
#  3. listing points, catalog rebuild and a backup's parent lookup in a
#     repository of 800 VMs x 100 points (TestScalePoints).
# Peak memory is the process's maximum RSS (GNU time); the load average
# (1 min) at the start of each step is printed beside it.
#
# Usage (as root): scripts/bench-scale.sh [WORKDIR]   (default /var/tmp/kura-scale)
# KURA_SCALE_SKIP="memory chunks points" skips parts.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
W=${1:-/var/tmp/kura-scale}
P=${KURA_BENCH_PREFIX:-kura-scale}
SKIP=${KURA_SCALE_SKIP:-}
IMG=/var/lib/libvirt/images/$P
URI=qemu:///system
v() { virsh -q -c "$URI" "$@"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
skip() { case " $SKIP " in *" $1 "*) return 0 ;; esac; return 1; }

bash scripts/host-setup.sh
go build -o bin/kura ./cmd/kura
KURA="$PWD/bin/kura"
mkdir -p "$W"

if ! skip memory; then
	GUEST=${KURA_GUEST_CACHE:-/var/tmp/kura-guest}
	bash scripts/build-guest.sh "$GUEST" >/dev/null
	for d in "$P" "$P-restored"; do
		v destroy "$d" >/dev/null 2>&1 || true
		v undefine "$d" --checkpoints-metadata >/dev/null 2>&1 || true
	done
	rm -rf "$IMG" "$W/mem"
	mkdir -p "$IMG" "$W/mem"
	cp "$GUEST/vmlinuz" "$GUEST/initrd.img" "$IMG/"
	echo "== 100 GiB sparse disk holding 4 GiB"
	"$KURA" benchmark --write-image "$W/mem/content.raw" --size 4GiB
	truncate -s 100G "$W/mem/disk.raw"
	i=0
	for at in 0 30 60 99; do
		dd if="$W/mem/content.raw" of="$W/mem/disk.raw" bs=4M skip=$((i * 256)) count=256 seek=$((at * 256)) conv=notrunc,sparse status=none
		i=$((i + 1))
	done
	rm -f "$W/mem/content.raw"
	qemu-img convert -q -f raw -O qcow2 "$W/mem/disk.raw" "$IMG/disk.qcow2"
	rm -f "$W/mem/disk.raw"
	chown -R libvirt-qemu:kvm "$IMG" 2>/dev/null || true
	. scripts/bench-guest.sh
	bench_define "$P" "$IMG/disk.qcow2" "$W/mem"
	v start "$P" >/dev/null
	sleep 15
	export KURA_PASSWORD=bench KURA_REPO="$W/mem/repo" KURA_CATALOG="$W/mem/catalog.db"
	"$KURA" repo init >/dev/null
	step() { # name command...
		local n=$1 l t0 t1
		shift
		sync
		echo 3 >/proc/sys/vm/drop_caches
		l=$(load1)
		t0=$(date +%s.%N)
		/usr/bin/time -f %M -o "$W/mem/$n.rss" "$@" >"$W/mem/$n.log" 2>&1 || { echo "FAILED: $n"; tail -5 "$W/mem/$n.log"; exit 1; }
		t1=$(date +%s.%N)
		printf '| %s | %s s | %d MB | %s |\n' "$n" "$(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")" "$(($(cat "$W/mem/$n.rss") / 1000))" "$l"
	}
	echo "| step (100 GiB disk, 4 GiB data) | time | peak RSS | load |"
	echo "|---|---|---|---|"
	step backup "$KURA" backup --quiet --full "$P"
	PT=$("$KURA" points list --vm "$P" --json | sed -n 's/^    "id": "\(.*\)",/\1/p' | tail -1)
	step restore "$KURA" restore "$PT" --name "$P-restored" --storage "$W/mem/restored" --on-conflict overwrite
	rm -rf "$W/mem/restored"
	step "export (raw)" "$KURA" export "$PT" --out "$W/mem/export" --format raw
	rm -rf "$W/mem/export"
	step "verify --read-data" "$KURA" verify --read-data
	for d in "$P" "$P-restored"; do
		v destroy "$d" >/dev/null 2>&1 || true
		v undefine "$d" --checkpoints-metadata >/dev/null 2>&1 || true
	done
	rm -rf "$IMG" "$W/mem/repo"
fi

if ! skip chunks; then
	echo "== gc and verify, ${KURA_SCALE_CHUNKS:-1000000} chunks (load $(load1))"
	rm -rf "$W/chunks"
	KURA_SCALE_CHUNKS=${KURA_SCALE_CHUNKS:-1000000} KURA_SCALE_DIR="$W/chunks" \
		go test -count=1 -timeout 90m -run TestScaleMillionChunks -v ./internal/repo/ | grep 'scale_test.go'
	rm -rf "$W/chunks"
fi

if ! skip points; then
	echo "== 800 VMs x 100 points (load $(load1))"
	KURA_SCALE_VMS=800 KURA_SCALE_POINTS=100 KURA_SCALE_DIR="$W" \
		go test -count=1 -timeout 60m -run TestScalePoints -v ./internal/engine/ | grep 'scale_test.go'
fi
