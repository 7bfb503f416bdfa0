#!/usr/bin/env bash
# The main job end to end on the embedded default (local repository +
# SQLite catalog), on a fresh Debian 12 machine, as root. Safe to run again.
#
#  1. installs QEMU/libvirt and starts libvirtd (scripts/host-setup.sh)
#  2. builds kura into ./bin/kura
#  3. creates and starts a small demo VM "kura-demo" (TCG, busybox + guest agent)
#  4. creates a repository in /var/lib/kura/demo-repo (passphrase in
#     /var/lib/kura/demo-password) unless it exists
#  5. backs the VM up (quiesced through the guest agent), changes files in it,
#     backs it up again (incremental), lists the points and verifies the data
#  6. lists and extracts files of the latest point straight from the
#     repository, restores it as a new VM "kura-demo-restored", starts it and
#     compares a file inside it with the original
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

step() { printf '\n== %s\n' "$*"; }

step "host setup"
bash scripts/host-setup.sh

step "build kura"
go build -o bin/kura ./cmd/kura
KURA="$PWD/bin/kura"

step "demo VM"
VM=$(bash scripts/demo-guest.sh | tail -n1)
echo "VM: $VM"

export KURA_REPO=/var/lib/kura/demo-repo
export KURA_PASSWORD_FILE=/var/lib/kura/demo-password
export KURA_CATALOG=/var/lib/kura/demo-catalog.db
mkdir -p /var/lib/kura
if [ ! -s "$KURA_PASSWORD_FILE" ]; then
	(umask 077 && head -c 24 /dev/urandom | base64 >"$KURA_PASSWORD_FILE")
fi
if [ ! -e "$KURA_REPO/config" ]; then
	step "create repository"
	"$KURA" repo init
fi

agent() { virsh -q -c qemu:///system qemu-agent-command "$1" "$2" 2>/dev/null; }
guest_sh() { # VM CMD: run a shell command in the guest through the agent, print its output
	local pid out
	out=$(agent "$1" "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/sh\",\"arg\":[\"-c\",\"$2\"],\"capture-output\":true}}")
	pid=$(echo "$out" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
	for _ in $(seq 1 150); do
		out=$(agent "$1" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}")
		case "$out" in *'"exited":true'*)
			echo "$out" | sed -n 's/.*"out-data":"\([^"]*\)".*/\1/p' | base64 -d
			return 0 ;;
		esac
		sleep 0.2
	done
	echo "guest command did not finish: $2" >&2
	return 1
}
wait_agent() {
	for i in $(seq 1 120); do
		agent "$1" '{"execute":"guest-ping"}' >/dev/null && return 0
		sleep 1
	done
	echo "the guest agent of $1 did not answer" >&2
	return 1
}

step "wait for the guest agent"
wait_agent "$VM"

step "backup 1"
"$KURA" backup "$VM"

step "change files inside the guest"
guest_sh "$VM" "date > /mnt/data/changed-at.txt; dd if=/dev/urandom of=/mnt/data/random-\$(date +%s).bin bs=1M count=4 2>/dev/null; sync"

step "backup 2 (incremental)"
"$KURA" backup "$VM"

step "recovery points"
"$KURA" points list --vm "$VM"

step "verify"
"$KURA" verify --read-data

step "repository"
"$KURA" repo info

POINT=$("$KURA" points list --vm "$VM" --json | sed -n 's/^    "id": "\(.*\)",/\1/p' | tail -n1)

step "files of point $POINT, read straight from the repository"
"$KURA" files ls "$POINT" /
rm -rf /var/lib/kura/demo-extract
"$KURA" files get "$POINT" /docs /changed-at.txt --out /var/lib/kura/demo-extract
ls -l /var/lib/kura/demo-extract

step "restore point $POINT as a new VM, kura-demo-restored"
"$KURA" restore "$POINT" --name kura-demo-restored --storage /var/lib/libvirt/images/kura-demo-restored \
	--on-conflict overwrite --start
wait_agent kura-demo-restored
want=$(guest_sh "$VM" "sha256sum /mnt/data/changed-at.txt" | cut -d' ' -f1)
got=$(guest_sh kura-demo-restored "sha256sum /mnt/data/changed-at.txt" | cut -d' ' -f1)
echo "changed-at.txt: original $want, restored VM $got"
[ -n "$want" ] && [ "$want" = "$got" ] || { echo "restored file differs" >&2; exit 1; }
virsh -q -c qemu:///system destroy kura-demo-restored >/dev/null
echo
echo "demo complete: the VM was backed up twice (full, then incremental), verified, browsed and restored."
