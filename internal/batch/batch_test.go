package batch

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/event"
)

var t0 = time.Date(2024, 3, 5, 12, 0, 0, 0, time.UTC)

// ev returns an event whose Size is its payload plus the per-event overhead (see event.Event.Size).
func ev(typ string, payload int) event.Event {
	return event.Event{Type: typ, Context: bytes.Repeat([]byte{'x'}, payload)}
}

// evAt returns an event of the transaction committed at lsn.
func evAt(typ string, lsn uint64) event.Event {
	return event.Event{Type: typ, CommitLSN: lsn}
}

// evSize is the Size of ev(typ, payload).
func evSize(typ string, payload int) int {
	e := ev(typ, payload)
	return e.Size()
}

func types(evs []event.Event) []string {
	out := make([]string, len(evs))
	for i := range evs {
		out[i] = evs[i].Type
	}
	return out
}

// step is one call on the Batcher: an Add (typ set) or a Commit (lsn set).
type step struct {
	at      time.Duration // since t0
	typ     string
	payload int
	commit  uint64
}

func run(b *Batcher, steps []step) (lastFull bool) {
	for _, s := range steps {
		now := t0.Add(s.at)
		if s.typ != "" {
			lastFull = b.Add(ev(s.typ, s.payload), now)
		} else {
			b.Commit(s.commit, now)
			lastFull = b.Full(now)
		}
	}
	return lastFull
}

func TestFull(t *testing.T) {
	size := evSize("a", 36) // 100 bytes
	tests := []struct {
		name   string
		policy Policy
		steps  []step
		at     time.Duration // when Full is asked after the steps
		want   bool
	}{
		{
			name:   "empty is never full",
			policy: Policy{MaxEvents: 1, MaxBytes: 1, MaxAge: 0},
			at:     time.Hour,
			want:   false,
		},
		{
			name:   "below count limit",
			policy: Policy{MaxEvents: 3, MaxAge: time.Minute},
			steps:  []step{{typ: "a"}, {typ: "b"}},
			want:   false,
		},
		{
			name:   "count limit reached",
			policy: Policy{MaxEvents: 3, MaxAge: time.Minute},
			steps:  []step{{typ: "a"}, {typ: "b"}, {typ: "c"}},
			want:   true,
		},
		{
			name:   "zero MaxEvents disables the count limit",
			policy: Policy{MaxAge: time.Minute},
			steps:  []step{{typ: "a"}, {typ: "b"}, {typ: "c"}, {typ: "d"}},
			want:   false,
		},
		{
			name:   "commits do not count as events",
			policy: Policy{MaxEvents: 2, MaxAge: time.Minute},
			steps:  []step{{typ: "a"}, {commit: 10}, {commit: 20}},
			want:   false,
		},
		{
			name:   "below byte limit",
			policy: Policy{MaxBytes: 2*size + 1, MaxAge: time.Minute},
			steps:  []step{{typ: "a", payload: 36}, {typ: "a", payload: 36}},
			want:   false,
		},
		{
			name:   "byte limit reached exactly",
			policy: Policy{MaxBytes: 2 * size, MaxAge: time.Minute},
			steps:  []step{{typ: "a", payload: 36}, {typ: "a", payload: 36}},
			want:   true,
		},
		{
			name:   "one event larger than the byte limit",
			policy: Policy{MaxBytes: 1024, MaxAge: time.Minute},
			steps:  []step{{typ: "big", payload: 4 << 20}},
			want:   true,
		},
		{
			name:   "zero MaxBytes disables the byte limit",
			policy: Policy{MaxAge: time.Minute},
			steps:  []step{{typ: "big", payload: 4 << 20}},
			want:   false,
		},
		{
			name:   "younger than MaxAge",
			policy: Policy{MaxAge: time.Second},
			steps:  []step{{typ: "a"}},
			at:     time.Second - time.Nanosecond,
			want:   false,
		},
		{
			name:   "exactly MaxAge old",
			policy: Policy{MaxAge: time.Second},
			steps:  []step{{typ: "a"}},
			at:     time.Second,
			want:   true,
		},
		{
			name:   "age counts from the first item, not the last",
			policy: Policy{MaxAge: time.Second},
			steps:  []step{{typ: "a"}, {at: 900 * time.Millisecond, typ: "b"}},
			at:     time.Second,
			want:   true,
		},
		{
			name:   "a commit alone starts the age clock",
			policy: Policy{MaxAge: time.Second},
			steps:  []step{{at: 0, commit: 42}},
			at:     time.Second,
			want:   true,
		},
		{
			name:   "zero MaxAge makes a non-empty batch due at once",
			policy: Policy{MaxAge: 0},
			steps:  []step{{typ: "a"}},
			at:     0,
			want:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.policy)
			run(b, tt.steps)
			if got := b.Full(t0.Add(tt.at)); got != tt.want {
				t.Errorf("Full() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAddReportsFull(t *testing.T) {
	b := New(Policy{MaxEvents: 3, MaxAge: time.Hour})
	var got []bool
	for _, typ := range []string{"a", "b", "c"} {
		got = append(got, b.Add(ev(typ, 0), t0))
	}
	want := []bool{false, false, true}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Add results = %v, want %v", got, want)
		}
	}
}

func TestUntilNext(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		steps  []step
		at     time.Duration
		want   time.Duration
		wantOK bool
	}{
		{
			name:   "nothing buffered needs no timer",
			policy: Policy{MaxAge: time.Second},
			at:     time.Hour,
			wantOK: false,
		},
		{
			name:   "full age right after the first event",
			policy: Policy{MaxAge: time.Second},
			steps:  []step{{typ: "a"}, {commit: 7}},
			at:     0,
			want:   time.Second,
			wantOK: true,
		},
		{
			name:   "remaining age",
			policy: Policy{MaxAge: time.Second},
			steps:  []step{{typ: "a"}, {at: 700 * time.Millisecond, typ: "b"}, {at: 700 * time.Millisecond, commit: 7}},
			at:     750 * time.Millisecond,
			want:   250 * time.Millisecond,
			wantOK: true,
		},
		{
			name:   "overdue is clamped to zero",
			policy: Policy{MaxAge: time.Second},
			steps:  []step{{typ: "a"}, {commit: 7}},
			at:     5 * time.Second,
			want:   0,
			wantOK: true,
		},
		{
			name:   "an open transaction alone waits for its commit, not the clock",
			policy: Policy{MaxAge: time.Second},
			steps:  []step{{typ: "a"}},
			at:     5 * time.Second,
			wantOK: false,
		},
		{
			name:   "a pending commit needs a timer too",
			policy: Policy{MaxAge: time.Second},
			steps:  []step{{at: 100 * time.Millisecond, commit: 7}},
			at:     600 * time.Millisecond,
			want:   500 * time.Millisecond,
			wantOK: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.policy)
			run(b, tt.steps)
			got, ok := b.UntilNext(t0.Add(tt.at))
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("UntilNext() = %v, %v, want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestExpectedCut(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name   string
		policy Policy
		steps  []step
		replay bool
		at     time.Duration
		want   time.Duration // since t0; -1 for the zero time
	}{
		{
			name:   "replaying recorded ranges: unknown",
			policy: Policy{MaxEvents: 10, MaxAge: time.Second},
			replay: true,
			at:     100 * ms,
			want:   -1,
		},
		{
			name:   "nothing buffered: the age limit of an event arriving now",
			policy: Policy{MaxEvents: 10, MaxAge: time.Second},
			at:     100 * ms,
			want:   1100 * ms,
		},
		{
			name:   "an open transaction alone: unknown",
			policy: Policy{MaxEvents: 10, MaxAge: time.Second},
			steps:  []step{{typ: "a"}},
			at:     100 * ms,
			want:   -1,
		},
		{
			name:   "slow filling: the age limit",
			policy: Policy{MaxEvents: 10, MaxAge: time.Second},
			steps:  []step{{typ: "a"}, {commit: 7}},
			at:     200 * ms, // 1 event in 200 ms: 10 in 2 s
			want:   time.Second,
		},
		{
			name:   "fast filling: the count limit at the rate so far",
			policy: Policy{MaxEvents: 10, MaxAge: time.Second},
			steps:  []step{{typ: "a"}, {typ: "b"}, {commit: 7}},
			at:     100 * ms, // 2 events in 100 ms: 8 more in 400 ms
			want:   500 * ms,
		},
		{
			name:   "the byte limit at the rate so far",
			policy: Policy{MaxBytes: 4 * evSize("a", 100), MaxAge: time.Second},
			steps:  []step{{typ: "a", payload: 100}, {commit: 7}},
			at:     50 * ms, // a quarter in 50 ms
			want:   200 * ms,
		},
		{
			name:   "overdue: now",
			policy: Policy{MaxEvents: 10, MaxAge: time.Second},
			steps:  []step{{typ: "a"}, {commit: 7}},
			at:     3 * time.Second,
			want:   3 * time.Second,
		},
		{
			name:   "all at once: the age limit (no rate yet)",
			policy: Policy{MaxEvents: 10, MaxAge: time.Second},
			steps:  []step{{typ: "a"}, {commit: 7}},
			at:     0,
			want:   time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.policy)
			run(b, tt.steps)
			if tt.replay {
				b.Replay([]Range{{First: Position{LSN: 9}, Last: Position{LSN: 9}, EndsTx: true}})
			}
			got := b.ExpectedCut(t0.Add(tt.at))
			want := time.Time{}
			if tt.want >= 0 {
				want = t0.Add(tt.want)
			}
			if !got.Equal(want) {
				t.Errorf("ExpectedCut = %v, want %v", got, want)
			}
		})
	}
}

func TestForecast(t *testing.T) {
	var f Forecast
	if got := f.Load(); !got.IsZero() {
		t.Errorf("zero Forecast Load = %v, want the zero time", got)
	}
	f.Store(t0)
	if got := f.Load(); !got.Equal(t0) {
		t.Errorf("Load = %v, want %v", got, t0)
	}
	f.Store(time.Time{})
	if got := f.Load(); !got.IsZero() {
		t.Errorf("Load after storing the zero time = %v", got)
	}
	var none *Forecast
	none.Store(t0)
	if got := none.Load(); !got.IsZero() {
		t.Errorf("nil Forecast Load = %v", got)
	}
}

// TestUntilNextAgreesWithFull drives the timer the way the relay loop does:
// when UntilNext's duration has elapsed the batch must be Full, and not a
// nanosecond before.
func TestUntilNextAgreesWithFull(t *testing.T) {
	b := New(Policy{MaxAge: 1500 * time.Millisecond})
	b.Add(ev("a", 10), t0)
	b.Commit(7, t0)
	now := t0.Add(400 * time.Millisecond)
	d, ok := b.UntilNext(now)
	if !ok {
		t.Fatal("UntilNext: ok = false with an event buffered")
	}
	if b.Full(now.Add(d - time.Nanosecond)) {
		t.Errorf("Full %v before the timer fires", time.Nanosecond)
	}
	if !b.Full(now.Add(d)) {
		t.Errorf("not Full when the timer fires (after %v)", d)
	}
}

func TestFlushAckLSN(t *testing.T) {
	tests := []struct {
		name       string
		steps      []step
		wantTypes  []string
		wantAckLSN uint64
	}{
		{
			name:       "nothing committed: the open transaction stays",
			steps:      []step{{typ: "a"}, {typ: "b"}},
			wantTypes:  []string{},
			wantAckLSN: 0,
		},
		{
			name:       "one complete transaction",
			steps:      []step{{typ: "a"}, {typ: "b"}, {commit: 100}},
			wantTypes:  []string{"a", "b"},
			wantAckLSN: 100,
		},
		{
			name:       "last of several complete transactions",
			steps:      []step{{typ: "a"}, {commit: 100}, {typ: "b"}, {commit: 200}, {typ: "c"}, {commit: 300}},
			wantTypes:  []string{"a", "b", "c"},
			wantAckLSN: 300,
		},
		{
			name:       "a flush takes whole transactions only",
			steps:      []step{{typ: "a"}, {commit: 100}, {typ: "b"}, {typ: "c"}},
			wantTypes:  []string{"a"},
			wantAckLSN: 100,
		},
		{
			name:       "commit without events is still acknowledged",
			steps:      []step{{commit: 100}},
			wantTypes:  []string{},
			wantAckLSN: 100,
		},
		{
			name:       "a replayed older commit does not move AckLSN back",
			steps:      []step{{typ: "a"}, {commit: 300}, {typ: "b"}, {commit: 200}},
			wantTypes:  []string{"a", "b"},
			wantAckLSN: 300,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(Policy{MaxAge: time.Hour})
			run(b, tt.steps)
			got := b.Flush()
			if !slices.Equal(types(got.Events), tt.wantTypes) {
				t.Errorf("Events = %v, want %v", types(got.Events), tt.wantTypes)
			}
			if got.AckLSN != tt.wantAckLSN {
				t.Errorf("AckLSN = %d, want %d", got.AckLSN, tt.wantAckLSN)
			}
		})
	}
}

// TestTransactionAcrossBatches: a full batch is cut at the last commit;
// a transaction alone over the limit is cut into parts of MaxEvents
// counted from its first event; only the part holding the commit
// acknowledges it.
func TestTransactionAcrossBatches(t *testing.T) {
	b := New(Policy{MaxEvents: 2, MaxAge: time.Hour})

	b.Add(evAt("t1", 100), t0)
	b.Commit(101, t0)
	if !b.Add(evAt("t2-a", 200), t0) {
		t.Fatal("batch of 2 events not ready")
	}
	first := b.Cut()
	if !slices.Equal(types(first.Events), []string{"t1"}) || first.AckLSN != 101 {
		t.Errorf("first batch = %v AckLSN %d, want [t1] AckLSN 101 (t2 is still open)", types(first.Events), first.AckLSN)
	}
	if want := (Range{First: Position{100, 0}, Last: Position{100, 0}, EndsTx: true}); first.Range != want || !first.Identified {
		t.Errorf("first range = %+v, want %+v", first.Range, want)
	}
	if !b.Add(evAt("t2-b", 200), t0) {
		t.Fatal("t2 alone at the limit is not ready")
	}
	second := b.Cut()
	if !slices.Equal(types(second.Events), []string{"t2-a", "t2-b"}) || second.AckLSN != 0 {
		t.Errorf("second batch = %v AckLSN %d, want [t2-a t2-b] AckLSN 0", types(second.Events), second.AckLSN)
	}
	if want := (Range{First: Position{200, 0}, Last: Position{200, 1}}); second.Range != want {
		t.Errorf("second range = %+v, want %+v", second.Range, want)
	}
	if b.Add(evAt("t2-c", 200), t0) {
		t.Fatal("batch of 1 event ready")
	}
	b.Commit(201, t0)
	third := b.Flush()
	if !slices.Equal(types(third.Events), []string{"t2-c"}) || third.AckLSN != 201 {
		t.Errorf("third batch = %v AckLSN %d, want [t2-c] AckLSN 201", types(third.Events), third.AckLSN)
	}
	if want := (Range{First: Position{200, 2}, Last: Position{200, 2}, EndsTx: true}); third.Range != want {
		t.Errorf("third range = %+v, want %+v", third.Range, want)
	}
}

func TestFlushResets(t *testing.T) {
	b := New(Policy{MaxEvents: 10, MaxAge: time.Second})
	b.Add(ev("a", 10), t0)
	b.Commit(100, t0)
	b.Add(ev("b", 20), t0)
	b.Commit(101, t0)

	got := b.Flush()
	if want := evSize("a", 10) + evSize("b", 20); got.Bytes != want {
		t.Errorf("Flush().Bytes = %d, want %d", got.Bytes, want)
	}
	if b.Len() != 0 || b.Bytes() != 0 || b.Pending() {
		t.Errorf("after Flush: Len %d, Bytes %d, Pending %v; want 0, 0, false", b.Len(), b.Bytes(), b.Pending())
	}
	if _, ok := b.UntilNext(t0.Add(time.Hour)); ok {
		t.Error("UntilNext ok after Flush, want no timer")
	}
	if b.Full(t0.Add(time.Hour)) {
		t.Error("Full after Flush")
	}
	again := b.Flush()
	if len(again.Events) != 0 || again.Bytes != 0 || again.AckLSN != 0 {
		t.Errorf("second Flush = %+v, want empty", again)
	}

	// The age clock restarts with the next item, not at the old first one.
	later := t0.Add(10 * time.Second)
	b.Add(ev("c", 0), later)
	b.Commit(102, later)
	if d, ok := b.UntilNext(later); !ok || d != time.Second {
		t.Errorf("UntilNext after re-add = %v, %v, want 1s, true", d, ok)
	}
	// The flushed batch is owned by the caller: new Adds must not touch it.
	if got.Events[0].Type != "a" || got.Events[1].Type != "b" {
		t.Errorf("flushed events changed by a later Add: %v", types(got.Events))
	}
}

func TestDropUncommitted(t *testing.T) {
	tests := []struct {
		name        string
		steps       []step
		wantDropped []string
		wantKept    []string
		wantBytes   int
		wantPending bool
		wantAckLSN  uint64
	}{
		{
			name:        "empty",
			wantDropped: []string{},
			wantKept:    []string{},
		},
		{
			name:        "only an open transaction",
			steps:       []step{{typ: "a", payload: 10}, {typ: "b", payload: 20}},
			wantDropped: []string{"a", "b"},
			wantKept:    []string{},
			wantBytes:   0,
			wantPending: false,
		},
		{
			name:        "complete transaction then an open one",
			steps:       []step{{typ: "a", payload: 10}, {commit: 100}, {typ: "b", payload: 20}, {typ: "c", payload: 30}},
			wantDropped: []string{"b", "c"},
			wantKept:    []string{"a"},
			wantBytes:   evSize("a", 10),
			wantPending: true,
			wantAckLSN:  100,
		},
		{
			name:        "nothing open",
			steps:       []step{{typ: "a", payload: 10}, {commit: 100}},
			wantDropped: []string{},
			wantKept:    []string{"a"},
			wantBytes:   evSize("a", 10),
			wantPending: true,
			wantAckLSN:  100,
		},
		{
			name:        "commit without events survives",
			steps:       []step{{commit: 100}, {typ: "b", payload: 20}},
			wantDropped: []string{"b"},
			wantKept:    []string{},
			wantBytes:   0,
			wantPending: true,
			wantAckLSN:  100,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(Policy{MaxAge: time.Hour})
			run(b, tt.steps)
			dropped := b.DropUncommitted()
			if !slices.Equal(types(dropped), tt.wantDropped) {
				t.Errorf("dropped %v, want %v", types(dropped), tt.wantDropped)
			}
			if b.Len() != len(tt.wantKept) {
				t.Errorf("Len = %d, want %d", b.Len(), len(tt.wantKept))
			}
			if b.Bytes() != tt.wantBytes {
				t.Errorf("Bytes = %d, want %d", b.Bytes(), tt.wantBytes)
			}
			if b.Pending() != tt.wantPending {
				t.Errorf("Pending = %v, want %v", b.Pending(), tt.wantPending)
			}
			got := b.Flush()
			if !slices.Equal(types(got.Events), tt.wantKept) {
				t.Errorf("flushed %v, want %v", types(got.Events), tt.wantKept)
			}
			if got.Bytes != tt.wantBytes || got.AckLSN != tt.wantAckLSN {
				t.Errorf("flushed Bytes %d, AckLSN %d, want %d, %d", got.Bytes, got.AckLSN, tt.wantBytes, tt.wantAckLSN)
			}
		})
	}
}

// A flush keeps the open transaction; DropUncommitted then drops it whole.
func TestDropUncommittedAfterFlush(t *testing.T) {
	b := New(Policy{MaxAge: time.Hour})
	b.Add(ev("a", 0), t0)
	b.Commit(100, t0)
	b.Add(ev("b", 0), t0)
	flushed := b.Flush()
	b.Add(ev("c", 5), t0)

	dropped := b.DropUncommitted()
	if !slices.Equal(types(dropped), []string{"b", "c"}) {
		t.Errorf("dropped %v, want [b c]", types(dropped))
	}
	if b.Len() != 0 || b.Bytes() != 0 || b.Pending() {
		t.Errorf("after drop: Len %d, Bytes %d, Pending %v; want 0, 0, false", b.Len(), b.Bytes(), b.Pending())
	}
	if !slices.Equal(types(flushed.Events), []string{"a"}) {
		t.Errorf("flushed batch changed: %v", types(flushed.Events))
	}
}

// The dropped events are handed to the caller (to release their budget);
// later Adds must not overwrite them.
func TestDropUncommittedResultOwnedByCaller(t *testing.T) {
	b := New(Policy{MaxAge: time.Hour})
	b.Add(ev("a", 0), t0)
	b.Commit(100, t0)
	b.Add(ev("b", 0), t0)
	dropped := b.DropUncommitted()
	b.Add(ev("z", 0), t0)
	if got := types(dropped); !slices.Equal(got, []string{"b"}) {
		t.Errorf("dropped events = %v after a later Add, want [b]", got)
	}
}

// DropUncommitted then Commit: the replayed transaction is counted once.
func TestDropThenReplay(t *testing.T) {
	b := New(Policy{MaxAge: time.Hour})
	b.Add(ev("a", 1), t0)
	b.Commit(100, t0)
	b.Add(ev("b", 2), t0)
	b.DropUncommitted()
	// The stream restarts and sends transaction b again, completely.
	b.Add(ev("b", 2), t0)
	b.Commit(200, t0)
	got := b.Flush()
	if !slices.Equal(types(got.Events), []string{"a", "b"}) {
		t.Errorf("events %v, want [a b]", types(got.Events))
	}
	if want := evSize("a", 1) + evSize("b", 2); got.Bytes != want {
		t.Errorf("Bytes = %d, want %d", got.Bytes, want)
	}
	if got.AckLSN != 200 {
		t.Errorf("AckLSN = %d, want 200", got.AckLSN)
	}
}

// tx is a transaction: its commit LSN and how many events it wrote.
type tx struct {
	lsn    uint64
	events int
}

// cutAll streams txs through b the way the relay does (Cut whenever Ready,
// Flush at every commit when flushEveryCommit) and returns the ranges cut.
func cutAll(b *Batcher, txs []tx, flushEveryCommit bool) []Range {
	var out []Range
	keep := func(bt Batch) {
		if bt.Identified {
			out = append(out, bt.Range)
		}
	}
	for _, x := range txs {
		for i := range x.events {
			if b.Add(evAt(fmt.Sprint(x.lsn, ".", i), x.lsn), t0) {
				for b.Ready() {
					keep(b.Cut())
				}
			}
		}
		b.Commit(x.lsn+1, t0)
		for b.Ready() {
			keep(b.Cut())
		}
		if flushEveryCommit {
			keep(b.Flush())
		}
	}
	keep(b.Flush())
	return out
}

// TestReplayRebuildsRanges: whatever cut the first run made (here: a flush
// at every commit, as the age limit may do), replaying its ranges from the
// same stream cuts exactly the same batches, then batching goes on by the
// limits.
func TestReplayRebuildsRanges(t *testing.T) {
	txs := []tx{{100, 1}, {200, 3}, {300, 7}, {400, 2}, {500, 1}, {600, 1}}
	first := cutAll(New(Policy{MaxEvents: 3, MaxAge: time.Hour}), txs, true)
	want := []Range{
		{First: Position{100, 0}, Last: Position{100, 0}, EndsTx: true},
		// At the limit before its commit came: a part.
		{First: Position{200, 0}, Last: Position{200, 2}},
		{First: Position{300, 0}, Last: Position{300, 2}},
		{First: Position{300, 3}, Last: Position{300, 5}},
		{First: Position{300, 6}, Last: Position{300, 6}, EndsTx: true},
		{First: Position{400, 0}, Last: Position{400, 1}, EndsTx: true},
		{First: Position{500, 0}, Last: Position{500, 0}, EndsTx: true},
		{First: Position{600, 0}, Last: Position{600, 0}, EndsTx: true},
	}
	if !slices.Equal(first, want) {
		t.Fatalf("first run cut\n%v\nwant\n%v", first, want)
	}
	// Replay the ranges from 200 on (100 was acknowledged), batching by
	// the limits only afterwards.
	b := New(Policy{MaxEvents: 3, MaxAge: time.Hour})
	b.Replay(want[1:5])
	got := cutAll(b, txs[1:], false)
	wantReplay := append(slices.Clone(want[1:5]),
		Range{First: Position{400, 0}, Last: Position{400, 1}, EndsTx: true},
		Range{First: Position{500, 0}, Last: Position{600, 0}, EndsTx: true})
	if !slices.Equal(got, wantReplay) {
		t.Errorf("replay cut\n%v\nwant\n%v", got, wantReplay)
	}
	if b.Skipped() != 0 {
		t.Errorf("Skipped = %d, want 0", b.Skipped())
	}
}

// While replaying, neither the age nor the count limit cuts a batch short.
func TestReplayIgnoresLimits(t *testing.T) {
	b := New(Policy{MaxEvents: 1, MaxAge: 0})
	b.Replay([]Range{{First: Position{100, 0}, Last: Position{200, 0}, EndsTx: true}})
	b.Add(evAt("a", 100), t0)
	b.Commit(101, t0)
	if b.Ready() {
		t.Error("Ready inside a replayed range")
	}
	if _, ok := b.UntilNext(t0); ok {
		t.Error("UntilNext asks for a timer inside a replayed range")
	}
	if got := b.Flush(); len(got.Events) != 0 {
		t.Errorf("Flush inside a replayed range handed out %v", types(got.Events))
	}
	if b.Add(evAt("b", 200), t0) {
		t.Error("Ready before the range's commit")
	}
	b.Commit(201, t0)
	got := b.Cut()
	if !slices.Equal(types(got.Events), []string{"a", "b"}) || got.AckLSN != 201 {
		t.Errorf("Cut = %v AckLSN %d, want [a b] 201", types(got.Events), got.AckLSN)
	}
	if b.Replaying() {
		t.Error("still replaying after the last range")
	}
}

// A range the stream passes without reaching its end is given up.
func TestReplaySkipsUnreachableRange(t *testing.T) {
	b := New(Policy{MaxEvents: 10, MaxAge: time.Hour})
	b.Replay([]Range{{First: Position{100, 0}, Last: Position{100, 5}, EndsTx: true}})
	b.Add(evAt("a", 100), t0)
	b.Commit(101, t0)
	b.Add(evAt("b", 200), t0)
	if b.Replaying() || b.Skipped() != 1 {
		t.Errorf("Replaying %v, Skipped %d; want false, 1", b.Replaying(), b.Skipped())
	}
}

// Backfilled rows have no stable position: their batches are not Identified.
func TestBackfillNotIdentified(t *testing.T) {
	b := New(Policy{MaxAge: time.Hour})
	b.AddBackfill(evAt("a", 100), t0)
	b.Commit(100, t0)
	if got := b.Flush(); got.Identified || len(got.Events) != 1 {
		t.Errorf("backfill batch Identified %v with %d events, want false, 1", got.Identified, len(got.Events))
	}
	b.Add(evAt("b", 200), t0)
	b.Commit(201, t0)
	if got := b.Flush(); !got.Identified {
		t.Error("stream batch after a backfill not Identified")
	}
}

func TestToken(t *testing.T) {
	r := Range{First: Position{0x16B3748, 0}, Last: Position{0x1_0000_0010, 4}, EndsTx: true}
	if got, want := r.Token("outbox"), "outbox:0/16B3748.0:1/10.4"; got != want {
		t.Errorf("Token = %q, want %q", got, want)
	}
}

// A commit at LSN 0 with a callback and no events (a resumed backfill of
// an empty table) is still handed out: the callback must run.
func TestCutCallbackWithoutEvents(t *testing.T) {
	b := New(Policy{MaxAge: time.Hour})
	ran := false
	b.Commit(0, t0, func(context.Context) error { ran = true; return nil })
	got := b.Cut()
	if len(got.AfterConfirm) != 1 {
		t.Fatalf("Cut handed out %d callbacks, want 1", len(got.AfterConfirm))
	}
	_ = got.AfterConfirm[0](context.Background())
	if !ran || b.Pending() {
		t.Errorf("callback ran %v, Pending %v after the Cut; want true, false", ran, b.Pending())
	}
}
