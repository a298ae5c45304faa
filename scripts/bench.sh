#!/usr/bin/env bash
# make bench: start a private PostgreSQL 15 and ClickHouse in a temp dir, run
# the benchmark driver (bench/cmd/relaybench) against bin/relay, stop them.
#
#   BENCH_QUICK=1   short mode (smaller data sets, fewer runs; a few minutes)
#   BENCH_OUT=path  JSON report (default bench/results.json)
#   BENCH_PROFILE=1 also write relay CPU profiles to bench/profiles/ (runs
#                   bench/cmd/relayprof, bin/relay with runtime/pprof)
#   BENCH_ARGS=...  extra relaybench flags (e.g. "-scenarios drain -runs 1")
#   BENCH_CLUSTER=0 do not start the ClickHouse cluster (the topologies
#                   scenario, single server vs replicated, is then skipped)
set -euo pipefail
cd "$(dirname "$0")/.."

go build -o bin/relaybench ./bench/cmd/relaybench
[[ -x bin/relay ]] || go build -o bin/relay ./cmd/relay

args=(-relay bin/relay -out "${BENCH_OUT:-bench/results.json}")
if [[ -n ${BENCH_QUICK:-} && ${BENCH_QUICK} != 0 ]]; then
  args+=(-quick)
fi
if [[ -n ${BENCH_PROFILE:-} && ${BENCH_PROFILE} != 0 ]]; then
  go build -o bin/relayprof ./bench/cmd/relayprof
  mkdir -p bench/profiles
  args=(-relay bin/relayprof -cpuprofile-dir bench/profiles "${args[@]:2}")
fi

RELAY_SERVICES_DIR="$(mktemp -d /tmp/relay-bench.XXXXXX)"
export RELAY_SERVICES_DIR
trap 'scripts/services.sh down --purge >/dev/null 2>&1 || true' EXIT
eval "$(scripts/services.sh up)"
if [[ ${BENCH_CLUSTER:-1} != 0 ]]; then
  eval "$(scripts/services.sh cluster-up)"
fi

# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
bin/relaybench "${args[@]}" ${BENCH_ARGS:-}
