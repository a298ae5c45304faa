package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/batchlog"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/replication"
)

// session is the state of one source connection: the loop that takes the
// source's items into batches and hands them to the sinks. It is the
// Relay's goroutine; writes and completions run beside it.
type session struct {
	*Relay
	// replay holds the recorded ranges the stream may bring again, by
	// first position (see loadReplay and identify).
	replay map[batch.Position]batchlog.Record
	// done takes written batches to their deletion and confirmation, in
	// order (see completer).
	done *completer
}

// replayStall is how long a rebuild may wait for the rest of a recorded
// range while holding events.
const replayStall = 30 * time.Second

// run runs one source connection and consumes its items.
func (s *session) run(ctx context.Context) error {
	if err := s.loadReplay(ctx); err != nil {
		return err
	}
	// Room for a whole batch lets the source decode the next batch while
	// this one is written; the byte budget bounds the memory either way.
	items := make(chan []replication.Item, min(max(1024, s.cfg.Policy.MaxEvents), 65536))
	drained := make(chan struct{})
	srcCtx, cancelSrc := context.WithCancel(ctx)
	defer cancelSrc()
	srcDone := make(chan error, 1)
	src := s.newSrc()
	go func() { srcDone <- src.Run(srcCtx, items, drained) }()
	// Writes and deletes already under way are not cut off by shutdown:
	// they get ShutdownGrace after ctx ends.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(s.cfg.ShutdownGrace, cancelWork)
		<-work.Done()
		t.Stop()
	})
	defer stopGrace()
	s.done = s.startCompleter(work)

	err := s.consume(ctx, work, items, srcDone)
	switch {
	case errors.Is(err, errEnd):
		err = s.drain(work, nil, srcDone)
	case ctx.Err() != nil && err == nil:
		err = s.drain(work, items, srcDone)
	}
	// Batches already written are still cleaned up and acknowledged (within
	// the grace period on shutdown) before the source sends its last status.
	if cerr := s.done.close(); err == nil {
		err = cerr
	}
	if !s.batcher.Replaying() {
		s.release(s.batcher.DropUncommitted())
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
		s.releaseItems(<-items)
	}
	s.release(s.batcher.Reset())
	s.gaugeBuffer()
	return err
}

// loadReplay reads the recorded ranges: the stream may bring them again,
// and each must then be rebuilt exactly (see package batch) before normal
// batching goes on.
func (s *session) loadReplay(ctx context.Context) error {
	if s.batches == nil {
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	recs, err := s.batches.Load(actx)
	cancel()
	if err != nil {
		return err
	}
	s.replay = make(map[batch.Position]batchlog.Record, len(recs))
	ranges := make([]batch.Range, len(recs))
	for i, rec := range recs {
		s.replay[rec.Range.First] = rec
		ranges[i] = rec.Range
	}
	s.batcher.Replay(ranges)
	if len(recs) > 0 {
		s.log.Info().Int("batches", len(recs)).Str("first", recs[0].Range.Token(s.batches.Slot())).
			Msg("recorded batches found; rebuilding those the stream brings again")
	}
	return nil
}

// consume is the loop's select: it owns the batch timer.
// ctx ends the loop; work bounds the writes.
func (s *session) consume(ctx, work context.Context, items chan []replication.Item, srcDone chan error) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var due <-chan time.Time
		now := time.Now()
		s.forecast.Store(s.batcher.ExpectedCut(now))
		if d, ok := s.batcher.UntilNext(now); ok {
			timer.Reset(d)
			due = timer.C
		} else if s.batcher.Replaying() && s.batcher.Len() > 0 {
			timer.Reset(replayStall)
			due = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.done.failed:
			return s.done.err
		case err := <-srcDone:
			srcDone <- err // session() reads it again
			// Items already queued are complete messages: keep them.
			for len(items) > 0 {
				if ferr := s.addAll(work, <-items); ferr != nil {
					return ferr
				}
			}
			return err
		case its := <-items:
			if err := s.addAll(work, its); err != nil {
				return err
			}
		case <-due:
			if s.batcher.Replaying() {
				s.giveUpStalledReplay()
				continue
			}
			if err := s.cutDue(work, items); err != nil {
				return err
			}
		}
	}
}

// addAll adds the items of one hand-over from the source. On an error
// the events after the failing item are given back: they are streamed
// again.
func (s *session) addAll(ctx context.Context, its []replication.Item) error {
	for i, it := range its {
		if err := s.add(ctx, it); err != nil {
			s.releaseItems(its[i+1:])
			return err
		}
	}
	s.gaugeBuffer()
	return nil
}

func (s *session) add(ctx context.Context, it replication.Item) error {
	if it.End {
		return errEnd
	}
	at := it.At
	if at.IsZero() {
		at = time.Now()
	}
	switch {
	case it.Commit:
		s.batcher.Commit(it.EndLSN, at, it.AfterConfirm)
		if it.Backfill {
			// Backfilled rows go in batches of their own (they have no
			// identity; stream batches after them do).
			return s.cut(ctx)
		}
	case it.Backfill:
		if s.batcher.Replaying() {
			// Rows read from the table come first in a session: the slot
			// was (re)created or its backfill resumed, and the recorded
			// ranges are not streamed before them. Rebuilding them would
			// hold the whole backfill in memory.
			s.log.Warn().Msg("backfilling: recorded batches are not rebuilt (ClickHouse may get repeated rows, collapsed through FINAL)")
			s.batcher.Replay(nil)
		}
		s.batcher.AddBackfill(it.Event, at)
	default:
		s.batcher.Add(it.Event, at)
	}
	for s.batcher.Ready() {
		if err := s.cut(ctx); err != nil {
			return err
		}
	}
	return nil
}

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

// cutDue cuts a batch whose age limit passed, after taking in what
// is already queued (up to the count and byte limits): the age counts from
// when an event arrived, so a backlog must still make full batches.
func (s *session) cutDue(ctx context.Context, items chan []replication.Item) error {
	var end error
	for len(items) > 0 && !s.batcher.Ready() && !s.batcher.Saturated() && end == nil {
		if err := s.addAll(ctx, <-items); errors.Is(err, errEnd) {
			end = err
		} else if err != nil {
			return err
		}
	}
	if err := s.cut(ctx); err != nil {
		return err
	}
	return end
}

// drain runs on shutdown: it takes the items the source still hands over
// (up to its End item: the source completes an open transaction first), then
// cuts and completes the complete transactions, all within work's grace period.
// items is nil when End was already seen.
func (s *session) drain(work context.Context, items chan []replication.Item, srcDone chan error) error {
	for done := items == nil; !done; {
		select {
		case its := <-items:
			if err := s.addAll(work, its); errors.Is(err, errEnd) {
				done = true
			} else if err != nil {
				return err
			}
		case err := <-srcDone:
			srcDone <- err
			for len(items) > 0 {
				if err := s.addAll(work, <-items); errors.Is(err, errEnd) {
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
	if s.batcher.Replaying() {
		// Stopping inside a recorded range: it is rebuilt on the next
		// start; a batch cut short here would be a different one.
		return nil
	}
	s.release(s.batcher.DropUncommitted())
	if err := s.cut(work); err != nil {
		return fmt.Errorf("cut on shutdown: %w", err)
	}
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

// releaseItems gives back the weight of the events among its.
func (r *Relay) releaseItems(its []replication.Item) {
	r.budget.Give(replication.Events(its))
}

// release gives the events' weight back to the budget.
func (r *Relay) release(evs []event.Event) {
	r.budget.Give(event.All(evs))
}
