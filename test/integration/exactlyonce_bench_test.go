package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"

	"github.com/outbox-relay/relay/internal/ack"
	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/batchlog"
	"github.com/outbox-relay/relay/internal/cleanup"
	"github.com/outbox-relay/relay/internal/deadletter"
	"github.com/outbox-relay/relay/internal/metrics"
	"github.com/outbox-relay/relay/internal/relay"
	"github.com/outbox-relay/relay/internal/replication"
	"github.com/outbox-relay/relay/internal/retry"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/testenv"
)

// BenchmarkDrainBatchRecords measures what the batch records (a pending
// UPSERT before each INSERT, the done mark in the delete's transaction)
// cost a backlog drain on the single server: each iteration drains the
// same backlog (RELAY_BENCH_EVENTS, default 200,000, in transactions of
// 100) once without records and once with, in alternating order, in the
// relay wired in-process as `relay run` wires it (batches of 10,000).
//
//	go test -run '^$' -bench DrainBatchRecords -benchtime 4x ./test/integration/
func BenchmarkDrainBatchRecords(b *testing.B) {
	testenv.Skip(b)
	n := 200_000
	if v := os.Getenv("RELAY_BENCH_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 100 {
			b.Fatalf("RELAY_BENCH_EVENTS=%q: want a number of at least 100", v)
		}
	}
	var with, without, pending time.Duration
	for i := 0; i < b.N; i++ {
		order := []bool{i%2 == 0, i%2 != 0}
		for _, records := range order {
			d, p := drainInProcess(b, records, n)
			if records {
				with += d
				pending += p
			} else {
				without += d
			}
		}
	}
	// The direct measure, immune to the machine's noise: the time the
	// drain spent waiting for the pending UPSERTs (the done mark rides in
	// the delete's round trip, which overlaps the next write).
	b.ReportMetric(100*pending.Seconds()/with.Seconds(), "%-in-pending")
	rateWith := float64(n*b.N) / with.Seconds()
	rateWithout := float64(n*b.N) / without.Seconds()
	b.ReportMetric(rateWith, "ev/s-records")
	b.ReportMetric(rateWithout, "ev/s-none")
	b.ReportMetric(100*(rateWithout-rateWith)/rateWithout, "%-cost")
}

// timedLog times the pending UPSERTs.
type timedLog struct {
	*batchlog.Log
	took    time.Duration
	batches int
}

func (l *timedLog) Pending(ctx context.Context, rec batchlog.Record) error {
	start := time.Now()
	err := l.Log.Pending(ctx, rec)
	l.took += time.Since(start)
	l.batches++
	return err
}

// drainInProcess drains a backlog of n events with the relay in-process
// and returns how long it took from start until the outbox was empty, and
// how much of it the pending UPSERTs took.
func drainInProcess(b *testing.B, records bool, n int) (time.Duration, time.Duration) {
	b.StopTimer()
	defer b.StartTimer()
	e := testenv.New(b)
	ctx := context.Background()
	if _, err := e.PG.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", e.Slot); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 100 {
		_, err := e.PG.Exec(ctx, `INSERT INTO outbox_event (event_type, environment, event_context)
			SELECT 'bench', 'test', jsonb_build_object('tx', $1::int, 'n', g) FROM generate_series(1, $2::int) g`, i, min(100, n-i))
		if err != nil {
			b.Fatal(err)
		}
	}
	sink, err := chsink.Open(ctx, e.ClickHouse, "event_log")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sink.Close() }()
	const batchBytes = 16 << 20
	tracker, budget := ack.New(0), semaphore.NewWeighted(2*batchBytes)
	srcCfg := replication.Config{ConnString: e.DatabaseURL, Slot: e.Slot, Publication: e.Publication, Table: "outbox_event",
		StatusInterval: time.Second, DrainTimeout: 15 * time.Second, BudgetBytes: 2 * batchBytes}
	var (
		log    relay.BatchLog
		marker cleanup.Marker
		timed  = &timedLog{Log: batchlog.New(e.PG, e.Slot)}
	)
	if records {
		log, marker = timed, timed.Log
	}
	r := relay.New(relay.Config{
		Policy:      batch.Policy{MaxEvents: 10000, MaxBytes: batchBytes, MaxAge: 200 * time.Millisecond},
		BudgetBytes: 2 * batchBytes, ShutdownGrace: 10 * time.Second,
		Backoff: retry.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second},
	}, relay.Parts{
		NewSource: func() relay.Source {
			return replication.New(srcCfg, e.PG, tracker, budget, zerolog.Nop(), replication.Hooks{}, nil)
		},
		Sink: sink, Cleaner: cleanup.New(e.PG, "outbox_event", marker), DeadLetter: deadletter.New(e.PG),
		Tracker: tracker, Budget: budget, Metrics: metrics.New(), Batches: log,
	}, zerolog.Nop())

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.StartTimer()
	start := time.Now()
	go func() { done <- r.Run(rctx) }()
	testenv.Eventually(b, 5*time.Minute, "the backlog drained", func() error {
		select {
		case err := <-done:
			b.Fatalf("relay stopped: %v", err)
		default:
		}
		rows, err := e.OutboxRows(ctx)
		if err != nil {
			return err
		}
		if rows != 0 {
			return fmt.Errorf("%d rows left", rows)
		}
		return nil
	})
	took := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatalf("relay: %v", err)
	}
	c, err := e.ClickHouseCounts(ctx)
	if err != nil || c.Distinct != uint64(n) {
		b.Fatalf("ClickHouse holds %d distinct events (%v), want %d", c.Distinct, err, n)
	}
	b.Logf("records %v: %d events in %s (%.0f ev/s); %d pending UPSERTs took %s", records, n, took.Round(time.Millisecond),
		float64(n)/took.Seconds(), timed.batches, timed.took.Round(time.Microsecond))
	return took, timed.took
}
