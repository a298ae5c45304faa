package integration

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/ack"
	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/batchlog"
	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/deadletter"
	"github.com/outbox-relay/relay/internal/deletion"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/metrics"
	"github.com/outbox-relay/relay/internal/relay"
	"github.com/outbox-relay/relay/internal/replication"
	"github.com/outbox-relay/relay/internal/retry"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
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
// on the single server and returns how long it took from start until the
// outbox was empty, and how much of it the pending UPSERTs took.
func drainInProcess(b *testing.B, records bool, n int) (time.Duration, time.Duration) {
	b.StopTimer()
	defer b.StartTimer()
	e := testenv.New(b)
	took, timed := benchDrain(b, e, records, n)
	b.Logf("records %v: %d events in %s (%.0f ev/s); %d pending UPSERTs took %s", records, n, took.Round(time.Millisecond),
		float64(n)/took.Seconds(), timed.batches, timed.took.Round(time.Microsecond))
	return took, timed.took
}

// benchDrain commits a backlog of n events (transactions of 100) behind a
// fresh slot, runs the relay in-process until the outbox is empty, stops
// it and checks ClickHouse.
func benchDrain(b *testing.B, e *testenv.Env, records bool, n int) (time.Duration, *timedLog) {
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
	b.StartTimer()
	start := time.Now()
	timed, stop := startInProcess(b, e, records, 10000)
	testenv.Eventually(b, 5*time.Minute, "the backlog drained", func() error {
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
	stop()
	c, err := e.ClickHouseCounts(ctx)
	if err != nil || c.Distinct != uint64(n) {
		b.Fatalf("ClickHouse holds %d distinct events (%v), want %d", c.Distinct, err, n)
	}
	return took, timed
}

// startInProcess runs the relay on e in-process, wired as `relay run`
// wires it (batches of batchSize, 200 ms flush interval, e's topology),
// the batch records on or off; stop ends it and fails b on its error.
func startInProcess(b *testing.B, e *testenv.Env, records bool, batchSize int) (*timedLog, func()) {
	ctx := context.Background()
	sink, err := chsink.Open(ctx, e.ClickHouse, chsink.WithInsertSettings(e.Layout.InsertSettings()))
	if err != nil {
		b.Fatal(err)
	}
	const batchBytes = 16 << 20
	tracker, budget := ack.New(0), event.NewBudget(2*batchBytes)
	outboxes, err := replication.Describe(ctx, e.PG, config.DefaultStreams())
	if err != nil {
		b.Fatal(err)
	}
	srcCfg := replication.Config{ConnString: e.DatabaseURL, Slot: e.Slot, Publication: e.Publication, Outboxes: outboxes,
		StatusInterval: time.Second, DrainTimeout: 15 * time.Second}
	var (
		log    relay.BatchLog
		marker deletion.Marker
		timed  = &timedLog{Log: batchlog.New(e.PG, e.Slot)}
	)
	if records {
		log, marker = timed, timed.Log
	}
	r := relay.New(relay.Config{
		Policy:        batch.Policy{MaxEvents: batchSize, MaxBytes: batchBytes, MaxAge: 200 * time.Millisecond},
		ShutdownGrace: 10 * time.Second,
		Backoff:       retry.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second},
	}, relay.Parts{
		NewSource: func() relay.Source {
			return replication.New(srcCfg, e.PG, tracker, budget, zerolog.Nop(), replication.Hooks{}, nil)
		},
		Sink: sink, Deleter: deletion.New(e.PG, []deletion.Table{{Schema: "public", Name: "outbox_event", Key: "id", KeyType: "uuid"}}, marker), DeadLetter: deadletter.New(e.PG),
		Tracker: tracker, Budget: budget, Metrics: metrics.New(), Batches: log,
	}, zerolog.Nop())
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	return timed, func() {
		cancel()
		err := <-done
		_ = sink.Close()
		if err != nil {
			b.Fatalf("relay: %v", err)
		}
	}
}

// BenchmarkTopologies runs the relay (in-process, batch records on) on the
// single server and on the replicated topology of the shared cluster, in
// the same run: a backlog drain of RELAY_BENCH_EVENTS (default 200,000)
// events, then a steady 2,000 ev/s (transactions of 20 every 10 ms) for
// 20 s with batches of 1,000, reporting p50/p99 from commit to visible in
// event_log on the server the relay inserts into (10 ms resolution).
//
//	go test -run '^$' -bench Topologies -benchtime 1x ./test/integration/
func BenchmarkTopologies(b *testing.B) {
	testenv.SkipCluster(b)
	n := 200_000
	if v := os.Getenv("RELAY_BENCH_EVENTS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	for _, topo := range []topology.Topology{topology.Single, topology.Replicated} {
		b.Run(string(topo), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				e := testenv.NewOn(b, topo)
				took, _ := benchDrain(b, e, true, n)
				b.ReportMetric(float64(n)/took.Seconds(), "drain-ev/s")
				p50, p99 := steadyLatency(b, testenv.NewOn(b, topo), 2000, 20*time.Second)
				b.ReportMetric(float64(p50.Milliseconds()), "p50-ms@2000")
				b.ReportMetric(float64(p99.Milliseconds()), "p99-ms@2000")
				b.Logf("%s: drain %d events in %s (%.0f ev/s); 2,000 ev/s: p50 %s p99 %s", topo, n, took.Round(time.Millisecond),
					float64(n)/took.Seconds(), p50, p99)
			}
		})
	}
}

// steadyLatency commits rate events per second (transactions of 20) for
// d with the relay running, and measures for each transaction the time
// from its commit until event_log's count() covered it.
func steadyLatency(b *testing.B, e *testenv.Env, rate int, d time.Duration) (p50, p99 time.Duration) {
	ctx := context.Background()
	if _, err := e.PG.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", e.Slot); err != nil {
		b.Fatal(err)
	}
	_, stop := startInProcess(b, e, true, 1000)
	defer stop()
	const perTx = 20
	type commit struct {
		at    time.Time
		total uint64
	}
	commits := make(chan commit, 1<<16)
	go func() {
		defer close(commits)
		tick := time.NewTicker(time.Second * perTx / time.Duration(rate))
		defer tick.Stop()
		var total uint64
		for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
			if _, err := e.PG.Exec(ctx, `INSERT INTO outbox_event (event_type, environment, event_context)
				SELECT 'steady', 'test', jsonb_build_object('n', g) FROM generate_series(1, $1::int) g`, perTx); err != nil {
				b.Error(err)
				return
			}
			total += perTx
			commits <- commit{at: time.Now(), total: total}
		}
	}()
	var lat []time.Duration
	var seen uint64
	// The watcher reads ClickHouse on a 10 ms tick: its resolution.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for c := range commits {
		for seen < c.total {
			if err := e.CH.QueryRow(ctx, "SELECT count() FROM event_log").Scan(&seen); err != nil {
				b.Fatal(err)
			}
			if seen < c.total {
				<-tick.C
			}
		}
		lat = append(lat, time.Since(c.at))
	}
	if len(lat) == 0 {
		b.Fatal("no transaction committed")
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100]
}
