// Package bench measures the relay against its baselines on real servers
// (the private PostgreSQL and ClickHouse of scripts/services.sh):
//
//   - drain: a backlog preloaded behind an existing slot, relayed by
//     bin/relay run, timed until every event is in ClickHouse and the outbox
//     table is empty;
//   - baselines on the same data: a bare pgoutput decode loop (the ceiling
//     of the stream), the raw ClickHouse batch-insert rate, and a polling
//     relay (SELECT … FOR UPDATE SKIP LOCKED, INSERT, DELETE, COMMIT);
//   - steady state: end-to-end latency (visible in ClickHouse − commit) at a
//     fixed producer rate, relay vs polling;
//   - resources: CPU seconds per million events of the relay (or baseline),
//     PostgreSQL and ClickHouse, and the relay's peak RSS;
//   - streams: one relay carrying three outbox tables (one routed into a
//     table per event type, RELAY_CONFIG) against the one default stream,
//     on the same events.
//
// Every scenario run gets fresh databases (Env). The relay, the bare decoder
// and the poller each run as a child process so that their CPU time and peak
// RSS are measured the same way (wait4 rusage and /proc).
//
// Nothing here is a timed test: bench/cmd/relaybench drives it (make bench).
package bench
