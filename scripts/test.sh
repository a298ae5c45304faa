#!/usr/bin/env bash
# make test: start a private PostgreSQL 15 and ClickHouse in a temp dir, run
# every test against them with the race detector, stop them again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${DATABASE_URL:-}" && -n "${CLICKHOUSE_URL:-}" ]]; then
  echo "test: using DATABASE_URL / CLICKHOUSE_URL from the environment" >&2
else
  RELAY_SERVICES_DIR="$(mktemp -d /tmp/relay-test.XXXXXX)"
  export RELAY_SERVICES_DIR
  trap 'scripts/services.sh down --purge >/dev/null 2>&1 || true' EXIT
  eval "$(scripts/services.sh up)"
fi

gofmt_out="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [[ -n "$gofmt_out" ]]; then
  echo "gofmt would change:" >&2; echo "$gofmt_out" >&2; exit 1
fi
go vet ./...
go test -race -count=1 -timeout 40m "$@" ./...
