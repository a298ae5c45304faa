package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/batchlog"
	"github.com/outbox-relay/relay/internal/deadletter"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/failpoint"
	"github.com/outbox-relay/relay/internal/metrics"
	"github.com/outbox-relay/relay/internal/retry"
)

// rejectedStreak is how many batches in a row, each wholly rejected by the
// sink, point at the table rather than the data: the relay then says so
// (once per streak). The events go to the dead letters all the same: a
// writer must not be able to stop the stream with data ClickHouse refuses,
// and a replay after the table is fixed loses nothing.
const rejectedStreak = 3

// sinkAttemptTimeout bounds one write of a batch, so that a sink
// connection that stopped answering is given up and retried.
const sinkAttemptTimeout = 2 * time.Minute

// cut cuts a batch and records its range (in batch order), then writes
// it on a sink of its own, up to one batch per sink at once: while
// ClickHouse stores one batch the next is already sent. The completer
// takes the batches in order, waits for each write, deletes and
// acknowledges: acks stay in LSN order however the writes finish.
func (s *session) cut(ctx context.Context) error {
	if !s.batcher.Pending() {
		return nil
	}
	b := s.batcher.Cut()
	if len(b.Events) == 0 && b.AckLSN == 0 && len(b.AfterConfirm) == 0 {
		return nil
	}
	// The batch is held until ClickHouse accepted it (the "relay stuck"
	// runbook reads these while the sink is down). The batcher's share is
	// read again now: cut may wait for a backfill's batch to complete
	// below, and the write's end must not leave the cut events counted.
	s.inflight(len(b.Events), b.Bytes)
	s.gaugeBuffer()
	started := false
	defer func() {
		if !started { // whatever happens, these leave memory
			s.release(b.Events)
			s.inflight(-len(b.Events), -b.Bytes)
		}
		s.gaugeBuffer()
	}()
	tctx, finish := s.spans(ctx, "batch", map[string]string{"events": strconv.Itoa(len(b.Events))})
	start := time.Now()
	id, err := s.identify(tctx, b)
	if err != nil {
		finish()
		return err
	}
	s.fp.Hit(failpoint.AfterPending)
	sink, err := s.takeSink(ctx)
	if err != nil {
		finish()
		return err
	}
	parts, misrouted := s.route(b.Events)
	wctx, cancel := context.WithCancel(tctx)
	w := written{rows: deletableRows(b.Events), events: len(b.Events), ackLSN: b.AckLSN, afterConfirm: b.AfterConfirm,
		bytes: b.Bytes, ctx: tctx, finish: finish, rng: id.rng, result: make(chan outcome, 1), cancel: cancel}
	if len(b.AfterConfirm) > 0 {
		w.completed = make(chan struct{})
	}
	if err := s.done.put(ctx, w); err != nil { // put ends the span on failure
		cancel()
		s.sinks <- sink
		return err
	}
	started = true
	done := s.done
	go func() {
		err := s.writeBatch(wctx, sink, b, parts, misrouted, id, start)
		took := time.Since(start)
		s.release(b.Events)
		s.inflight(-len(b.Events), -b.Bytes)
		s.setBufferGauges()
		w.result <- outcome{err: err, took: took}
		if err != nil {
			// The completer ends the session on this error: no other
			// batch is to be written on this sink meanwhile.
			<-done.failed
		}
		s.sinks <- sink
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
func (s *session) takeSink(ctx context.Context) (Sink, error) {
	select {
	case s := <-s.sinks:
		return s, nil
	case <-s.done.failed:
		return nil, s.done.err
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a free sink: %w", ctx.Err())
	}
}

// identify records b's range as pending before it is written, unless the
// batch rebuilds a recorded range (then the record gives its relayed_at,
// and says whether it was done). Batches without a range (backfilled rows)
// get no identity: a replay of them may repeat rows, which
// ReplacingMergeTree collapses.
func (s *session) identify(ctx context.Context, b batch.Batch) (identity, error) {
	id := identity{relayedAt: time.Now().UTC().Truncate(time.Second)}
	if !b.Identified || s.batches == nil || len(b.Events) == 0 {
		return id, nil
	}
	rng := b.Range
	id.token, id.rng = rng.Token(s.batches.Slot()), &rng
	if rec, ok := s.replay[rng.First]; ok {
		delete(s.replay, rng.First)
		if rec.Range == rng {
			id.relayedAt, id.done = rec.RelayedAt, rec.Done
			s.log.Info().Str("batch", id.token).Bool("done", rec.Done).Int("events", len(b.Events)).
				Msg("rebuilt a recorded batch; writing it again with the same identity")
			return id, nil
		}
		s.log.Warn().Str("recorded", rec.Range.Token(s.batches.Slot())).Str("rebuilt", id.token).
			Msg("a recorded batch came out different; writing it as a new batch (ReplacingMergeTree collapses repeats)")
	}
	rec := batchlog.Record{Range: rng, Events: len(b.Events), RelayedAt: id.relayedAt}
	err := retry.Do(ctx, s.cfg.Backoff, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		return s.batches.Pending(actx, rec)
	}, func(err error, wait time.Duration) {
		s.log.Warn().Err(err).Dur("retry_in", wait).Msg("recording the batch as pending failed; retrying")
	})
	if err != nil {
		return id, fmt.Errorf("record batch %s: %w", id.token, err)
	}
	return id, nil
}

// identity is how a batch is written: with the token of its range, and
// relayed_at from its record (so that a rebuilt block is byte-identical).
type identity struct {
	token     string
	relayedAt time.Time
	rng       *batch.Range // recorded range, marked done with the delete
	done      bool         // the record says ClickHouse has it already
}

// writeBatch writes b's parts on sink, each into its table under the
// batch's token (ClickHouse deduplicates per table: the identity of a part
// is the range and its table), unless its record says ClickHouse has it.
// It dead-letters what no table could take (misrouted), what the source
// could not read and what the sink rejected for its content, and reports
// the write. It runs on a goroutine of its own; its error reaches the
// completer.
func (r *Relay) writeBatch(ctx context.Context, sink Sink, b batch.Batch, parts []part, misrouted []deadletter.Rejected, id identity, start time.Time) error {
	var rejected []deadletter.Rejected
	wrote, refused := 0, 0
	for _, p := range parts {
		evs, undecodable := splitUndecodable(p.events)
		if id.done {
			continue
		}
		for i := range undecodable {
			undecodable[i].Stream = r.routes[undecodable[i].Event.Stream].Stream
		}
		rejected = append(rejected, undecodable...)
		if len(evs) == 0 {
			continue
		}
		wctx, wdone := r.spans(ctx, "sink.write", map[string]string{"table": p.table})
		rj, err := r.write(wctx, sink, p.table, evs, id.token, id.relayedAt)
		wdone()
		if err != nil {
			if retry.IsPermanent(err) {
				r.m.SinkErrorsTotal.WithLabelValues(metrics.SinkErrorFatal).Inc()
			}
			return fmt.Errorf("write batch of %d events into %s: %w", len(b.Events), p.table, err)
		}
		for i := range rj {
			rj[i].Stream, rj[i].Table = r.routes[rj[i].Event.Stream].Stream, p.table
		}
		wrote += len(evs)
		refused += len(rj)
		rejected = append(rejected, rj...)
		r.countWritten(p, len(evs)-len(rj))
	}
	if wrote > 0 {
		r.watchRejections(refused == wrote, rejected)
	}
	if !id.done {
		rejected = append(misrouted, rejected...)
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

// splitUndecodable returns the events to write and, as rejected, those the
// source could not read (they go to the dead letters only). It allocates
// only when there are such events.
func splitUndecodable(evs []event.Event) ([]event.Event, []deadletter.Rejected) {
	i := slices.IndexFunc(evs, func(ev event.Event) bool { return ev.Undecodable != nil })
	if i < 0 {
		return evs, nil
	}
	good := slices.Clone(evs[:i])
	var bad []deadletter.Rejected
	for _, ev := range evs[i:] {
		if ev.Undecodable != nil {
			bad = append(bad, deadletter.Rejected{Event: ev, Err: ev.Undecodable.Err})
		} else {
			good = append(good, ev)
		}
	}
	return good, bad
}

// write stores evs, retrying retryable errors until ctx ends. When the sink
// rejects the content of some events, it bisects the batch to isolate them
// and returns them as rejected; the rest is written.
//
// A half of a bisected batch has a token of its own derived from the
// batch's: the halves are the same on every replay.
func (r *Relay) write(ctx context.Context, sink Sink, table string, evs []event.Event, token string, relayedAt time.Time) ([]deadletter.Rejected, error) {
	err := retry.Do(ctx, r.cfg.Backoff, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, sinkAttemptTimeout)
		defer cancel()
		return sink.WriteBatch(actx, table, evs, token, relayedAt)
	}, func(err error, wait time.Duration) {
		r.m.SinkErrorsTotal.WithLabelValues(metrics.SinkErrorRetryable).Inc()
		r.m.SetClickHouseUp(false)
		r.health(err)
		r.log.Warn().Err(err).Str("table", table).Int("events", len(evs)).Dur("retry_in", wait).Msg("sink write failed; retrying")
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
	left, err := r.write(ctx, sink, table, evs[:len(evs)/2], half("0"), relayedAt)
	if err != nil {
		return nil, err
	}
	right, err := r.write(ctx, sink, table, evs[len(evs)/2:], half("1"), relayedAt)
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
		r.log.Error().Str("event_id", uuid.UUID(rj.Event.ID).String()).Str("event_type", rj.Event.Type).
			Str("stream", rj.Stream).Str("table", rj.Table).Err(rj.Err).
			Msg("event rejected; moved to outbox_dead_letter")
		r.m.StreamDeadLetters.WithLabelValues(rj.Stream).Inc()
	}
	r.m.SinkErrorsTotal.WithLabelValues(metrics.SinkErrorRejected).Add(float64(len(rs)))
	r.m.DeadLetterEventsTotal.Add(float64(len(rs)))
	return nil
}

// watchRejections counts the batches in a row whose every event the sink
// rejected and, at rejectedStreak, says that the table is the likely cause.
func (r *Relay) watchRejections(whole bool, rejected []deadletter.Rejected) {
	if !whole {
		r.wholeRejections.Store(0)
		return
	}
	if r.wholeRejections.Add(1) != rejectedStreak {
		return
	}
	r.log.Error().Int("batches", rejectedStreak).Err(rejected[0].Err).
		Msg("ClickHouse rejected every event of several batches in a row: the table, not the data, is the likely cause; " +
			"the events wait in outbox_dead_letter: fix the table, then `relay deadletter replay --all` (README: Operating: every event rejected)")
}

// deletableRows are the outbox rows of the events that have one: those a
// logical decoding message carried have none.
func deletableRows(evs []event.Event) []event.Row {
	rows := make([]event.Row, 0, len(evs))
	for i := range evs {
		if ev := &evs[i]; !ev.FromMessage {
			rows = append(rows, event.Row{Stream: ev.Stream, ID: ev.ID, Key: ev.Key})
		}
	}
	return rows
}

// countWritten counts the events of p ClickHouse took.
func (r *Relay) countWritten(p part, n int) {
	if n > 0 {
		r.m.StreamEvents.WithLabelValues(r.routes[p.stream].Stream, p.table).Add(float64(n))
	}
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
