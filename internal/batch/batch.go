// Package batch buffers events until a count, byte or age limit is reached.
//
// A Batcher has no goroutines and reads no clock: the caller passes the time
// in and owns the timer (see UntilNext), so tests drive time explicitly.
// A Batcher is not safe for concurrent use.
//
// Transactions may span batches. A batch carries AckLSN: the end LSN of the
// last transaction that is completely contained in this and earlier batches.
// Only that position may be acknowledged once the batch is in the sink.
package batch

import (
	"context"
	"slices"
	"time"

	"github.com/outbox-relay/relay/internal/event"
)

// Policy says when a batch is full. A zero MaxEvents or MaxBytes disables
// that limit; a zero MaxAge makes every non-empty batch due at once.
type Policy struct {
	MaxEvents int
	MaxBytes  int
	MaxAge    time.Duration
}

// Batch is what the sink is asked to write.
type Batch struct {
	Events []event.Event
	Bytes  int
	// AckLSN is the end LSN of the last complete transaction covered once
	// this batch is written; zero when the batch completes no transaction.
	AckLSN uint64
	// AfterFlush are the callbacks of the commits in this batch, to run
	// once it is written.
	AfterFlush []func(context.Context) error
}

// Batcher accumulates events and commit positions.
type Batcher struct {
	policy  Policy
	events  []event.Event
	bytes   int
	first   time.Time // when the oldest buffered item arrived
	pending bool      // something (events or a commit) awaits a flush
	ackLSN  uint64
	// committed is how many buffered events belong to complete transactions.
	committed      int
	committedBytes int
	afterFlush     []func(context.Context) error
}

// New returns an empty Batcher.
func New(p Policy) *Batcher {
	return &Batcher{policy: p}
}

// Add buffers ev and reports whether the batch is now full.
func (b *Batcher) Add(ev event.Event, now time.Time) (full bool) {
	b.touch(now)
	b.events = append(b.events, ev)
	b.bytes += ev.Size()
	return b.Full(now)
}

// Commit records that the transaction ending at endLSN is complete: every
// event of it has been added. Optional after callbacks travel with the batch.
func (b *Batcher) Commit(endLSN uint64, now time.Time, after ...func(context.Context) error) {
	for _, f := range after {
		if f != nil {
			b.afterFlush = append(b.afterFlush, f)
		}
	}
	b.touch(now)
	if endLSN > b.ackLSN {
		b.ackLSN = endLSN
	}
	b.committed, b.committedBytes = len(b.events), b.bytes
}

// DropUncommitted removes the events of the transaction still open (its
// stream broke or the relay is stopping; it will be streamed again from the
// acknowledged position) and returns them.
func (b *Batcher) DropUncommitted() []event.Event {
	tail := slices.Clone(b.events[b.committed:])
	clear(b.events[b.committed:]) // let the dropped payloads be collected
	b.events = b.events[:b.committed]
	b.bytes = b.committedBytes
	if len(b.events) == 0 && b.ackLSN == 0 {
		b.pending = false
	}
	return tail
}

func (b *Batcher) touch(now time.Time) {
	if !b.pending {
		b.pending = true
		b.first = now
	}
}

// Full reports whether any limit is reached.
func (b *Batcher) Full(now time.Time) bool {
	if !b.pending {
		return false
	}
	p := b.policy
	return (p.MaxEvents > 0 && len(b.events) >= p.MaxEvents) ||
		(p.MaxBytes > 0 && b.bytes >= p.MaxBytes) ||
		now.Sub(b.first) >= p.MaxAge
}

// Saturated reports whether the count or byte limit is reached (the age
// limit aside): nothing more should be added before a flush.
func (b *Batcher) Saturated() bool {
	p := b.policy
	return (p.MaxEvents > 0 && len(b.events) >= p.MaxEvents) ||
		(p.MaxBytes > 0 && b.bytes >= p.MaxBytes)
}

// UntilNext is how long until the age limit fires; ok is false when nothing
// is buffered and no timer is needed.
func (b *Batcher) UntilNext(now time.Time) (d time.Duration, ok bool) {
	if !b.pending {
		return 0, false
	}
	d = b.policy.MaxAge - now.Sub(b.first)
	if d < 0 {
		d = 0
	}
	return d, true
}

// Len is the number of buffered events.
func (b *Batcher) Len() int { return len(b.events) }

// Bytes is the size of the buffered events.
func (b *Batcher) Bytes() int { return b.bytes }

// Pending reports whether a flush would produce anything (events or an
// acknowledgeable commit).
func (b *Batcher) Pending() bool { return b.pending }

// Flush hands out the buffered batch and resets the Batcher. The returned
// slice is owned by the caller.
func (b *Batcher) Flush() Batch {
	out := Batch{Events: b.events, Bytes: b.bytes, AckLSN: b.ackLSN, AfterFlush: b.afterFlush}
	b.afterFlush = nil
	b.events = make([]event.Event, 0, cap(b.events))
	b.bytes, b.committed, b.committedBytes = 0, 0, 0
	b.pending = false
	b.ackLSN = 0
	return out
}
