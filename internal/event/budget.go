package event

import (
	"context"
	"iter"

	"golang.org/x/sync/semaphore"
)

// Budget bounds the bytes of events held between the source and the sink:
// the source takes an event's weight before handing it over, and the relay
// gives it back once the event is written (or dropped). Its capacity is set
// once, here, so taking and giving back always agree on every event's
// weight: a disagreement would leak the budget or panic the semaphore.
type Budget struct {
	capacity int64
	sem      *semaphore.Weighted
}

// NewBudget returns a budget of capacity bytes.
func NewBudget(capacity int64) *Budget {
	return &Budget{capacity: capacity, sem: semaphore.NewWeighted(capacity)}
}

// Capacity is the budget's size in bytes.
func (b *Budget) Capacity() int64 { return b.capacity }

// weight is what ev takes: its size, or the whole budget for an event
// larger than it (so that one huge event still fits, alone).
func (b *Budget) weight(ev *Event) int64 { return min(int64(ev.Size()), b.capacity) }

// TryTake takes ev's weight if the budget has it now.
func (b *Budget) TryTake(ev *Event) bool { return b.sem.TryAcquire(b.weight(ev)) }

// Take waits until the budget has ev's weight and takes it; on error
// (ctx ended) nothing was taken.
func (b *Budget) Take(ctx context.Context, ev *Event) error { return b.sem.Acquire(ctx, b.weight(ev)) }

// Give gives back the weight of each event evs yields, every one of them
// taken before.
func (b *Budget) Give(evs iter.Seq[*Event]) {
	var w int64
	for ev := range evs {
		w += b.weight(ev)
	}
	if w > 0 {
		b.sem.Release(w)
	}
}

// All yields a pointer to each of evs, for Give.
func All(evs []Event) iter.Seq[*Event] {
	return func(yield func(*Event) bool) {
		for i := range evs {
			if !yield(&evs[i]) {
				return
			}
		}
	}
}
