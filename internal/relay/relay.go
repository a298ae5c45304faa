// Package relay runs the pipeline replication -> batch -> sink -> delete
// -> confirm. Where each step lives: session.go is the loop (one source
// connection: items into batches, shutdown's drain), write.go cuts a batch
// and writes it (isolating and dead-lettering what the sink rejects), and
// complete.go completes it: deletes the delivered rows, then confirms the
// position.
//
// Contract (at-least-once into the sink, exactly-once through its
// deduplication):
//   - The sink is asked to write a batch; only after it returned nil are the
//     batch's rows deleted from the outbox table (events carried by logical
//     decoding messages have no row) and then its AckLSN confirmed to the
//     ack.Tracker (which the source reports to PostgreSQL). Completing one
//     batch overlaps with writing the next; confirmations stay in LSN order.
//   - Retryable sink errors are retried with backoff for as long as it takes;
//     meanwhile the source stops reading once the byte budget is spent and
//     keeps the replication connection alive. Permanent errors (the sink's,
//     or PostgreSQL's classified by pgerr) stop the relay with nothing
//     confirmed that was not written and deleted.
//   - A broken stream is reconnected with backoff; the events of the
//     transaction that was open are dropped (it is streamed again).
//   - On shutdown (ctx ends): the open transaction is dropped, the complete
//     ones are written, deleted and confirmed within the grace period, then
//     the source sends its final status update.
package relay

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/ack"
	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/batchlog"
	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/deadletter"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/failpoint"
	"github.com/outbox-relay/relay/internal/metrics"
	"github.com/outbox-relay/relay/internal/replication"
	"github.com/outbox-relay/relay/internal/retry"
)

// Source streams items until ctx ends (see replication.Source).
type Source interface {
	Run(ctx context.Context, out chan<- []replication.Item, drained <-chan struct{}) error
}

// Sink durably stores a batch in table; nil means every event is stored. token is
// the batch's identity (empty: none): a repeated write with the same token
// and events may be dropped by the sink. relayedAt is stored with every row.
type Sink interface {
	WriteBatch(ctx context.Context, table string, evs []event.Event, token string, relayedAt time.Time) error
}

// Deleter deletes delivered rows from the outbox table and, with them,
// marks the batch's recorded range done (done nil: no record).
type Deleter interface {
	Delete(ctx context.Context, rows []event.Row, done *batch.Range) (int64, error)
}

// BatchLog records batch ranges before they are written (see package
// batchlog).
type BatchLog interface {
	Slot() string
	Load(ctx context.Context) ([]batchlog.Record, error)
	Pending(ctx context.Context, rec batchlog.Record) error
}

// DeadLetter keeps events the sink rejected for their content.
type DeadLetter interface {
	Put(ctx context.Context, rs []deadletter.Rejected) error
}

// Parts are what the relay connects; every field is required except
// Failpoints, Spans and Batches.
type Parts struct {
	NewSource func() Source // builds the source for each (re)connection
	Sink      Sink
	// MoreSinks are sinks like Sink, each writing another batch while the
	// others write theirs (nil: one batch at a time).
	MoreSinks  []Sink
	Deleter    Deleter
	DeadLetter DeadLetter
	Tracker    *ack.Tracker  // shared with the sources
	Budget     *event.Budget // shared with the sources
	Metrics    *metrics.Metrics
	Failpoints *failpoint.Set
	// Spans, when set, traces each batch and its steps (Sentry).
	Spans StartSpan
	// Batches, when set, records each batch's range before it is written
	// and makes every batch a replay may repeat carry an identity.
	Batches BatchLog
	// SinkHealth, when set, is told the outcome of each write attempt
	// (nil: ClickHouse accepted a batch), e.g. for readiness.
	SinkHealth func(err error)
	// Forecast, when set, is kept at the open batch's expected cut for the
	// source to pace its reads by (see replication.Config.NextCut).
	Forecast *batch.Forecast
	// Routes are where each stream's events go, in stream order
	// (event.Event.Stream indexes them); nil: every event into
	// config.DefaultClickHouseTable.
	Routes []Route
}

// StartSpan starts a tracing span op under the one in ctx and returns the
// context carrying it and its finish function.
type StartSpan func(ctx context.Context, op string, tags map[string]string) (context.Context, func())

// Config tunes the loop.
type Config struct {
	Policy batch.Policy
	// ShutdownGrace bounds the final writes, deletes and confirmations after ctx ends.
	ShutdownGrace time.Duration
	// Backoff between reconnects and sink retries.
	Backoff retry.Backoff
}

// attemptTimeout bounds one attempt of a statement against PostgreSQL, so
// that a connection that stopped answering is given up and retried.
const attemptTimeout = 30 * time.Second

// errEnd reports the source's End item: it stopped reading for shutdown.
var errEnd = errors.New("source ended")

// standbyPoll is how often a standby relay retries an active slot.
const standbyPoll = time.Second

// Relay is the pipeline.
type Relay struct {
	cfg      Config
	newSrc   func() Source
	deleter  Deleter
	dead     DeadLetter
	tracker  *ack.Tracker
	budget   *event.Budget
	batcher  *batch.Batcher
	m        *metrics.Metrics
	fp       *failpoint.Set
	spans    StartSpan
	batches  BatchLog
	health   func(err error)
	forecast *batch.Forecast
	routes   []Route
	log      zerolog.Logger
	// sinks are the sinks not writing a batch now (see cut).
	sinks chan Sink
	// wholeRejections counts the batches in a row the sink rejected
	// whole (see watchRejections).
	wholeRejections atomic.Int64
	// held is what the buffer gauges add up (see gaugeBuffer).
	held struct {
		batcherEvents, batcherBytes, writingEvents, writingBytes atomic.Int64
	}
}

// New wires a Relay from its parts.
func New(cfg Config, p Parts, log zerolog.Logger) *Relay {
	r := &Relay{cfg: cfg, newSrc: p.NewSource, deleter: p.Deleter, dead: p.DeadLetter,
		tracker: p.Tracker, budget: p.Budget, batcher: batch.New(cfg.Policy), m: p.Metrics, fp: p.Failpoints, spans: p.Spans, batches: p.Batches,
		forecast: p.Forecast, routes: p.Routes, log: log}
	if r.routes == nil {
		r.routes = []Route{NewRoute(config.DefaultStreams()[0], nil)}
	}
	r.sinks = make(chan Sink, 1+len(p.MoreSinks))
	r.sinks <- p.Sink
	for _, s := range p.MoreSinks {
		r.sinks <- s
	}
	r.health = p.SinkHealth
	if r.health == nil {
		r.health = func(error) {}
	}
	if r.spans == nil {
		r.spans = func(ctx context.Context, _ string, _ map[string]string) (context.Context, func()) {
			return ctx, func() {}
		}
	}
	return r
}

// Run relays until ctx ends (returns nil after a clean drain) or a
// permanent error occurs.
func (r *Relay) Run(ctx context.Context) error {
	b := r.cfg.Backoff
	for {
		start := time.Now()
		err := (&session{Relay: r}).run(ctx)
		if ctx.Err() != nil {
			if err != nil && !retry.IsPermanent(err) {
				// Stopped while the sink was failing: nothing was acknowledged,
				// so the buffered events are streamed again on the next start.
				r.log.Warn().Err(err).Msg("stopped before buffered events reached the sink; they will be streamed again")
				return nil
			}
			return err
		}
		if retry.IsPermanent(err) {
			return err
		}
		if time.Since(start) > time.Minute {
			b.Reset()
		}
		wait := b.Next()
		if errors.Is(err, replication.ErrSlotInUse) {
			// Standby: poll often so that takeover after the active relay
			// dies takes seconds, not a grown backoff.
			b.Reset()
			wait = standbyPoll
			r.log.Info().Err(err).Dur("retry_in", wait).Msg("slot is active in another relay; standing by")
		} else {
			r.log.Warn().Err(err).Dur("retry_in", wait).Msg("stream interrupted; reconnecting")
		}
		r.m.ReconnectsTotal.Inc()
		if err := retry.Sleep(ctx, wait); err != nil {
			return nil
		}
	}
}
