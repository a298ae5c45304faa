#!/usr/bin/env bash
# make run: private PostgreSQL + ClickHouse (kept in .services between runs),
# migrate, the demo API, the relay and a demo producer. Ctrl-C stops all but
# the databases (scripts/services.sh down stops those).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-bin/relay}"

eval "$(scripts/services.sh up)"
export RELAY_ADMIN_ADDR="${RELAY_ADMIN_ADDR:-127.0.0.1:9090}"
export API_ADDR="${API_ADDR:-127.0.0.1:8080}"
export LOG_FORMAT="${LOG_FORMAT:-console}"
export CH_OUTBOX_PROCESSING_FREQUENCY_SEC="${CH_OUTBOX_PROCESSING_FREQUENCY_SEC:-1}"

"$bin" migrate

pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped. The databases keep running: scripts/services.sh down" >&2
}
trap cleanup EXIT INT TERM

"$bin" run & pids+=($!)
"$bin" api & pids+=($!)

# Wait for the API, then send demo traffic: one user a second through the
# API (user + user_created event in one transaction) and a plain SQL insert.
for _ in $(seq 1 50); do curl -fsS "http://$API_ADDR/healthz" >/dev/null 2>&1 && break; sleep 0.2; done

cat >&2 <<TXT

==> Events are flowing. Look at them in ClickHouse:
    scripts/services.sh ch -q "SELECT event_type, event_date_time, event_context FROM event_log FINAL ORDER BY event_date_time DESC LIMIT 10"
    Status page:       http://$RELAY_ADMIN_ADDR/
    Slot and backlog:  $bin status      Metrics: http://$RELAY_ADMIN_ADDR/metrics
    Create a user:     curl -XPOST http://$API_ADDR/users -d '{"email":"ada@example.com","first_name":"Ada","last_name":"Lovelace"}'
    Ctrl-C stops the relay, the API and the demo producer.

TXT

(
  i=0
  while sleep 1; do
    i=$((i + 1))
    curl -fsS -o /dev/null -XPOST "http://$API_ADDR/users" -H 'Content-Type: application/json' \
      -d "{\"email\":\"demo$i.$RANDOM@example.com\",\"first_name\":\"Demo\",\"last_name\":\"User $i\"}" || true
    scripts/services.sh psql -qc "INSERT INTO outbox_event (event_type, environment, event_context) VALUES ('demo_tick', 'local', jsonb_build_object('i', $i))" >/dev/null || true
  done
) & pids+=($!)

wait "${pids[0]}"
