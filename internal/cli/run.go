package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/getsentry/sentry-go"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/outbox-relay/relay/internal/ack"
	"github.com/outbox-relay/relay/internal/admin"
	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/batchlog"
	"github.com/outbox-relay/relay/internal/buildinfo"
	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/deadletter"
	"github.com/outbox-relay/relay/internal/deletion"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/failpoint"
	"github.com/outbox-relay/relay/internal/logging"
	"github.com/outbox-relay/relay/internal/metrics"
	"github.com/outbox-relay/relay/internal/migrate"
	"github.com/outbox-relay/relay/internal/relay"
	"github.com/outbox-relay/relay/internal/replication"
	"github.com/outbox-relay/relay/internal/report"
	"github.com/outbox-relay/relay/internal/retry"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/standby"
	"github.com/outbox-relay/relay/internal/status"
)

// preflightTimeout bounds the start-up checks of each server, each on its
// own: a hung PostgreSQL must not make ClickHouse look unreachable too.
const preflightTimeout = 15 * time.Second

// failoverKeepRecords is how long batch records outlive their confirmation
// when the slot is a failover slot: PostgreSQL 17's slot sync worker copies
// the slot's position to the standbys at least every 30 s while it moves.
const failoverKeepRecords = 2 * time.Minute

func newLogger(e *env, cfg *config.Config) zerolog.Logger {
	return logging.New(e.stderr, cfg.LogLevel, cfg.LogFormat)
}

func newRunCmd(e *env) *cobra.Command {
	cfg := config.Defaults()
	var adminOpts admin.Options
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Stream outbox events to ClickHouse until SIGTERM/SIGINT",
		Long: `run streams outbox_event INSERTs from the replication slot (created when missing;
rows already in the table are delivered first), writes them to ClickHouse in
batches of whole transactions when CH_OUTBOX_BATCH_SIZE events,
RELAY_BATCH_BYTES bytes or CH_OUTBOX_PROCESSING_FREQUENCY_SEC seconds are
reached, then deletes the delivered rows and acknowledges the LSN (while the
next batch is written). Each batch's range is recorded in outbox_relay_batch
before its INSERT: after a crash the same batch is rebuilt and inserted with
the same identity, which ClickHouse drops where it deduplicates inserts.
On SIGTERM it flushes, acknowledges and exits 0.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.Load(cmd.Flags(), &cfg, e.environ, config.NeedPostgres|config.NeedClickHouse|config.NeedStream); err != nil {
				return err
			}
			if err := adminOpts.Load(cmd.Flags(), e.environ); err != nil {
				return err
			}
			th, err := loadPageThresholds(e.environ)
			if err != nil {
				return err
			}
			return runRelay(cmd.Context(), e, &cfg, adminOpts, th)
		},
	}
	config.RegisterFlags(cmd.Flags(), &cfg)
	admin.RegisterFlags(cmd.Flags(), &adminOpts)
	_ = cmd.Flags().MarkHidden("api-addr") // relay api's flag
	return cmd
}

// deps are the connections run opens before streaming.
type deps struct {
	pool *pgxpool.Pool
	sink *chsink.Sink
	// more are further sinks, one per concurrent write beyond the first
	// (RELAY_INSERT_CONCURRENCY).
	more []*chsink.Sink
}

func (d *deps) close() {
	if d.pool != nil {
		d.pool.Close()
	}
	for _, s := range append([]*chsink.Sink{d.sink}, d.more...) {
		if s != nil {
			_ = s.Close()
		}
	}
}

// moreSinks are d.more as the relay takes them.
func (d *deps) moreSinks() []relay.Sink {
	out := make([]relay.Sink, len(d.more))
	for i, s := range d.more {
		out[i] = s
	}
	return out
}

// preflight connects to both servers and checks what streaming needs. A
// problem of the configuration (a publication missing, a wrong password)
// comes back with every other problem as a usage error (exit 2); a server
// that is down or does not answer is no configuration error: then the
// error says so and exits 1, as any runtime failure, for a supervisor to
// restart the relay.
func preflight(ctx context.Context, cfg *config.Config, srcCfg *replication.Config, timeout time.Duration, log zerolog.Logger) (*deps, error) {
	d := &deps{}
	var problems, down []error
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pool, err := pgxpool.New(pctx, cfg.DatabaseURL)
	if err == nil {
		d.pool = pool
		err = pool.Ping(pctx)
	}
	switch {
	case err != nil && pctx.Err() != nil:
		down = append(down, fmt.Errorf("PostgreSQL (DATABASE_URL) did not answer within %s: %w", timeout, err))
	case err != nil && postgresRefused(err):
		problems = append(problems, fmt.Errorf("PostgreSQL (DATABASE_URL) refused the connection: %w", err))
	case err != nil:
		down = append(down, fmt.Errorf("PostgreSQL (DATABASE_URL) is not reachable: %w", err))
	default:
		outboxes, err := replication.Describe(pctx, pool, cfg.Streams())
		srcCfg.Outboxes = outboxes
		if err == nil {
			err = replication.SharedTables(cfg.Streams(), outboxes)
		}
		if err == nil {
			err = replication.Check(pctx, pool, *srcCfg)
		}
		if retry.IsPermanent(err) {
			problems = append(problems, err)
		} else if err != nil {
			down = append(down, fmt.Errorf("PostgreSQL (DATABASE_URL): %w", err))
		}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Replicated: the local table of the first replica of CLICKHOUSE_URL's
	// hosts that answers; sharded: the Distributed event_log, synchronously.
	// One sink per concurrent write; they add columns under one lock.
	// Every stream's plain table is checked up front (a routed stream's
	// tables are made on first use, like event_log for the layout).
	schema := &sync.Mutex{}
	for i := 0; i < max(cfg.InsertConcurrency, 1); i++ {
		sink, err := chsink.Open(cctx, cfg.ClickHouseURL, chsink.WithInsertSettings(cfg.Layout().InsertSettings()),
			chsink.WithEvolution(chsink.Evolution(cfg.SchemaEvolution)), chsink.WithLayout(cfg.Layout()), chsink.WithLogger(log),
			chsink.WithSchemaLock(schema), chsink.WithCreate(migrate.EventTableCreator(cfg.Layout(), log)))
		if err == nil {
			if err = prepareTables(cctx, sink, cfg.Streams(), srcCfg.Outboxes); err != nil {
				_ = sink.Close()
			}
		}
		if err != nil {
			// The sink classifies: an exception of the server (a wrong
			// password, no event_log) is permanent, the network is not.
			if retry.IsPermanent(err) {
				problems = append(problems, fmt.Errorf("ClickHouse (CLICKHOUSE_URL): %w", err))
			} else {
				down = append(down, fmt.Errorf("ClickHouse (CLICKHOUSE_URL) is not reachable: %w", err))
			}
			break
		}
		if d.sink == nil {
			d.sink = sink
		} else {
			d.more = append(d.more, sink)
		}
	}
	if len(problems)+len(down) == 0 {
		return d, nil
	}
	d.close()
	if len(problems) > 0 {
		return nil, &config.Error{Problems: append(problems, down...)}
	}
	return nil, &exitError{code: ExitFailure, err: cannotStart(down)}
}

// prepareTables checks each stream's plain ClickHouse table on sink once
// (a table two streams share, once), with the extra columns the streams
// carry when PostgreSQL told them (outboxes nil: not checked).
func prepareTables(ctx context.Context, sink *chsink.Sink, streams []config.Stream, outboxes []replication.Outbox) error {
	carried := map[string][]string{}
	for i, s := range streams {
		if s.Routed() {
			continue
		}
		cols, known := carried[s.ClickHouseTable]
		if len(outboxes) == len(streams) {
			cols = append(cols, outboxes[i].ExtraColumns()...)
			if cols == nil {
				cols = []string{} // known: none
			}
		} else if !known {
			cols = nil
		}
		carried[s.ClickHouseTable] = cols
	}
	for i, s := range streams {
		cols, ok := carried[s.ClickHouseTable]
		if !ok {
			continue
		}
		delete(carried, s.ClickHouseTable)
		if err := sink.Prepare(ctx, s.ClickHouseTable, cols); err != nil {
			return fmt.Errorf("stream %q: %w", streams[i].Name, err)
		}
	}
	return nil
}

// postgresRefused reports whether PostgreSQL answered the connection with
// a refusal of its settings (authentication, an unknown database or role)
// or the server's certificate failed verification: the configuration, not
// the server's state.
func postgresRefused(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "28") || pgErr.Code == "3D000"
	}
	var certErr *tls.CertificateVerificationError
	return errors.As(err, &certErr)
}

// cannotStart words servers down at start.
func cannotStart(down []error) error {
	if len(down) == 1 {
		return fmt.Errorf("cannot start: %w (start it or check the address; exit 1 so a supervisor retries)", down[0])
	}
	msgs := make([]string, len(down))
	for i, e := range down {
		msgs[i] = "  - " + e.Error()
	}
	return fmt.Errorf("cannot start (start them or check the addresses; exit 1 so a supervisor retries):\n%s", strings.Join(msgs, "\n"))
}

func runRelay(ctx context.Context, e *env, cfg *config.Config, adminOpts admin.Options, th status.Thresholds) error {
	log := newLogger(e, cfg).With().Str("slot", cfg.Slot).Logger()
	rep, err := report.New(report.Options{DSN: cfg.SentryDSN, Environment: cfg.SentryEnvironment,
		Release: buildinfo.Version, SampleRate: cfg.SentrySampleRate})
	if err != nil {
		return usageError(fmt.Errorf("SENTRY_DSN: %w", err))
	}
	defer rep.Flush(5 * time.Second)

	// The admin address is taken first: in use, it is a clear
	// configuration error before anything starts.
	var adminLn net.Listener
	if cfg.AdminAddr != "" {
		adminLn, err = new(net.ListenConfig).Listen(ctx, "tcp", cfg.AdminAddr)
		if errors.Is(err, syscall.EADDRINUSE) {
			return usageError(fmt.Errorf("RELAY_ADMIN_ADDR %s: %w (another process listens there: choose a free address, or an empty one to switch the admin server off)", cfg.AdminAddr, err))
		}
		if err != nil {
			return usageError(fmt.Errorf("RELAY_ADMIN_ADDR %s: %w (choose an address of this host, or an empty one to switch the admin server off)", cfg.AdminAddr, err))
		}
		defer func() { _ = adminLn.Close() }()
	}

	srcCfg := replication.Config{
		ConnString: cfg.DatabaseURL, Slot: cfg.Slot, Publication: cfg.Publication,
		StatusInterval: cfg.StatusInterval, DrainTimeout: cfg.ShutdownGrace + 5*time.Second,
		MessagePrefix: cfg.MessagePrefix, ReceiveWait: cfg.ReceiveWait, SlotFailover: cfg.SlotFailover,
	}
	// The relay keeps the open batch's expected cut here; the stream
	// paces its reads by it.
	forecast := new(batch.Forecast)
	srcCfg.NextCut = forecast.Load
	d, err := preflight(ctx, cfg, &srcCfg, preflightTimeout, log)
	if err != nil {
		return err
	}
	defer d.close()
	limit := setMemoryLimit(e, cfg.BatchBytes)
	log.Info().Str("version", buildinfo.Version).Str("clickhouse_version", d.sink.Version()).Str("clickhouse_topology", cfg.ClickHouseTopology).
		Int("batch_size", cfg.BatchSize).Int64("batch_bytes", cfg.BatchBytes).
		Dur("flush_interval", cfg.FlushInterval()).Int64("memory_limit", limit).Str("message_prefix", cfg.MessagePrefix).Msg("relay starting")

	m := metrics.New()
	rts, err := streamsAtStart(ctx, d.sink, cfg.Streams(), srcCfg.Outboxes, m, log)
	if err != nil {
		return err
	}
	tracker := ack.New(0)
	budget := event.NewBudget(2 * cfg.BatchBytes)
	ready := admin.NewReadiness(admin.ReadinessFor(cfg.StatusInterval))
	hooks := ready.Hooks(replication.Hooks{
		Connected: m.SetStreamConnected,
		SlotLost: func(slot string) {
			rep.Message("replication slot lost; recreating and backfilling from the outbox table", sentry.LevelError, map[string]string{"slot": slot})
		},
		SlotCreated: func(slot string) {
			rep.Message("replication slot created; backfilling from the outbox table", sentry.LevelWarning, map[string]string{"slot": slot})
		},
		Backfilled:     func(n int) { m.BackfilledEventsTotal.Add(float64(n)) },
		MessageIgnored: func(reason string) { m.MessagesIgnoredTotal.WithLabelValues(reason).Inc() },
		EventsMayBeLost: func(slot string, at time.Time) {
			rep.Message("CRITICAL: replication slot lost or recreated in message mode: events may have been lost", sentry.LevelFatal,
				map[string]string{"slot": slot, "message_prefix": cfg.MessagePrefix, "events_lost_at": at.UTC().Format(time.RFC3339)})
			ready.EventsMayBeLost(slot, at)
		},
	})
	fp := failpoint.FromEnv(e.environ)
	newSrc := func() relay.Source {
		return replication.New(srcCfg, d.pool, tracker, budget, log, hooks, fp)
	}
	batches, cleanDB := batchlog.New(d.pool, cfg.Slot), deletion.BatchSender(d.pool)
	if cfg.SlotFailover {
		// A failover slot's standbys get the relay's batch records and
		// deletes before ClickHouse gets the batch and before its ack.
		w := standby.New(d.pool)
		batches, cleanDB = batchlog.New(w, cfg.Slot).KeepConfirmed(failoverKeepRecords), w
	}
	r := relay.New(relay.Config{
		Policy:        batch.Policy{MaxEvents: cfg.BatchSize, MaxBytes: int(cfg.BatchBytes), MaxAge: cfg.FlushInterval()},
		ShutdownGrace: cfg.ShutdownGrace,
		// A short cap: after a ClickHouse or PostgreSQL outage the relay
		// catches up within seconds of the server's return.
		Backoff: retry.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second},
	}, relay.Parts{
		NewSource: newSrc, Sink: d.sink, MoreSinks: d.moreSinks(), Deleter: deletion.New(cleanDB, deletionTables(srcCfg.Outboxes), batches),
		Routes:     rts,
		DeadLetter: deadletter.New(d.pool), Tracker: tracker, Budget: budget, Metrics: m, Failpoints: fp,
		Spans: rep.StartSpan, Batches: batches,
		SinkHealth: func(err error) { ready.SinkWrite(err, time.Now()) },
		Forecast:   forecast,
	}, log)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.Run(gctx) })
	if cfg.AdminAddr != "" {
		page, record, err := newStatusPage(cfg, th, d.pool, m)
		if err != nil {
			return fmt.Errorf("status page: %w", err)
		}
		adminOpts.Page = page
		adminOpts.Cmdline = config.RedactArgs(e.args)
		g.Go(func() error { return record(gctx) })
		srv := &http.Server{Addr: cfg.AdminAddr, Handler: admin.New(ready, m.Handler(), adminOpts), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error { return serveUntil(gctx, srv, adminLn) })
		g.Go(func() error {
			return status.PollSlot(gctx, d.pool, cfg.Slot, status.PollInterval(cfg.StatusInterval), log,
				status.SlotGauges(m), ready.ObserveSlot)
		})
	}
	err = g.Wait()
	if err != nil {
		rep.Error(err, map[string]string{"slot": cfg.Slot, "clickhouse_version": d.sink.Version(),
			"confirmed_lsn": pglogrepl.LSN(tracker.Confirmed()).String(), "batch_size": strconv.Itoa(cfg.BatchSize)})
		log.Error().Err(err).Msg("relay stopped")
		return err
	}
	log.Info().Msg("relay stopped cleanly")
	return nil
}

// deletionTables are where delivered rows are deleted, in stream order.
func deletionTables(outboxes []replication.Outbox) []deletion.Table {
	out := make([]deletion.Table, len(outboxes))
	for i, o := range outboxes {
		out[i] = deletion.Table{Schema: o.Schema, Name: o.Table, Key: o.Key, KeyType: o.KeyType}
	}
	return out
}

// streamsAtStart logs each stream and the guarantee of its tables (also
// as a metric), and returns where each stream's events go, in stream
// order: a template's tables made before count toward its limit.
func streamsAtStart(ctx context.Context, sink *chsink.Sink, streams []config.Stream, outboxes []replication.Outbox,
	m *metrics.Metrics, log zerolog.Logger) ([]relay.Route, error) {
	var existing []string
	for _, s := range streams {
		if s.Routed() {
			var err error
			if existing, err = sink.Tables(ctx); err != nil {
				return nil, fmt.Errorf("ClickHouse (CLICKHOUSE_URL): %w", err)
			}
			break
		}
	}
	out := make([]relay.Route, len(streams))
	for i, s := range streams {
		out[i] = relay.NewRoute(s, existing)
		o := outboxes[i]
		line := log.Info().Str("stream", s.Name).Str("outbox", o.String()).Str("key", o.Key+" "+o.KeyType).Str("clickhouse_table", s.ClickHouseTable)
		var tables []string
		if out[i].Routed() {
			tables = out[i].Tables()
			line.Strs("routed_tables", tables).Int("max_tables", s.MaxTables).Msg("stream")
		} else {
			tables = []string{s.ClickHouseTable}
			line.Msg("stream")
		}
		m.DeclareStream(s.Name, tables)
		for _, t := range tables {
			g, err := sink.Guarantee(ctx, t)
			if err != nil {
				return nil, fmt.Errorf("ClickHouse (CLICKHOUSE_URL): stream %q: %w", s.Name, err)
			}
			m.SetGuarantee(s.Name, t, guaranteeLabel(g.Level))
			ev := log.Info()
			if g.Level == chsink.AtLeastOnce {
				ev = log.Warn()
			}
			ev.Str("stream", s.Name).Str("clickhouse_table", t).Str("guarantee", string(g.Level)).Str("upgrade", g.Upgrade).Msg(g.String())
		}
	}
	return out, nil
}

// guaranteeLabel is a guarantee as the metric's label spells it.
func guaranteeLabel(l chsink.Level) string {
	switch l {
	case chsink.ExactlyOnce:
		return metrics.GuaranteeExactlyOnce
	case chsink.ExactlyOnceFinal:
		return metrics.GuaranteeExactlyOnceFinal
	}
	return metrics.GuaranteeAtLeastOnce
}

// serveUntil runs srv on ln until ctx ends, then shuts it down.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin server on %s: %w", srv.Addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// setMemoryLimit gives the Go runtime a soft memory limit that fits what
// the relay holds by design — twice RELAY_BATCH_BYTES of events in flight,
// the piece of a block being sent, and the rest of the process — unless GOMEMLIMIT
// sets one. Without it the garbage collector lets the heap grow to twice
// its live size, and large events (each also passes through the PostgreSQL
// driver's read buffer) pile up as garbage above the budget. The limit is
// soft: a live heap above it is slowed by collection, never failed.
func setMemoryLimit(e *env, batchBytes int64) int64 {
	if v, ok := e.environ["GOMEMLIMIT"]; ok && v != "" {
		return debug.SetMemoryLimit(-1) // the runtime applied it at start
	}
	limit := memoryLimit(batchBytes)
	debug.SetMemoryLimit(limit)
	return limit
}

// memoryLimit is 2×batchBytes of events in flight plus 32 MiB for the
// insert's 1 MiB pieces, the drivers' buffers and the runtime. Config
// bounds batchBytes; the limit saturates rather than wrap past it anyway.
func memoryLimit(batchBytes int64) int64 {
	const rest = 32 << 20
	if batchBytes > (math.MaxInt64-rest)/2 {
		return math.MaxInt64
	}
	return 2*batchBytes + rest
}
