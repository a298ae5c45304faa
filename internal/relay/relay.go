// Package relay runs the pipeline source -> batch -> sink -> ack -> cleanup.
//
// Contract (at-least-once into the sink, exactly-once through its read path):
//   - The sink is asked to write a batch; only after it returned nil are the
//     batch's rows deleted from the outbox table (events carried by logical
//     decoding messages have no row) and its AckLSN handed to the
//     ack.Tracker (which the source reports to PostgreSQL). Deleting and
//     acknowledging one batch overlaps with writing the next; acks stay in
//     LSN order.
//   - Retryable sink errors are retried with backoff for as long as it takes;
//     meanwhile the source stops reading once the byte budget is spent and
//     keeps the replication connection alive. Permanent sink errors stop
//     the relay with nothing acknowledged.
//   - A broken stream is reconnected with backoff; the events of the
//     transaction that was open are dropped (it is streamed again).
//   - On shutdown (ctx ends): the open transaction is dropped, the complete
//     ones are flushed and acknowledged within the grace period, then the
//     source sends its final status update.
package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/ack"
	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/batchlog"
	"github.com/outbox-relay/relay/internal/deadletter"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/failpoint"
	"github.com/outbox-relay/relay/internal/metrics"
	"github.com/outbox-relay/relay/internal/replication"
	"github.com/outbox-relay/relay/internal/retry"
)

// Source streams items until ctx ends (see package source).
type Source interface {
	Run(ctx context.Context, out chan<- []replication.Item, drained <-chan struct{}) error
}

// Sink durably stores a batch; nil means every event is stored. token is
// the batch's identity (empty: none): a repeated write with the same token
// and events may be dropped by the sink. relayedAt is stored with every row.
type Sink interface {
	WriteBatch(ctx context.Context, evs []event.Event, token string, relayedAt time.Time) error
}

// Cleaner deletes delivered rows from the outbox table and, with them,
// marks the batch's recorded range done (done nil: no record).
type Cleaner interface {
	Delete(ctx context.Context, ids [][16]byte, done *batch.Range) (int64, error)
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
	Cleaner    Cleaner
	DeadLetter DeadLetter
	Tracker    *ack.Tracker  // shared with the sources
	Budget     *event.Budget // shared with the sources
	Metrics    *metrics.Metrics
	Failpoints *failpoint.Set
	// Spans, when set, traces each flush and its steps (Sentry).
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
}

// StartSpan starts a tracing span op under the one in ctx and returns the
// context carrying it and its finish function.
type StartSpan func(ctx context.Context, op string, tags map[string]string) (context.Context, func())

// Config tunes the loop.
type Config struct {
	Policy batch.Policy
	// ShutdownGrace bounds the final flush after ctx ends.
	ShutdownGrace time.Duration
	// Backoff between reconnects and sink retries.
	Backoff retry.Backoff
}

// wholeBatchRejected is the batch size from which "every event rejected"
// is taken for a schema problem rather than bad data.
const wholeBatchRejected = 10

// attemptTimeout bounds one attempt of a statement against PostgreSQL, so
// that a connection that stopped answering is given up and retried.
const attemptTimeout = 30 * time.Second

// sinkAttemptTimeout bounds one write of a batch, so that a sink
// connection that stopped answering is given up and retried.
const sinkAttemptTimeout = 2 * time.Minute

// errEnd reports the source's End item: it stopped reading for shutdown.
var errEnd = errors.New("source ended")

// standbyPoll is how often a standby relay retries an active slot.
const standbyPoll = time.Second

// Relay is the pipeline.
type Relay struct {
	cfg     Config
	newSrc  func() Source
	clean   Cleaner
	dead    DeadLetter
	tracker *ack.Tracker
	budget  *event.Budget
	batcher *batch.Batcher
	m       *metrics.Metrics
	fp      *failpoint.Set
	spans   StartSpan
	batches BatchLog
	// replay holds the records being rebuilt this session, by first
	// position.
	replay   map[batch.Position]batchlog.Record
	health   func(err error)
	forecast *batch.Forecast
	log      zerolog.Logger
	// done takes written batches to their cleanup and acknowledgement
	// (see complete); set per session.
	done *completer
	// sinks are the sinks not writing a batch now (see flush).
	sinks chan Sink
	// held is what the buffer gauges add up (see gaugeBuffer).
	held struct {
		batcherEvents, batcherBytes, writingEvents, writingBytes atomic.Int64
	}
}

// New wires a Relay from its parts.
func New(cfg Config, p Parts, log zerolog.Logger) *Relay {
	r := &Relay{cfg: cfg, newSrc: p.NewSource, clean: p.Cleaner, dead: p.DeadLetter,
		tracker: p.Tracker, budget: p.Budget, batcher: batch.New(cfg.Policy), m: p.Metrics, fp: p.Failpoints, spans: p.Spans, batches: p.Batches,
		forecast: p.Forecast, log: log}
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
		err := r.session(ctx)
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

// session runs one source connection and consumes its items.
func (r *Relay) session(ctx context.Context) error {
	if err := r.loadReplay(ctx); err != nil {
		return err
	}
	// Room for a whole batch lets the source decode the next batch while
	// this one is written; the byte budget bounds the memory either way.
	items := make(chan []replication.Item, min(max(1024, r.cfg.Policy.MaxEvents), 65536))
	drained := make(chan struct{})
	srcCtx, cancelSrc := context.WithCancel(ctx)
	defer cancelSrc()
	srcDone := make(chan error, 1)
	src := r.newSrc()
	go func() { srcDone <- src.Run(srcCtx, items, drained) }()
	// Writes and deletes already under way are not cut off by shutdown:
	// they get ShutdownGrace after ctx ends.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(r.cfg.ShutdownGrace, cancelWork)
		<-work.Done()
		t.Stop()
	})
	defer stopGrace()
	r.done = r.startCompleter(work)

	err := r.consume(ctx, work, items, srcDone)
	switch {
	case errors.Is(err, errEnd):
		err = r.drain(work, nil, srcDone)
	case ctx.Err() != nil && err == nil:
		err = r.drain(work, items, srcDone)
	}
	// Batches already written are still cleaned up and acknowledged (within
	// the grace period on shutdown) before the source sends its last status.
	if cerr := r.done.close(); err == nil {
		err = cerr
	}
	if !r.batcher.Replaying() {
		r.release(r.batcher.DropUncommitted())
	}
	close(drained)
	cancelSrc()
	if srcErr, ok := <-srcDone; ok && err == nil {
		err = srcErr
	}
	// The source has returned: nothing more is sent. Give back the weight
	// of what it queued, and, when reconnecting, drop what is buffered too:
	// the next session streams it again from the confirmed position.
	for len(items) > 0 {
		r.releaseItems(<-items)
	}
	r.release(r.batcher.Reset())
	r.gaugeBuffer()
	return err
}

// loadReplay reads the recorded ranges: the stream may bring them again,
// and each must then be rebuilt exactly (see package batch) before normal
// batching goes on.
func (r *Relay) loadReplay(ctx context.Context) error {
	r.replay = nil
	if r.batches == nil {
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	recs, err := r.batches.Load(actx)
	cancel()
	if err != nil {
		return err
	}
	r.replay = make(map[batch.Position]batchlog.Record, len(recs))
	ranges := make([]batch.Range, len(recs))
	for i, rec := range recs {
		r.replay[rec.Range.First] = rec
		ranges[i] = rec.Range
	}
	r.batcher.Replay(ranges)
	if len(recs) > 0 {
		r.log.Info().Int("batches", len(recs)).Str("first", recs[0].Range.Token(r.batches.Slot())).
			Msg("recorded batches found; rebuilding those the stream brings again")
	}
	return nil
}

// consume is the loop's select: it owns the batch timer.
// ctx ends the loop; work bounds the writes.
func (r *Relay) consume(ctx, work context.Context, items chan []replication.Item, srcDone chan error) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var due <-chan time.Time
		now := time.Now()
		r.forecast.Store(r.batcher.ExpectedCut(now))
		if d, ok := r.batcher.UntilNext(now); ok {
			timer.Reset(d)
			due = timer.C
		} else if r.batcher.Replaying() && r.batcher.Len() > 0 {
			timer.Reset(replayStall)
			due = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.done.failed:
			return r.done.err
		case err := <-srcDone:
			srcDone <- err // session() reads it again
			// Items already queued are complete messages: keep them.
			for len(items) > 0 {
				if ferr := r.addAll(work, <-items); ferr != nil {
					return ferr
				}
			}
			return err
		case its := <-items:
			if err := r.addAll(work, its); err != nil {
				return err
			}
		case <-due:
			if r.batcher.Replaying() {
				r.giveUpStalledReplay()
				continue
			}
			if err := r.flushDue(work, items); err != nil {
				return err
			}
		}
	}
}

// addAll adds the items of one hand-over from the source. On an error
// the events after the failing item are given back: they are streamed
// again.
func (r *Relay) addAll(ctx context.Context, its []replication.Item) error {
	for i, it := range its {
		if err := r.add(ctx, it); err != nil {
			r.releaseItems(its[i+1:])
			return err
		}
	}
	r.gaugeBuffer()
	return nil
}

// gaugeBuffer shows what the relay holds that ClickHouse has not accepted:
// the batcher's events plus the batches being written. Only the loop's
// goroutine reads the batcher; writers call setBufferGauges.
func (r *Relay) gaugeBuffer() {
	r.held.batcherEvents.Store(int64(r.batcher.Len()))
	r.held.batcherBytes.Store(int64(r.batcher.Bytes()))
	r.setBufferGauges()
}

func (r *Relay) setBufferGauges() {
	r.m.BufferEvents.Set(float64(r.held.batcherEvents.Load() + r.held.writingEvents.Load()))
	r.m.BufferBytes.Set(float64(r.held.batcherBytes.Load() + r.held.writingBytes.Load()))
}

// inflight adds to the batches being written.
func (r *Relay) inflight(events, bytes int) {
	r.held.writingEvents.Add(int64(events))
	r.held.writingBytes.Add(int64(bytes))
}

func (r *Relay) add(ctx context.Context, it replication.Item) error {
	if it.End {
		return errEnd
	}
	at := it.At
	if at.IsZero() {
		at = time.Now()
	}
	switch {
	case it.Commit:
		r.batcher.Commit(it.EndLSN, at, it.AfterFlush)
		if it.Backfill {
			// Backfilled rows go in batches of their own (they have no
			// identity; stream batches after them do).
			return r.flush(ctx)
		}
	case it.Backfill:
		if r.batcher.Replaying() {
			// Rows read from the table come first in a session: the slot
			// was (re)created or its backfill resumed, and the recorded
			// ranges are not streamed before them. Rebuilding them would
			// hold the whole backfill in memory.
			r.log.Warn().Msg("backfilling: recorded batches are not rebuilt (ClickHouse may get repeated rows, collapsed through FINAL)")
			r.batcher.Replay(nil)
		}
		r.batcher.AddBackfill(it.Event, at)
	default:
		r.batcher.Add(it.Event, at)
	}
	for r.batcher.Ready() {
		if err := r.flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// replayStall is how long a rebuild may wait for the rest of a recorded
// range while holding events.
const replayStall = 30 * time.Second

// giveUpStalledReplay ends the rebuilding of recorded ranges when the rest
// of the range does not come: the source waits for budget that the
// buffered part of the range holds (the range was recorded under larger
// limits). The events then go into new batches: never lost, possibly
// repeated in ClickHouse.
func (r *Relay) giveUpStalledReplay() {
	if !r.batcher.Replaying() || r.batcher.Len() == 0 {
		return
	}
	r.log.Warn().Int("events", r.batcher.Len()).Int("bytes", r.batcher.Bytes()).
		Msg("the rest of a recorded batch does not come (RELAY_BATCH_BYTES lowered since it was recorded?); batching anew, ClickHouse may get repeated rows")
	r.batcher.Replay(nil)
}

// releaseItems gives back the weight of the events among its.
func (r *Relay) releaseItems(its []replication.Item) {
	r.budget.Give(replication.Events(its))
}

// flushDue flushes a batch whose age limit passed, after taking in what
// is already queued (up to the count and byte limits): the age counts from
// when an event arrived, so a backlog must still make full batches.
func (r *Relay) flushDue(ctx context.Context, items chan []replication.Item) error {
	var end error
	for len(items) > 0 && !r.batcher.Ready() && !r.batcher.Saturated() && end == nil {
		if err := r.addAll(ctx, <-items); errors.Is(err, errEnd) {
			end = err
		} else if err != nil {
			return err
		}
	}
	if err := r.flush(ctx); err != nil {
		return err
	}
	return end
}

// flush cuts a batch and records its range (in batch order), then writes
// it on a sink of its own, up to one batch per sink at once: while
// ClickHouse stores one batch the next is already sent. The completer
// takes the batches in order, waits for each write, deletes and
// acknowledges: acks stay in LSN order however the writes finish.
func (r *Relay) flush(ctx context.Context) error {
	if !r.batcher.Pending() {
		return nil
	}
	b := r.batcher.Cut()
	if len(b.Events) == 0 && b.AckLSN == 0 && len(b.AfterFlush) == 0 {
		return nil
	}
	// The batch is held until ClickHouse accepted it (the "relay stuck"
	// runbook reads these while the sink is down). The batcher's share is
	// read again now: flush may wait for a backfill's batch to complete
	// below, and the write's end must not leave the cut events counted.
	r.inflight(len(b.Events), b.Bytes)
	r.gaugeBuffer()
	started := false
	defer func() {
		if !started { // whatever happens, these leave memory
			r.release(b.Events)
			r.inflight(-len(b.Events), -b.Bytes)
		}
		r.gaugeBuffer()
	}()
	tctx, finish := r.spans(ctx, "flush", map[string]string{"events": strconv.Itoa(len(b.Events))})
	start := time.Now()
	id, err := r.identify(tctx, b)
	if err != nil {
		finish()
		return err
	}
	r.fp.Hit(failpoint.AfterPending)
	sink, err := r.takeSink(ctx)
	if err != nil {
		finish()
		return err
	}
	wctx, cancel := context.WithCancel(tctx)
	w := written{ids: deletableIDs(b.Events), events: len(b.Events), ackLSN: b.AckLSN, afterFlush: b.AfterFlush,
		bytes: b.Bytes, ctx: tctx, finish: finish, rng: id.rng, result: make(chan outcome, 1), cancel: cancel}
	if len(b.AfterFlush) > 0 {
		w.completed = make(chan struct{})
	}
	if err := r.done.put(ctx, w); err != nil { // put ends the span on failure
		cancel()
		r.sinks <- sink
		return err
	}
	started = true
	done := r.done
	go func() {
		err := r.writeBatch(wctx, sink, b, id, start)
		took := time.Since(start)
		r.release(b.Events)
		r.inflight(-len(b.Events), -b.Bytes)
		r.setBufferGauges()
		w.result <- outcome{err: err, took: took}
		if err != nil {
			// The completer ends the session on this error: no other
			// batch is to be written on this sink meanwhile.
			<-done.failed
		}
		r.sinks <- sink
	}()
	if w.completed != nil {
		// The end of a backfill clears the slot's backfill marker: no
		// stream batch is recorded before that. A relay that died in
		// between would deliver the table again on restart, and a resumed
		// backfill does not rebuild recorded batches (they would repeat).
		select {
		case <-w.completed:
		case <-done.failed:
			return done.err
		case <-ctx.Done():
			return fmt.Errorf("wait for the backfill's batch: %w", ctx.Err())
		}
	}
	return nil
}

// takeSink waits for a sink that is not writing.
func (r *Relay) takeSink(ctx context.Context) (Sink, error) {
	select {
	case s := <-r.sinks:
		return s, nil
	case <-r.done.failed:
		return nil, r.done.err
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a free sink: %w", ctx.Err())
	}
}

// writeBatch writes b on sink (unless its record says ClickHouse has it),
// dead-letters what the sink rejected for its content, and reports the
// write. It runs on a goroutine of its own; its error reaches the
// completer.
func (r *Relay) writeBatch(ctx context.Context, sink Sink, b batch.Batch, id identity, start time.Time) error {
	var rejected []deadletter.Rejected
	var err error
	if !id.done && len(b.Events) > 0 {
		wctx, wdone := r.spans(ctx, "sink.write", nil)
		rejected, err = r.write(wctx, sink, b.Events, id.token, id.relayedAt)
		wdone()
	}
	if err == nil && len(rejected) == len(b.Events) && len(rejected) >= wholeBatchRejected {
		// Every event of a sizeable batch refused for its content points
		// at the table, not the data: stop instead of dead-lettering all.
		err = retry.Permanent(fmt.Errorf("the sink rejected every one of %d events; not dead-lettering a whole batch (check the event_log schema): %w",
			len(rejected), rejected[0].Err))
	}
	if err != nil {
		if retry.IsPermanent(err) {
			r.m.SinkErrorsTotal.WithLabelValues(metrics.SinkErrorFatal).Inc()
		}
		return fmt.Errorf("write batch of %d events: %w", len(b.Events), err)
	}
	if err := r.deadLetter(ctx, rejected); err != nil {
		return err
	}
	r.m.SetClickHouseUp(true)
	r.health(nil)
	r.observe(b, time.Since(start))
	r.fp.Hit(failpoint.AfterSinkWrite)
	return nil
}

// deletableIDs are the ids of the events that have an outbox row to delete:
// those a logical decoding message carried have none.
func deletableIDs(evs []event.Event) [][16]byte {
	ids := make([][16]byte, 0, len(evs))
	for i := range evs {
		if !evs[i].FromMessage {
			ids = append(ids, evs[i].ID)
		}
	}
	return ids
}

// identity is how a batch is written: with the token of its range, and
// relayed_at from its record (so that a rebuilt block is byte-identical).
type identity struct {
	token     string
	relayedAt time.Time
	rng       *batch.Range // recorded range, marked done with the delete
	done      bool         // the record says ClickHouse has it already
}

// identify records b's range as pending before it is written, unless the
// batch rebuilds a recorded range (then the record gives its relayed_at,
// and says whether it was done). Batches without a range (backfilled rows)
// get no identity: a replay of them may repeat rows, which
// ReplacingMergeTree collapses.
func (r *Relay) identify(ctx context.Context, b batch.Batch) (identity, error) {
	id := identity{relayedAt: time.Now().UTC().Truncate(time.Second)}
	if !b.Identified || r.batches == nil || len(b.Events) == 0 {
		return id, nil
	}
	rng := b.Range
	id.token, id.rng = rng.Token(r.batches.Slot()), &rng
	if rec, ok := r.replay[rng.First]; ok {
		delete(r.replay, rng.First)
		if rec.Range == rng {
			id.relayedAt, id.done = rec.RelayedAt, rec.Done
			r.log.Info().Str("batch", id.token).Bool("done", rec.Done).Int("events", len(b.Events)).
				Msg("rebuilt a recorded batch; writing it again with the same identity")
			return id, nil
		}
		r.log.Warn().Str("recorded", rec.Range.Token(r.batches.Slot())).Str("rebuilt", id.token).
			Msg("a recorded batch came out different; writing it as a new batch (ReplacingMergeTree collapses repeats)")
	}
	rec := batchlog.Record{Range: rng, Events: len(b.Events), RelayedAt: id.relayedAt}
	err := retry.Do(ctx, r.cfg.Backoff, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		return r.batches.Pending(actx, rec)
	}, func(err error, wait time.Duration) {
		r.log.Warn().Err(err).Dur("retry_in", wait).Msg("recording the batch as pending failed; retrying")
	})
	if err != nil {
		return id, fmt.Errorf("record batch %s: %w", id.token, err)
	}
	return id, nil
}

// written is a batch on its way through the sink to cleanup and ack.
type written struct {
	// result is the write's outcome (nil: the sink accepted the batch);
	// cancel stops the write when the batch will not be completed.
	result chan outcome
	cancel context.CancelFunc

	ids        [][16]byte // of outbox rows to delete
	events     int
	rng        *batch.Range // recorded range to mark done with the delete
	ackLSN     uint64
	afterFlush []func(context.Context) error
	completed  chan struct{} // closed once completed, when flush waits for it
	bytes      int
	ctx        context.Context // carries the flush span
	finish     func()          // ends the flush span
}

// outcome is a write's result and how long it took (with the recording of
// its range).
type outcome struct {
	err  error
	took time.Duration
}

// completer waits for each batch's write, deletes its rows and then
// acknowledges it, one batch at a time and in order, on its own goroutine:
// the next batches are written to the sink while the previous one is
// deleted, so the drain rate is the slowest step's instead of their sum.
// Acks stay in LSN order because there is one completer and its queue is
// FIFO.
type completer struct {
	queue  chan written
	failed chan struct{} // closed when a completion failed; err says why
	err    error
	exited chan struct{}
}

func (r *Relay) startCompleter(ctx context.Context) *completer {
	// Room for every batch being written plus one: the writes and the
	// deletes overlap, and it bounds how far acks trail the sink.
	c := &completer{queue: make(chan written, cap(r.sinks)+1), failed: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(c.exited)
		for w := range c.queue {
			res := <-w.result
			w.cancel()
			err := res.err
			if err == nil {
				err = r.complete(ctx, w, res.took)
			}
			w.finish()
			if err == nil && w.completed != nil {
				close(w.completed)
			}
			if err != nil {
				c.err = err
				close(c.failed)
				for w := range c.queue { // not confirmed: streamed again
					w.cancel()
					<-w.result // no write outlives the session
					w.finish()
				}
				return
			}
		}
	}()
	return c
}

// put queues a written batch; it waits while the queue is full.
func (c *completer) put(ctx context.Context, w written) error {
	select {
	case <-c.failed:
		w.finish()
		return c.err
	default:
	}
	select {
	case c.queue <- w:
		return nil
	case <-c.failed:
		w.finish()
		return c.err
	case <-ctx.Done():
		w.finish()
		return fmt.Errorf("queue batch for cleanup: %w", ctx.Err())
	}
}

// close waits until every queued batch is completed (or one failed).
func (c *completer) close() error {
	close(c.queue)
	<-c.exited
	return c.err
}

// complete deletes a written batch's rows, then confirms its LSN.
func (r *Relay) complete(ctx context.Context, w written, took time.Duration) error {
	// Delete, then confirm. Both only after the sink said yes; in this
	// order a crash between the two replays the batch from the slot
	// (invisible through the FINAL read path) instead of leaving delivered
	// rows in the outbox table that no stream would ever bring back.
	dctx, ddone := r.spans(w.ctx, "outbox.delete", nil)
	err := r.cleanup(dctx, w.ids, w.rng)
	ddone()
	if err != nil {
		// Not confirmed: the batch is replayed (invisible through the read
		// path) rather than its rows left behind.
		return err
	}
	r.fp.Hit(failpoint.AfterDelete)
	if w.ackLSN > 0 {
		_, adone := r.spans(w.ctx, "lsn.ack", map[string]string{"lsn": pglogrepl.LSN(w.ackLSN).String()})
		r.tracker.Flushed(w.ackLSN)
		r.m.AckedLSN.Set(float64(w.ackLSN))
		r.m.LastAckTimestamp.SetToCurrentTime()
		adone()
	}
	for _, f := range w.afterFlush {
		if err := f(ctx); err != nil {
			return fmt.Errorf("after flush: %w", err)
		}
	}
	r.log.Info().Int("events", w.events).Int("bytes", w.bytes).Dur("took", took).
		Str("acked_lsn", pglogrepl.LSN(w.ackLSN).String()).Msg("flushed")
	return nil
}

// write stores evs, retrying retryable errors until ctx ends. When the sink
// rejects the content of some events, it bisects the batch to isolate them
// and returns them as rejected; the rest is written. A batch whose every
// event is rejected points at the schema, not the data: that stops the relay.
//
// A half of a bisected batch has a token of its own derived from the
// batch's: the halves are the same on every replay.
func (r *Relay) write(ctx context.Context, sink Sink, evs []event.Event, token string, relayedAt time.Time) ([]deadletter.Rejected, error) {
	err := retry.Do(ctx, r.cfg.Backoff, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, sinkAttemptTimeout)
		defer cancel()
		return sink.WriteBatch(actx, evs, token, relayedAt)
	}, func(err error, wait time.Duration) {
		r.m.SinkErrorsTotal.WithLabelValues(metrics.SinkErrorRetryable).Inc()
		r.m.SetClickHouseUp(false)
		r.health(err)
		r.log.Warn().Err(err).Int("events", len(evs)).Dur("retry_in", wait).Msg("sink write failed; retrying")
	})
	if err == nil || !errors.Is(err, event.ErrRejected) {
		return nil, err
	}
	if len(evs) == 1 {
		return []deadletter.Rejected{{Event: evs[0], Err: err}}, nil
	}
	half := func(h string) string {
		if token == "" {
			return ""
		}
		return token + "#" + h
	}
	left, err := r.write(ctx, sink, evs[:len(evs)/2], half("0"), relayedAt)
	if err != nil {
		return nil, err
	}
	right, err := r.write(ctx, sink, evs[len(evs)/2:], half("1"), relayedAt)
	if err != nil {
		return nil, err
	}
	return append(left, right...), nil
}

// deadLetter stores rejected events before their rows leave the outbox.
func (r *Relay) deadLetter(ctx context.Context, rs []deadletter.Rejected) error {
	if len(rs) == 0 {
		return nil
	}
	err := retry.Do(ctx, r.cfg.Backoff, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		return r.dead.Put(actx, rs)
	},
		func(err error, wait time.Duration) {
			r.log.Warn().Err(err).Dur("retry_in", wait).Msg("storing rejected events failed; retrying")
		})
	if err != nil {
		return fmt.Errorf("dead-letter %d events: %w", len(rs), err)
	}
	for _, rj := range rs {
		r.log.Error().Str("event_id", uuid.UUID(rj.Event.ID).String()).Str("event_type", rj.Event.Type).Err(rj.Err).
			Msg("event rejected by the sink; moved to outbox_dead_letter")
	}
	r.m.SinkErrorsTotal.WithLabelValues(metrics.SinkErrorRejected).Add(float64(len(rs)))
	r.m.DeadLetterEventsTotal.Add(float64(len(rs)))
	return nil
}

func (r *Relay) observe(b batch.Batch, took time.Duration) {
	if len(b.Events) == 0 {
		return
	}
	now := time.Now()
	r.m.EventsTotal.Add(float64(len(b.Events)))
	r.m.BytesTotal.Add(float64(b.Bytes))
	r.m.BatchesTotal.Inc()
	r.m.BatchEvents.Observe(float64(len(b.Events)))
	r.m.FlushDuration.Observe(took.Seconds())
	r.m.LastFlushTimestamp.Set(float64(now.UnixNano()) / 1e9)
	r.m.LastFlushEvents.Set(float64(len(b.Events)))
	r.m.LastFlushBytes.Set(float64(b.Bytes))
	var last time.Time
	for i := range b.Events {
		// One observation per transaction keeps this off the per-event path.
		if ct := b.Events[i].CommitTime; !ct.IsZero() && !ct.Equal(last) {
			r.m.EndToEndLag.Observe(now.Sub(ct).Seconds())
			last = ct
		}
	}
}

// cleanup deletes the delivered rows, retrying until ctx ends.
func (r *Relay) cleanup(ctx context.Context, ids [][16]byte, done *batch.Range) error {
	if len(ids) == 0 && done == nil {
		return nil
	}
	var n int64
	err := retry.Do(ctx, r.cfg.Backoff, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		var err error
		n, err = r.clean.Delete(actx, ids, done)
		return err
	}, func(err error, wait time.Duration) {
		r.log.Warn().Err(err).Dur("retry_in", wait).Msg("deleting delivered rows failed; retrying")
	})
	if err != nil {
		return fmt.Errorf("delete %d delivered rows: %w", len(ids), err)
	}
	r.m.RowsDeletedTotal.Add(float64(n))
	return nil
}

// drain runs on shutdown: it takes the items the source still hands over
// (up to its End item: the source completes an open transaction first), then
// flushes the complete transactions, all within work's grace period.
// items is nil when End was already seen.
func (r *Relay) drain(work context.Context, items chan []replication.Item, srcDone chan error) error {
	for done := items == nil; !done; {
		select {
		case its := <-items:
			if err := r.addAll(work, its); errors.Is(err, errEnd) {
				done = true
			} else if err != nil {
				return err
			}
		case err := <-srcDone:
			srcDone <- err
			for len(items) > 0 {
				if err := r.addAll(work, <-items); errors.Is(err, errEnd) {
					break
				} else if err != nil {
					return err
				}
			}
			done = true
		case <-work.Done():
			done = true
		}
	}
	if r.batcher.Replaying() {
		// Stopping inside a recorded range: it is rebuilt on the next
		// start; a batch cut short here would be a different one.
		return nil
	}
	r.release(r.batcher.DropUncommitted())
	if err := r.flush(work); err != nil {
		return fmt.Errorf("flush on shutdown: %w", err)
	}
	return nil
}

// release gives the events' weight back to the budget.
func (r *Relay) release(evs []event.Event) {
	r.budget.Give(event.All(evs))
}
