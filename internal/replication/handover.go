package replication

import (
	"context"
	"time"

	"github.com/outbox-relay/relay/internal/event"
)

// maxQueued is the most items handed over in one send.
const maxQueued = 256

// handover is how items reach the consumer: the items queued and not yet
// handed over, the channel they go out on, and the budget their events
// take. One per session (Run), used by the replication goroutine only.
//
// Its waits (out full, budget spent) are bounded by the context its
// methods get: the one handoverContext makes, which outlives a shutdown
// by up to DrainTimeout so that no decoded item is dropped half-way. While
// it waits, keepAlive runs every keepAliveEvery so that wal_sender_timeout
// does not end the stream.
type handover struct {
	out    chan<- []Item
	budget *event.Budget
	// queued are the items not handed over yet; lastQueued is how many
	// the last hand-over had.
	queued     []Item
	lastQueued int
	// keepAlive sends a status update on the session's connection; nil
	// before the stream starts (backfill) and once it ended (end).
	keepAlive      func(context.Context) error
	keepAliveEvery time.Duration
}

func newHandover(out chan<- []Item, budget *event.Budget, keepAliveEvery time.Duration) *handover {
	return &handover{out: out, budget: budget, keepAliveEvery: keepAliveEvery}
}

// handoverContext is the context hand-overs wait under: it ends when the
// consumer is gone (drained closed) or drainTimeout after ctx ended, not
// at once on shutdown, so that the consumer still gets what was decoded
// and the End item. stop releases it.
func handoverContext(ctx context.Context, drained <-chan struct{}, drainTimeout time.Duration) (hctx context.Context, stop func()) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopOnShutdown := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(drainTimeout, cancel)
		<-hctx.Done()
		t.Stop()
	})
	go func() {
		select {
		case <-drained:
			cancel()
		case <-hctx.Done():
		}
	}()
	return hctx, func() {
		stopOnShutdown()
		cancel()
	}
}

// take takes ev's weight from the budget, waiting while it is spent; the
// consumer gives it back once the event is written or dropped.
func (h *handover) take(ctx context.Context, ev *event.Event) error {
	for !h.budget.TryTake(ev) {
		// The budget is spent: hand over what is queued first, or the
		// consumer could wait for it while this waits for the budget.
		if err := h.send(ctx); err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, h.keepAliveEvery)
		err := h.budget.Take(actx, ev)
		cancel()
		if err == nil {
			break
		}
		// Take failed: the weight was not taken; loop to TryTake again.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Budget still spent (the sink is slow or down): stay alive.
		if h.keepAlive != nil {
			if err := h.keepAlive(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// put queues it (an event's weight already taken) and hands the queue over
// once it is full. The caller hands it over earlier where the item's
// meaning asks for it (send): the stream's transactions go when it caught
// up (see gather), one channel send and one wake-up of the consumer per
// read of the network rather than per transaction.
func (h *handover) put(ctx context.Context, it Item) error {
	if h.queued == nil {
		// Sized like the last hand-over: one allocation, not a doubling
		// series (the consumer keeps the slice it was handed).
		h.queued = make([]Item, 0, min(max(h.lastQueued, 16), maxQueued))
	}
	h.queued = append(h.queued, it)
	if len(h.queued) >= maxQueued {
		return h.send(ctx)
	}
	return nil
}

// send hands the queued items over, keeping the stream alive while out is
// full. On failure (the consumer is gone, or the drain timed out) they are
// dropped, their weight given back.
func (h *handover) send(ctx context.Context) error {
	if len(h.queued) == 0 {
		return nil
	}
	its := h.queued
	h.lastQueued = len(its)
	select {
	case h.out <- its:
		h.queued = nil
		return nil
	default:
	}
	t := time.NewTicker(h.keepAliveEvery)
	defer t.Stop()
	for {
		select {
		case h.out <- its:
			h.queued = nil
			return nil
		case <-ctx.Done():
			h.drop()
			return ctx.Err()
		case <-t.C:
			if h.keepAlive != nil {
				if err := h.keepAlive(ctx); err != nil {
					h.drop()
					return err
				}
			}
		}
	}
}

// end hands over what is queued and the End item: nothing follows. The
// stream reads no more, so nothing is kept alive from here; the final
// status update follows once the consumer drained.
func (h *handover) end(ctx context.Context) error {
	h.keepAlive = nil
	if err := h.put(ctx, Item{End: true, At: time.Now()}); err != nil {
		return err
	}
	return h.send(ctx)
}

// drop gives back the weight of queued events that will never be handed
// over.
func (h *handover) drop() {
	h.budget.Give(Events(h.queued))
	h.queued = nil
}
