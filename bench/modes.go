package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outbox-relay/relay/outbox"
)

// MessagePrefix is the logical decoding message prefix of the message-mode
// runs (RELAY_MESSAGE_PREFIX of the relay).
const MessagePrefix = "outbox_bench"

// Publishing modes compared by the modes scenario.
const (
	ModeTable   = "table"
	ModeMessage = "message"
)

// modeStat is one mode's run: the producer's load, then the relay's drain.
type modeStat struct {
	load      time.Duration // producer wall time
	txs       int
	loadCPU   ServerCPU // while the producer ran (its backends included)
	loadWAL   int64     // WAL bytes the producer wrote
	drain     DrainStat
	drainWAL  int64 // WAL bytes written during the drain (the DELETEs)
	eventsPer int
}

// Modes compares table and message publishing on the same dataset, each
// run doing both back to back: the producer publishes d through
// outbox.Publisher (rows, or transactional messages) behind an existing
// slot with synchronous_commit on, then the relay drains the backlog. It
// records drain throughput, the producer's commit rate, PostgreSQL CPU per
// million events (producer backends and the drain together) and WAL bytes
// per event.
func (r *Runner) Modes(ctx context.Context, d Dataset, conns, runs int) string {
	sc := d.scenario("modes")
	for i := range runs {
		load := LoadAvg1()
		r.Logf("%s: run %d/%d (load average %.1f)", sc, i+1, runs, load)
		stats := map[string]modeStat{}
		for _, mode := range []string{ModeTable, ModeMessage} {
			st, err := r.modeRun(ctx, d, mode, conns, fmt.Sprintf("modes-%s-%d", mode, i+1))
			if err != nil {
				r.fail(sc, i, fmt.Errorf("%s mode: %w", mode, err))
				break
			}
			stats[mode] = st
		}
		if len(stats) != 2 {
			continue
		}
		r.Report.Add(sc, "host load average at start", "1 min", load)
		for _, mode := range []string{ModeTable, ModeMessage} {
			stats[mode].record(r.Report, sc, mode)
		}
	}
	r.modeRatios(sc, "drain throughput", "drain ev/s", ">=", 1.3)
	r.modeRatios(sc, "cpu postgres total", "postgres cpu/M (producer + drain)", "<=", 0.7)
	r.modeRatios(sc, "wal per event", "WAL bytes/event", "", 0)
	r.modeRatios(sc, "producer commit rate", "producer commits/s", "", 0)
	return sc
}

func (r *Runner) modeRatios(sc, metric, name, op string, goal float64) {
	name = "modes message/table " + name
	for _, v := range ratio(r.Report.Get(sc, ModeMessage+" "+metric), r.Report.Get(sc, ModeTable+" "+metric)) {
		r.Report.Add(RatioScenario, name, "×", v)
	}
	if op != "" {
		r.Report.Goal(RatioScenario, name, op, goal)
	}
}

func (s modeStat) record(rep *Report, sc, mode string) {
	n := float64(s.drain.Events)
	perM := func(d time.Duration) float64 { return d.Seconds() / n * 1e6 }
	rep.Add(sc, mode+" drain throughput", "ev/s", s.drain.EventsPerSec())
	rep.Add(sc, mode+" producer commit rate", "tx/s", float64(s.txs)/s.load.Seconds())
	rep.Add(sc, mode+" producer throughput", "ev/s", n/s.load.Seconds())
	rep.Add(sc, mode+" cpu postgres producer", "s/M ev", perM(s.loadCPU.PG))
	rep.Add(sc, mode+" cpu postgres drain", "s/M ev", perM(s.drain.Server.PG))
	rep.Add(sc, mode+" cpu postgres total", "s/M ev", perM(s.loadCPU.PG+s.drain.Server.PG))
	rep.Add(sc, mode+" cpu relay", "s/M ev", perM(s.drain.Proc.CPU))
	rep.Add(sc, mode+" cpu clickhouse", "s/M ev", perM(s.drain.Server.CH))
	rep.Add(sc, mode+" wal per event producer", "B", float64(s.loadWAL)/n)
	rep.Add(sc, mode+" wal per event", "B", float64(s.loadWAL+s.drainWAL)/n)
}

func (r *Runner) modeRun(ctx context.Context, d Dataset, mode string, conns int, profile string) (modeStat, error) {
	st := modeStat{eventsPer: d.PerTx}
	e, err := NewEnv(ctx, r.Srv)
	if err != nil {
		return st, err
	}
	defer e.Close()
	if err := e.CreateSlot(ctx, e.Slot); err != nil {
		return st, err
	}
	var opts []outbox.Option
	if mode == ModeMessage {
		opts = append(opts, outbox.WithMessages(MessagePrefix))
	}
	pub, err := outbox.NewPublisher(Environment, opts...)
	if err != nil {
		return st, err
	}
	if err := e.checkpoint(ctx); err != nil {
		return st, err
	}
	wal0, err := e.CurrentWAL(ctx)
	if err != nil {
		return st, err
	}
	cpu0 := r.Srv.ReadServerCPU()
	start := time.Now()
	if st.txs, err = publishDataset(ctx, e, d, pub, conns); err != nil {
		return st, err
	}
	st.load = time.Since(start)
	st.loadCPU = r.Srv.ReadServerCPU().Sub(cpu0)
	wal1, err := e.CurrentWAL(ctx)
	if err != nil {
		return st, err
	}
	st.loadWAL = wal1 - wal0
	r.Logf("  %s: published %d events in %d transactions in %s", mode, d.Events, st.txs, st.load.Round(time.Millisecond))
	if err := e.checkpoint(ctx); err != nil {
		return st, err
	}
	wal2, err := e.CurrentWAL(ctx)
	if err != nil {
		return st, err
	}
	rr := *r
	if mode == ModeMessage {
		rr.RelayExtraEnv = append(append([]string(nil), r.RelayExtraEnv...), "RELAY_MESSAGE_PREFIX="+MessagePrefix)
	}
	if st.drain, err = rr.RelayDrain(ctx, e, d, profile); err != nil {
		return st, err
	}
	wal3, err := e.CurrentWAL(ctx)
	if err != nil {
		return st, err
	}
	st.drainWAL = wal3 - wal2
	r.Logf("  %s: relay drained %.0f ev/s", mode, st.drain.EventsPerSec())
	return st, nil
}

// checkpoint flushes dirty buffers between phases, so that neither phase
// pays for the other's checkpoint.
func (e *Env) checkpoint(ctx context.Context) error {
	if _, err := e.PG.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// publishDataset publishes d through pub, d.PerTx events per transaction,
// from conns connections with synchronous_commit on (PostgreSQL's default),
// and returns the number of transactions.
func publishDataset(ctx context.Context, e *Env, d Dataset, pub *outbox.Publisher, conns int) (int, error) {
	cfg, err := pgxpool.ParseConfig(e.DatabaseURL)
	if err != nil {
		return 0, err
	}
	cfg.MaxConns = int32(conns)
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	var next, txs atomic.Int64
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- publishChunks(ctx, pool, d, pub, &next, &txs)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return int(txs.Load()), nil
}

func publishChunks(ctx context.Context, pool *pgxpool.Pool, d Dataset, pub *outbox.Publisher, next, txs *atomic.Int64) error {
	evs := make([]outbox.Event, 0, d.PerTx)
	for {
		first := int(next.Add(int64(d.PerTx))) - d.PerTx
		if first >= d.Events {
			return nil
		}
		evs = evs[:0]
		for i := first; i < min(first+d.PerTx, d.Events); i++ {
			row := d.Row(i, nil)
			evs = append(evs, outbox.Event{ID: row.ID, Type: row.Type, Context: json.RawMessage(row.Context), MetadataVersion: row.Seq})
		}
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := pub.Publish(ctx, tx, evs...)
			return err
		})
		if err != nil {
			return fmt.Errorf("publish events %d..%d: %w", first, first+len(evs), err)
		}
		txs.Add(1)
	}
}

// ModesLatency measures end-to-end latency at lc's rate for the relay with
// table and with message publishing, back to back in each run.
func (r *Runner) ModesLatency(ctx context.Context, lc LatencyConfig, interval time.Duration, runs int) {
	steady := *r
	steady.BatchSize = SteadyBatchSize
	sc := fmt.Sprintf("modes latency %d ev/s, interval %s, batch %d", lc.Rate, interval, steady.BatchSize)
	for i := range runs {
		load := LoadAvg1()
		r.Logf("%s: run %d/%d (%s each, load average %.1f)", sc, i+1, runs, lc.Duration, load)
		stats := map[string]latencyStat{}
		for _, mode := range []string{ModeTable, ModeMessage} {
			rr, mlc := steady, lc
			if mode == ModeMessage {
				mlc.MessagePrefix = MessagePrefix
				rr.RelayExtraEnv = append(append([]string(nil), r.RelayExtraEnv...), "RELAY_MESSAGE_PREFIX="+MessagePrefix)
			}
			st, err := rr.latencyRun(ctx, "relay", mlc, interval, fmt.Sprintf("modes-latency-%s-%d", mode, i+1))
			if err != nil {
				r.fail(sc, i, fmt.Errorf("%s mode: %w", mode, err))
				break
			}
			stats[mode] = st
		}
		if len(stats) != 2 {
			continue
		}
		r.Report.Add(sc, "host load average at start", "1 min", load)
		for _, mode := range []string{ModeTable, ModeMessage} {
			stats[mode].record(r.Report, sc, mode)
		}
	}
	name := fmt.Sprintf("modes message/table latency p99 @%d ev/s", lc.Rate)
	for _, v := range ratio(r.Report.Get(sc, ModeMessage+" p99"), r.Report.Get(sc, ModeTable+" p99")) {
		r.Report.Add(RatioScenario, name, "×", v)
	}
	name = fmt.Sprintf("modes message/table postgres cpu/M @%d ev/s", lc.Rate)
	for _, v := range ratio(r.Report.Get(sc, ModeMessage+" cpu postgres"), r.Report.Get(sc, ModeTable+" cpu postgres")) {
		r.Report.Add(RatioScenario, name, "×", v)
	}
}
