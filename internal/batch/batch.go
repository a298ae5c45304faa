// Package batch buffers events until a count, byte or age limit is reached
// and cuts them into batches that a crashed relay can rebuild exactly.
//
// A Batcher has no goroutines and reads no clock: the caller passes the time
// in and owns the timer (see UntilNext), so tests drive time explicitly.
// A Batcher is not safe for concurrent use.
//
// Batches are runs of whole transactions. Each is identified by a Range:
// the positions (commit LSN, index of the event in its transaction) of its
// first and last event. The stream brings the same events in the same
// order on every replay, so a Range names the same events forever and a
// batch rebuilt for it (see Replay) is the same batch.
//
// A transaction alone larger than the count or byte limit is cut into
// parts: every MaxEvents events or MaxBytes bytes counted from the
// transaction's first event, so the cuts fall on the same events on every
// replay (as long as the limits are unchanged). A part completes no
// transaction: its AckLSN is zero until the part that holds the commit.
//
// A batch carries AckLSN: the end LSN of the last transaction it completes.
// Only that position may be acknowledged once the batch is in the sink.
package batch

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
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

// Position is where an event is in the stream: the commit LSN of its
// transaction and its index among the transaction's events.
type Position struct {
	LSN   uint64
	Index int
}

// Less orders positions as the stream does.
func (p Position) Less(q Position) bool {
	return p.LSN < q.LSN || p.LSN == q.LSN && p.Index < q.Index
}

func (p Position) String() string {
	return fmt.Sprintf("%X/%X.%d", p.LSN>>32, uint32(p.LSN), p.Index)
}

// Range identifies a batch: its first and last event. EndsTx says the last
// event is the last of its transaction (the batch holds the commit).
type Range struct {
	First, Last Position
	EndsTx      bool
}

// Token is the batch's identity as the sink's deduplication sees it:
// slot:first:last, e.g. "outbox:0/16B3748.0:0/16B9F00.4".
func (r Range) Token(slot string) string {
	return slot + ":" + r.First.String() + ":" + r.Last.String()
}

// Batch is what the sink is asked to write.
type Batch struct {
	Events []event.Event
	Bytes  int
	// AckLSN is the end LSN of the last complete transaction covered once
	// this batch is written; zero when the batch completes no transaction.
	AckLSN uint64
	// AfterConfirm are the callbacks of the commits in this batch, to run
	// once it is written.
	AfterConfirm []func(context.Context) error
	// Range identifies the events when Identified: they came from the
	// stream. Backfilled rows (read from the table) have no stable
	// position, and a batch without events needs none.
	Range      Range
	Identified bool
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
	afterConfirm   []func(context.Context) error

	// Positions. head is the index in its transaction of events[0];
	// lastCommitted is the position of events[committed-1].
	head          int
	lastCommitted Position
	// txIndex counts the open transaction's events so far (also those
	// already cut into parts); tailAt is when its first buffered one came.
	txIndex int
	tailAt  time.Time
	// Backfilled rows among the committed events / in the open transaction.
	committedAnon, txAnon bool

	// Replay: ranges to cut exactly, in order (see Replay).
	targets     []Range
	ready       bool // a replayed range is complete: Cut it
	cutAtCommit bool // a replayed range is complete at the next commit
	skipped     int
}

// New returns an empty Batcher.
func New(p Policy) *Batcher {
	return &Batcher{policy: p}
}

// Replay makes the next batches exactly ranges (in stream order): until
// they are cut, the count, byte and age limits are ignored and a batch is
// Ready when the last event of the next range arrived (with its commit,
// when the range ends a transaction). A range the stream passes without
// ever reaching its last event is given up (see Skipped).
//
// Replay(nil) gives up the ranges left, also one whose last event came
// and whose commit is awaited.
func (b *Batcher) Replay(ranges []Range) {
	b.skipped += len(b.targets)
	if b.cutAtCommit {
		b.skipped++
	}
	b.targets, b.cutAtCommit = slices.Clone(ranges), false
}

// Skipped is how many replayed ranges the stream passed without reaching
// their last event (their events went into batches of their own).
func (b *Batcher) Skipped() int { return b.skipped }

// Replaying reports whether replayed ranges remain to be cut.
func (b *Batcher) Replaying() bool { return len(b.targets) > 0 || b.ready || b.cutAtCommit }

// Add buffers ev and reports whether a batch is Ready.
func (b *Batcher) Add(ev event.Event, now time.Time) (ready bool) {
	return b.add(ev, now, false)
}

// AddBackfill buffers a row read from the table rather than the stream:
// the batches holding it are not Identified.
func (b *Batcher) AddBackfill(ev event.Event, now time.Time) (ready bool) {
	return b.add(ev, now, true)
}

func (b *Batcher) add(ev event.Event, now time.Time, anon bool) bool {
	b.touch(now)
	if len(b.events) == b.committed {
		b.tailAt = now
	}
	if len(b.events) == 0 {
		b.head = b.txIndex
	}
	pos := Position{LSN: ev.CommitLSN, Index: b.txIndex}
	b.txIndex++
	b.txAnon = b.txAnon || anon
	b.events = append(b.events, ev)
	b.bytes += ev.Size()
	if !anon {
		b.aim(pos)
	}
	return b.Ready()
}

// aim checks the replayed ranges against the event just added at pos.
func (b *Batcher) aim(pos Position) {
	for len(b.targets) > 0 && b.targets[0].Last.Less(pos) {
		b.targets = b.targets[1:] // passed without reaching its end
		b.skipped++
	}
	if len(b.targets) == 0 || b.targets[0].Last != pos {
		return
	}
	if b.targets[0].EndsTx {
		b.cutAtCommit = true
	} else {
		b.ready = true
	}
	b.targets = b.targets[1:]
}

// Commit records that the transaction ending at endLSN is complete: every
// event of it has been added. Optional after callbacks travel with the batch.
func (b *Batcher) Commit(endLSN uint64, now time.Time, after ...func(context.Context) error) {
	for _, f := range after {
		if f != nil {
			b.afterConfirm = append(b.afterConfirm, f)
		}
	}
	b.touch(now)
	if endLSN > b.ackLSN {
		b.ackLSN = endLSN
	}
	if len(b.events) > b.committed {
		last := b.events[len(b.events)-1]
		b.lastCommitted = Position{LSN: last.CommitLSN, Index: b.txIndex - 1}
	}
	b.committed, b.committedBytes = len(b.events), b.bytes
	b.committedAnon = b.committedAnon || b.txAnon
	b.txIndex, b.txAnon = 0, false
	if b.cutAtCommit {
		b.cutAtCommit, b.ready = false, true
	}
}

// Reset empties the Batcher (also of replayed ranges) and returns the
// events it held: they are streamed again.
func (b *Batcher) Reset() []event.Event {
	evs := b.events
	*b = Batcher{policy: b.policy, skipped: b.skipped}
	return evs
}

// DropUncommitted removes the events of the transaction still open (its
// stream broke or the relay is stopping; it will be streamed again from the
// acknowledged position) and returns them.
func (b *Batcher) DropUncommitted() []event.Event {
	tail := slices.Clone(b.events[b.committed:])
	clear(b.events[b.committed:]) // let the dropped payloads be collected
	b.events = b.events[:b.committed]
	b.bytes = b.committedBytes
	b.txIndex, b.txAnon = 0, false
	if b.cutAtCommit { // the range is streamed again: aim for it anew
		b.cutAtCommit = false
		b.skipped++
	}
	if b.committed == 0 {
		b.head = 0
	}
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
	return b.Saturated() || now.Sub(b.first) >= p.MaxAge
}

// Saturated reports whether the count or byte limit is reached (the age
// limit aside): nothing more should be added before a Cut.
func (b *Batcher) Saturated() bool {
	p := b.policy
	return (p.MaxEvents > 0 && len(b.events) >= p.MaxEvents) ||
		(p.MaxBytes > 0 && b.bytes >= p.MaxBytes)
}

// Ready reports whether a batch must be Cut now: a replayed range is
// complete, or (not replaying) the count or byte limit is reached.
func (b *Batcher) Ready() bool {
	return b.ready || !b.Replaying() && b.Saturated()
}

// UntilNext is how long until the age limit fires; ok is false when no
// timer is needed: nothing is buffered, only an open transaction is (its
// commit is awaited), or ranges are being replayed (they are cut by their
// events, not by age).
func (b *Batcher) UntilNext(now time.Time) (d time.Duration, ok bool) {
	if !b.pending || b.Replaying() || b.committed == 0 && b.ackLSN == 0 && len(b.afterConfirm) == 0 {
		return 0, false
	}
	d = b.policy.MaxAge - now.Sub(b.first)
	if d < 0 {
		d = 0
	}
	return d, true
}

// ExpectedCut is when the open batch is expected to be cut: when its age
// limit fires, or sooner when the rate at which it filled so far reaches
// the count or byte limit first; with nothing buffered, the age limit of an
// event arriving now. It is the zero time when that is unknown: ranges are
// replayed, or only an open transaction is buffered. The stream reads it to
// wait longer between reads while nothing it could read would change when
// a batch is written (see replication.Config.NextCut).
func (b *Batcher) ExpectedCut(now time.Time) time.Time {
	if b.Replaying() {
		return time.Time{}
	}
	if !b.pending {
		return now.Add(b.policy.MaxAge)
	}
	d, ok := b.UntilNext(now)
	if !ok {
		return time.Time{}
	}
	at := now.Add(d)
	elapsed := now.Sub(b.first)
	if elapsed <= 0 || len(b.events) == 0 {
		return at
	}
	p := b.policy
	fill := func(limit, have int) {
		if limit <= 0 || have <= 0 {
			return
		}
		left := time.Duration(float64(elapsed) * float64(limit-have) / float64(have))
		if t := now.Add(max(left, 0)); t.Before(at) {
			at = t
		}
	}
	fill(p.MaxEvents, len(b.events))
	fill(p.MaxBytes, b.bytes)
	return at
}

// Len is the number of buffered events.
func (b *Batcher) Len() int { return len(b.events) }

// Bytes is the size of the buffered events.
func (b *Batcher) Bytes() int { return b.bytes }

// Pending reports whether something is buffered (events or an
// acknowledgeable commit).
func (b *Batcher) Pending() bool { return b.pending }

// Cut hands out the batch that Ready announced: a replayed range (the
// whole buffer), else the complete transactions, else (one transaction
// alone reached a limit) a part of the open transaction. When nothing is
// Ready (the age limit passed, or the relay is stopping) it hands out the
// complete transactions and keeps the open one; while ranges are replayed,
// nothing: a batch cut short of its range would be a new one.
func (b *Batcher) Cut() Batch {
	switch {
	case b.ready:
		b.ready = false
		if b.committed == len(b.events) {
			return b.take(b.committed)
		}
		return b.takePart()
	case b.Replaying():
		return Batch{}
	case b.committed > 0 || b.ackLSN > 0 || len(b.afterConfirm) > 0:
		return b.take(b.committed)
	case b.Saturated():
		return b.takePart()
	}
	return Batch{}
}

// take hands out the first n (= committed) events, their commits and
// callbacks. The returned slice is owned by the caller.
func (b *Batcher) take(n int) Batch {
	out := Batch{Events: b.events[:n:n], Bytes: b.committedBytes, AckLSN: b.ackLSN, AfterConfirm: b.afterConfirm}
	if n > 0 && !b.committedAnon {
		out.Identified = true
		out.Range = Range{First: Position{LSN: b.events[0].CommitLSN, Index: b.head}, Last: b.lastCommitted, EndsTx: true}
	}
	b.head = b.txIndex - (len(b.events) - n)
	b.rest(n, b.committedBytes)
	return out
}

// takePart hands out the whole buffer, which ends inside a transaction.
func (b *Batcher) takePart() Batch {
	n := len(b.events)
	out := Batch{Events: b.events[:n:n], Bytes: b.bytes, AckLSN: b.ackLSN, AfterConfirm: b.afterConfirm}
	if n > 0 && !b.committedAnon && !b.txAnon {
		last := b.events[n-1]
		out.Identified = true
		out.Range = Range{First: Position{LSN: b.events[0].CommitLSN, Index: b.head},
			Last: Position{LSN: last.CommitLSN, Index: b.txIndex - 1}}
	}
	b.head = b.txIndex
	b.rest(n, b.bytes)
	return out
}

// rest keeps the events after the first n (the open transaction's).
func (b *Batcher) rest(n, bytes int) {
	tail := b.events[n:]
	b.events = make([]event.Event, len(tail), max(cap(b.events), len(tail)))
	copy(b.events, tail)
	b.bytes -= bytes
	b.afterConfirm = nil
	b.committed, b.committedBytes = 0, 0
	b.ackLSN = 0
	b.committedAnon = false
	b.pending = len(b.events) > 0
	b.first = b.tailAt
}

// Forecast carries ExpectedCut from the goroutine that batches to the one
// that reads the stream. The zero Forecast, and a nil one, know nothing.
type Forecast struct{ unixNano atomic.Int64 }

// Store records t (the zero time: unknown).
func (f *Forecast) Store(t time.Time) {
	if f == nil {
		return
	}
	var n int64
	if !t.IsZero() {
		n = t.UnixNano()
	}
	f.unixNano.Store(n)
}

// Load is the last time stored, or the zero time.
func (f *Forecast) Load() time.Time {
	if f == nil {
		return time.Time{}
	}
	n := f.unixNano.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
