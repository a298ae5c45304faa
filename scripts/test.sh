#!/usr/bin/env bash
# make test: start a private PostgreSQL 15 and ClickHouse in a temp dir, a
# PostgreSQL 17 beside them, a PostgreSQL 15 primary+standby pair, and
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
  # eval "$(cmd)" would go on silently when cmd fails: say so instead.
  if pg17_env="$(scripts/services.sh pg17-up)"; then
    eval "$pg17_env"
    # The failover pair (primary + physical standby with slot sync) for the
    # failover tests, which run in the first pass.
    if pg17_pair_env="$(scripts/services.sh pg17-pair-up)"; then
      eval "$pg17_pair_env"
    else
      echo "test: scripts/services.sh pg17-pair-up failed (what is missing is said above): the PostgreSQL 17 failover tests skip" >&2
    fi
    echo "test: PostgreSQL 17 up in $((SECONDS - pg17_start))s" >&2
  else
    echo "test: scripts/services.sh pg17-up failed (what is missing is said above): the PostgreSQL 17 pass is skipped" >&2
  fi
else
  echo "test: no RELAY_SERVICES_DIR and no DATABASE_URL_PG17: the PostgreSQL 17 pass is skipped" >&2
fi
# The PostgreSQL 15 failover pair (scripts/services.sh pg15-pair-up: a
# primary and its synchronous physical standby, Debian's postgresql-15 like
# the server above; ~3 s) for TestFailoverOnPostgres15Backfills, which
# skips, saying so, when the pair's variables are not set.
if [[ -n "${DATABASE_URL_PG15_PRIMARY:-}" ]]; then
  echo "test: using the PostgreSQL 15 pair of DATABASE_URL_PG15_PRIMARY / _STANDBY from the environment" >&2
elif [[ -z "${RELAY_SERVICES_DIR:-}" ]]; then
  echo "test: no RELAY_SERVICES_DIR: TestFailoverOnPostgres15Backfills skips (no PostgreSQL 15 pair)" >&2
elif pg15_pair_env="$(scripts/services.sh pg15-pair-up)"; then
  eval "$pg15_pair_env"
else
  echo "test: scripts/services.sh pg15-pair-up failed (what is missing is said above): TestFailoverOnPostgres15Backfills skips" >&2
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

if django_env="$(scripts/services.sh django)"; then
  eval "$django_env"
else
  echo "test: Django could not be installed: TestDjangoModelMatchesOutboxEvent says what is missing and skips" >&2
fi

if chdb_env="$(scripts/services.sh chdb)"; then
  eval "$chdb_env"
  # The conformance suite's engine, named in the output (go test hides a
  # passing test's log); the suite itself runs with the rest below.
  go test -race -count=1 -run '^TestConformanceEngine$' -v ./internal/testenv/ | grep -E 'ClickHouse engine|FAIL' >&2 || true
else
  echo "test: chDB's libchdb.so could not be fetched (see above): the TestConformance… tests skip" >&2
fi

gofmt_out="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [[ -n "$gofmt_out" ]]; then
  echo "gofmt would change:" >&2; echo "$gofmt_out" >&2; exit 1
fi
go vet ./...
# Test artifacts (the status page's screenshots) are kept in test-artifacts/.
mkdir -p test-artifacts
go test -race -count=1 -timeout 40m -artifacts -outputdir "$PWD/test-artifacts" "$@" ./...

# The PostgreSQL 17 pass: the core of the integration suite once more with
# DATABASE_URL on PostgreSQL 17 (the spine, exactly-once failpoints, kill
# storms, faults, schema evolution, message mode, the failover slot flag);
# ~5 minutes on 2 cores. Left to the first pass, because the PostgreSQL
# version adds nothing to them: the ClickHouse cluster variants (the
# cluster's variables are unset here), TLS, API, admin, dead-letter CLI,
# status and status page, benchmarks, the ClickHouse-only packages, and the
# failover pair's tests (PostgreSQL 17 by themselves). A command line of
# your own ("$@") skips this pass.
PG17_CORE='^(TestDelivers|TestSIGTERM|TestIdleOutbox|TestKeepalives|TestRolledBack|TestEveryColumn|TestMissingPublication|TestExactlyOnce(Failpoints|KillStorm)|TestKill9UnderLoad|TestFaultKill9TwentyTimes|TestMessageModeKill9|TestFault(Blackhole|ClickHouse|Postgres|Walsender|Publication|Slot|Backfill|Outbox|Failpoints|SIGTERM|TwoRelays|Huge|DeadLetter|SinkSchema)|TestBackfillDecodesLikeTheStream|TestEvolution(Live|AddColumn|Refusals|Mode|RoundTrip|Publisher)|TestMessage|TestAPIMessageMode|TestFailoverSlotFlag|TestLog$)'
if [[ -n "${DATABASE_URL_PG17:-}" && $# -eq 0 ]]; then
  echo "test: PostgreSQL 17 pass: the core suite with DATABASE_URL=$DATABASE_URL_PG17" >&2
  env -u CLICKHOUSE_CLUSTER_NAME -u CLICKHOUSE_CLUSTER_URLS DATABASE_URL="$DATABASE_URL_PG17" go test -race -count=1 -timeout 30m -run "$PG17_CORE" \
    ./test/integration/ ./internal/replication/ ./internal/batchlog/
fi
