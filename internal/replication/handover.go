package replication

import (
	"context"
	"time"

	"github.com/outbox-relay/relay/internal/event"
)

// maxQueued is the most items handed over in one send.
const maxQueued = 256

// emitEvent takes the event's weight from the budget, then queues it.
func (s *Source) emitEvent(ctx context.Context, st *stream, out chan<- []Item, ev event.Event) error {
	return s.emitItem(ctx, st, out, Item{Event: ev})
}

// emitBackfill is emitEvent for a row read from the table.
func (s *Source) emitBackfill(ctx context.Context, out chan<- []Item, ev event.Event) error {
	return s.emitItem(ctx, nil, out, Item{Event: ev, Backfill: true})
}

func (s *Source) emitItem(ctx context.Context, st *stream, out chan<- []Item, it Item) error {
	for !s.budget.TryTake(&it.Event) {
		// The budget is spent: hand over what is queued first, or the
		// consumer could wait for it while this waits for the budget.
		if err := s.send(ctx, st, out); err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, s.cfg.StatusInterval/2)
		err := s.budget.Take(actx, &it.Event)
		cancel()
		if err == nil {
			break
		}
		// Acquire failed: its weight was not taken; loop to TryAcquire again.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Budget still full (the sink is slow or down): stay alive.
		if st != nil {
			if err := st.sendStatus(ctx, false); err != nil {
				return err
			}
		}
	}
	return s.emit(ctx, st, out, it)
}

// emit queues it and hands the queue over when it is full, at the end of
// the stream, and at the end of a transaction that is not streamed (the
// backfill) or after which the stream stops. The stream's transactions are
// otherwise handed over when it caught up (see gather): one channel send,
// one wake-up of the consumer, per read of the network rather than per
// transaction.
func (s *Source) emit(ctx context.Context, st *stream, out chan<- []Item, it Item) error {
	if st != nil {
		it.At = st.received
	} else {
		it.At = time.Now()
	}
	if s.queued == nil {
		// Sized like the last hand-over: one allocation, not a doubling
		// series (the consumer keeps the slice it was handed).
		s.queued = make([]Item, 0, min(max(s.lastQueued, 16), maxQueued))
	}
	s.queued = append(s.queued, it)
	if it.End || len(s.queued) >= maxQueued || it.Commit && (st == nil || st.sock == nil || st.untilCommit) {
		return s.send(ctx, st, out)
	}
	return nil
}

// send hands the queued items over, keeping the stream alive while out is
// full. On failure (the consumer is gone) they are dropped, their weight
// given back.
func (s *Source) send(ctx context.Context, st *stream, out chan<- []Item) error {
	if len(s.queued) == 0 {
		return nil
	}
	its := s.queued
	s.lastQueued = len(its)
	select {
	case out <- its:
		s.queued = nil
		return nil
	default:
	}
	t := time.NewTicker(s.cfg.StatusInterval / 2)
	defer t.Stop()
	for {
		select {
		case out <- its:
			s.queued = nil
			return nil
		case <-ctx.Done():
			s.dropQueued()
			return ctx.Err()
		case <-t.C:
			if st != nil {
				if err := st.sendStatus(ctx, false); err != nil {
					s.dropQueued()
					return err
				}
			}
		}
	}
}

// dropQueued gives back the weight of queued events that will never be
// handed over.
func (s *Source) dropQueued() {
	s.budget.Give(Events(s.queued))
	s.queued = nil
}

// end tells the consumer no item follows, then waits until it drained.
func (s *Source) end(out chan<- []Item, drained <-chan struct{}) {
	if err := s.emit(s.emitCtx, nil, out, Item{End: true}); err != nil {
		return // the consumer is gone or the drain timed out
	}
	select {
	case <-drained:
	case <-s.emitCtx.Done():
		s.log.Warn().Dur("timeout", s.cfg.DrainTimeout).Msg("consumer did not drain in time; confirming what it flushed so far")
	}
}
