#!/usr/bin/env bash
# Runs kura's whole test suite on a fresh Debian 12 machine, as root:
# installs what the tests need (Debian packages, staticcheck), starts
# libvirtd, checks formatting and lint, then runs every test for real
# (KURA_TEST_STRICT=1: tests that need libvirt, QEMU or mkfs tools fail
# instead of skipping when those are missing).
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/go/bin"
PATH="$PATH:$(go env GOPATH)/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

echo "== host setup"
bash scripts/host-setup.sh

echo "== lint"
unformatted=$(gofmt -l cmd internal)
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
if ! command -v staticcheck >/dev/null; then
	GOFLAGS= go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
staticcheck ./...

echo "== test components"
# versitygw: the real S3 server the storage, repository and CLI tests run
# against (pinned; built once, ~3.5 min on 2 cores, then reused).
VERSITYGW=github.com/versity/versitygw
VERSITYGW_VERSION=v1.8.0
vgw="$(go env GOPATH)/bin/versitygw"
if ! { [ -x "$vgw" ] && go version -m "$vgw" | grep -Eq "^[[:space:]]+mod[[:space:]]+$VERSITYGW[[:space:]]+$VERSITYGW_VERSION"; }; then
	GOFLAGS= go install "$VERSITYGW/cmd/versitygw@$VERSITYGW_VERSION"
fi

echo "== tests"
export KURA_TEST_STRICT=1
# -p 2: two packages at a time on this 2-core machine; guests are TCG.
go test -p 2 -timeout 45m -count=1 ./...

echo "== race detector on the concurrent core"
go test -race -short -count=1 ./internal/repo ./internal/engine ./internal/nbd ./internal/lock \
	./internal/progress ./internal/catalog ./internal/storage/... ./internal/service ./internal/server \
	./internal/notify/... ./internal/schedule ./internal/throttle ./internal/auth ./internal/extract
