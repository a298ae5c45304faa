#!/usr/bin/env bash
# make test: start a private PostgreSQL 15 and ClickHouse in a temp dir, a
# PostgreSQL 17 beside them, and
# the ClickHouse cluster (ZooKeeper + 2 shards x 2 replicas) that the
# replicated and sharded topology tests share, run every test against them
# with the race detector, stop them again.
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
# PostgreSQL 17 beside 15 (scripts/services.sh pg17-up: Debian 13's
# postgresql-17 from a trixie folder made once, cached outside the work
# tree); the core suite runs on it too. RELAY_TEST_PG17=off skips it.
if [[ "${RELAY_TEST_PG17:-on}" == off ]]; then
  echo "test: RELAY_TEST_PG17=off: the PostgreSQL 17 pass is skipped" >&2
  unset DATABASE_URL_PG17
elif [[ -n "${DATABASE_URL_PG17:-}" ]]; then
  echo "test: using the PostgreSQL 17 of DATABASE_URL_PG17 from the environment" >&2
elif [[ -n "${RELAY_SERVICES_DIR:-}" ]]; then
  pg17_start=$SECONDS
  eval "$(scripts/services.sh pg17-up)"
  echo "test: PostgreSQL 17 up in $((SECONDS - pg17_start))s" >&2
else
  echo "test: no RELAY_SERVICES_DIR and no DATABASE_URL_PG17: the PostgreSQL 17 pass is skipped" >&2
fi
if [[ -n "${CLICKHOUSE_CLUSTER_URLS:-}" ]]; then
  echo "test: using the cluster of CLICKHOUSE_CLUSTER_URLS from the environment" >&2
elif [[ -n "${RELAY_SERVICES_DIR:-}" ]]; then
  eval "$(scripts/services.sh cluster-up)"
else
  echo "test: no RELAY_SERVICES_DIR: the cluster tests are skipped" >&2
fi

if browser_env="$(scripts/services.sh browser)"; then
  eval "$browser_env"
else
  echo "test: chromium could not be installed: TestStatusPageInBrowser says what is missing and skips" >&2
fi

gofmt_out="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [[ -n "$gofmt_out" ]]; then
  echo "gofmt would change:" >&2; echo "$gofmt_out" >&2; exit 1
fi
go vet ./...
# Test artifacts (the status page's screenshots) are kept in test-artifacts/.
mkdir -p test-artifacts
go test -race -count=1 -timeout 40m -artifacts -outputdir "$PWD/test-artifacts" "$@" ./...
