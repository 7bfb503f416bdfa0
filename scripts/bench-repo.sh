#!/usr/bin/env bash
# Repository ingest benchmark, side by side in one run (docs/benchmarks.md):
# a 1 GiB image (half random, half text) ingested into a fresh kura
# repository, ingested again (all duplicates) and read back, next to restic
# and borg on the same file. Needs restic and borgbackup (Debian packages).
#
# Usage: scripts/bench-repo.sh [WORKDIR]   (default /var/tmp/kura-bench-repo)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
W=${1:-/var/tmp/kura-bench-repo}
rm -rf "$W"
mkdir -p "$W"
go build -o bin/kura ./cmd/kura
KURA="$PWD/bin/kura"
IMG="$W/image.raw"
"$KURA" benchmark --write-image "$IMG" --size 1GiB

now() { date +%s.%N; }
secs() { awk "BEGIN{printf \"%.2f\", $2 - $1}"; }
mbs() { awk "BEGIN{printf \"%.0f\", 1073741824 / ($2 - $1) / 1e6}"; }
row() { printf '| %s | %s s | %s MB/s | %s |\n' "$1" "$(secs "$2" "$3")" "$(mbs "$2" "$3")" "${4:+$4 MB}"; }
size() { du -sb "$1" | awk '{printf "%.0f", $1 / 1e6}'; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; cat "$IMG" >/dev/null; }

echo "| tool | time | rate | stored |"
echo "|---|---|---|---|"
export KURA_PASSWORD=bench
drop
"$KURA" benchmark --image "$IMG" --dir "$W" --json >"$W/kura.json"
python3 - "$W/kura.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
stored = d["stored_bytes"] / 1e6
for t in d["repository"]:
    print(f"| kura {t['name']} | {t['seconds']:.2f} s | {t['mb_per_s']:.0f} MB/s | {stored:.0f} MB |")
print(f"| kura peak RSS | | | {d['peak_rss_bytes'] / 1e6:.0f} MB |")
PY

export RESTIC_PASSWORD=bench
restic init -q -r "$W/restic" >/dev/null
drop
t0=$(now); restic -q -r "$W/restic" backup "$IMG" >/dev/null; t1=$(now)
row "restic backup (new)" "$t0" "$t1" "$(size "$W/restic")"
t0=$(now); restic -q -r "$W/restic" backup --force "$IMG" >/dev/null; t1=$(now)
row "restic backup (duplicate, --force)" "$t0" "$t1" "$(size "$W/restic")"
t0=$(now); restic -q -r "$W/restic" restore latest --target "$W/restic-out" >/dev/null; t1=$(now)
row "restic restore" "$t0" "$t1" ""
rm -rf "$W/restic-out"

export BORG_PASSPHRASE=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
borg init -e repokey "$W/borg" >/dev/null 2>&1
drop
t0=$(now); borg create --compression lz4 "$W/borg::a" "$IMG"; t1=$(now)
row "borg create lz4 (new)" "$t0" "$t1" "$(size "$W/borg")"
t0=$(now); borg create --compression lz4 "$W/borg::b" "$IMG"; t1=$(now)
row "borg create lz4 (duplicate)" "$t0" "$t1" "$(size "$W/borg")"
t0=$(now); (cd "$W" && mkdir -p borg-out && cd borg-out && borg extract "$W/borg::a"); t1=$(now)
row "borg extract" "$t0" "$t1" ""
rm -rf "$W"
