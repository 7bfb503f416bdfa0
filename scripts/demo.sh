#!/usr/bin/env bash
# The main job end to end on the embedded default (local repository +
# SQLite catalog), through kura server, on a fresh Debian 12 machine, as
# root. Safe to run again.
#
#  1. installs QEMU/libvirt and starts libvirtd (scripts/host-setup.sh)
#  2. builds kura into ./bin/kura
#  3. creates and starts a small demo VM "kura-demo" (TCG, busybox + guest agent)
#  4. creates a repository in /var/lib/kura/demo-repo (passphrase in
#     /var/lib/kura/demo-password) unless it exists
#  5. writes a server configuration with a protection group "demo" selecting
#     the VM (daily backups, weekly verification, retention), an admin user,
#     and starts `kura server` on https://127.0.0.1:18443
#  6. through the server's API: backs the group up now (quiesced through the
#     guest agent), changes files in the VM, backs it up again (incremental),
#     verifies the data, lists the points, browses and downloads a file of
#     the latest point straight from the repository, restores it as a new VM
#     "kura-demo-restored", starts it and compares a file inside it with the
#     original; then stops the server
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

step "kura server"
DEMO=/var/lib/kura/demo-server
PORT="${KURA_DEMO_PORT:-18443}"
CONF="$DEMO/kura.yaml"
mkdir -p "$DEMO" /var/lib/libvirt/images/kura-demo-restored
cat >"$CONF.new" <<YAML
server:
  listen: 127.0.0.1:$PORT
  state_dir: $DEMO/state
repositories:
  - {name: demo, location: $KURA_REPO, password_file: $KURA_PASSWORD_FILE}
connections:
  - {name: local, uri: "qemu:///system"}
groups:
  - name: demo
    selectors: ["name:$VM"]
    consistency: auto
    retries: 1
    rpo: 26h
    schedules:
      - {kind: backup, cron: "0 1 * * *"}
      - {kind: verify, every: 168h, read_data: true, outdated_after: 720h}
      - {kind: prune, cron: "@daily"}
    retention: {last: 7, daily: 14, weekly: 8}
    restore:
      storage: [/var/lib/libvirt/images]
users: []
YAML
chmod 600 "$CONF.new"
mv "$CONF.new" "$CONF"
ADMIN_PW="$DEMO/admin-password"
if [ ! -s "$ADMIN_PW" ]; then
	(umask 077 && head -c 18 /dev/urandom | base64 >"$ADMIN_PW")
fi
"$KURA" server passwd admin --config "$CONF" --new-password-file "$ADMIN_PW" >/dev/null
"$KURA" server check --config "$CONF"
"$KURA" server --config "$CONF" >"$DEMO/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
URL="https://127.0.0.1:$PORT/api/v1"
CA="$DEMO/state/tls/server.crt"
for _ in $(seq 1 100); do
	[ -s "$CA" ] && curl -s --cacert "$CA" -o /dev/null "$URL/openapi.json" && break
	kill -0 $SERVER 2>/dev/null || { cat "$DEMO/server.log" >&2; exit 1; }
	sleep 0.2
done
echo "server up: https://127.0.0.1:$PORT (log: $DEMO/server.log)"

# Sign in, then make an API token for the rest of the demo.
JAR=$(mktemp)
CSRF=$(jq -n --arg p "$(cat "$ADMIN_PW")" '{user: "admin", password: $p}' |
	curl -sS --fail-with-body --cacert "$CA" -c "$JAR" -H 'Content-Type: application/json' -d @- "$URL/login" | jq -r .csrf)
TOKEN=$(curl -sS --fail-with-body --cacert "$CA" -b "$JAR" -H "X-Kura-CSRF: $CSRF" -H 'Content-Type: application/json' \
	-d '{"name": "demo", "role": "admin"}' "$URL/tokens" | jq -r .secret)
rm -f "$JAR"
api() { # METHOD PATH [JSON]: call the API, print the answer
	curl -sS --fail-with-body --cacert "$CA" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
		-X "$1" ${3:+-d "$3"} "$URL$2"
}
job() { # PATH JSON: start a job, follow it to its end, fail unless it completed
	local id state
	id=$(api POST "$1" "$2" | jq -r .id)
	for _ in $(seq 1 1800); do
		state=$(api GET "/jobs/$id" | jq -r .state)
		case "$state" in Completed | PartiallyFailed | Failed | Cancelled) break ;; esac
		sleep 0.5
	done
	api GET "/jobs/$id" | jq -c '{job: .id, kind, state, vms: [.vms[]? | {vm: .vm_name, state, point: .point_id, error}]}'
	[ "$state" = Completed ] || { echo "job $id ended $state; log:" >&2; api GET "/jobs/$id/log" | jq -r '.[].msg' >&2; exit 1; }
}

step "backup 1 (group demo, run now through the API)"
job /groups/demo/run '{"kind": "backup"}'

step "change files inside the guest"
guest_sh "$VM" "date > /mnt/data/changed-at.txt; dd if=/dev/urandom of=/mnt/data/random-\$(date +%s).bin bs=1M count=4 2>/dev/null; sync"

step "backup 2 (incremental)"
job /groups/demo/run '{"kind": "backup"}'

step "verify (re-hash the data)"
job /groups/demo/run '{"kind": "verify", "read_data": true}'

step "protection status and recovery points"
api GET /vms | jq -r '.[] | select(.name == "'"$VM"'") | "\(.name): \(.status), \(.points) points, newest good \(.newest_good_point)"'
api GET "/points?vm=$VM" | jq -r '.[] | "\(.ID)  \(.Kind)  \(.Consistency)  \(.BytesStored) bytes stored"'
POINT=$(api GET "/points?vm=$VM" | jq -r 'last | .ID')

step "files of point $POINT, read straight from the repository"
api GET "/points/$POINT/files?path=/" | jq -r '.items[] | "\(.type)\t\(.size)\t\(.name)"'
api GET "/points/$POINT/files/content?path=/changed-at.txt" >"$DEMO/changed-at.txt"
echo "downloaded changed-at.txt: $(cat "$DEMO/changed-at.txt")"

step "restore point $POINT as a new VM, kura-demo-restored"
job "/points/$POINT/restore" '{"name": "kura-demo-restored", "storage": "/var/lib/libvirt/images/kura-demo-restored", "on_conflict": "overwrite", "start": true}'
wait_agent kura-demo-restored
want=$(guest_sh "$VM" "sha256sum /mnt/data/changed-at.txt" | cut -d' ' -f1)
got=$(guest_sh kura-demo-restored "sha256sum /mnt/data/changed-at.txt" | cut -d' ' -f1)
echo "changed-at.txt: original $want, restored VM $got"
[ -n "$want" ] && [ "$want" = "$got" ] || { echo "restored file differs" >&2; exit 1; }
virsh -q -c qemu:///system destroy kura-demo-restored >/dev/null
echo
echo "demo complete: through kura server the VM was backed up twice (full, then incremental), verified, browsed and restored."
