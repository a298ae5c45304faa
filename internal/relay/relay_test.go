package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/ack"
	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/batchlog"
	"github.com/outbox-relay/relay/internal/deadletter"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/metrics"
	"github.com/outbox-relay/relay/internal/replication"
	"github.com/outbox-relay/relay/internal/retry"
)

// Every test runs in a synctest bubble: the batch timer, the backoff and the
// shutdown grace run on the bubble's fake clock, so nothing sleeps for real
// and a deadlock fails the test instead of hanging it.

// Fakes: small structs whose methods are function fields.

type fakeSource struct {
	run func(ctx context.Context, out chan<- []replication.Item, drained <-chan struct{}) error
}

func (f fakeSource) Run(ctx context.Context, out chan<- []replication.Item, drained <-chan struct{}) error {
	return f.run(ctx, out, drained)
}

type fakeSink struct {
	write func(ctx context.Context, evs []event.Event) error
	// writeBatch, when set, is called instead of write.
	writeBatch func(ctx context.Context, evs []event.Event, token string, relayedAt time.Time) error
	// writeTable, when set, is called instead of both.
	writeTable func(ctx context.Context, table string, evs []event.Event, token string) error
}

func (f fakeSink) WriteBatch(ctx context.Context, table string, evs []event.Event, token string, relayedAt time.Time) error {
	if f.writeTable != nil {
		return f.writeTable(ctx, table, evs, token)
	}
	if f.writeBatch != nil {
		return f.writeBatch(ctx, evs, token, relayedAt)
	}
	return f.write(ctx, evs)
}

type fakeDeleter struct {
	delete func(ctx context.Context, ids [][16]byte) (int64, error)
	// deleteDone, when set, is called instead of delete.
	deleteDone func(ctx context.Context, ids [][16]byte, done *batch.Range) (int64, error)
	// deleteRows, when set, is called instead of both.
	deleteRows func(ctx context.Context, rows []event.Row) (int64, error)
}

func (f fakeDeleter) Delete(ctx context.Context, rows []event.Row, done *batch.Range) (int64, error) {
	if f.deleteRows != nil {
		return f.deleteRows(ctx, rows)
	}
	ids := make([][16]byte, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	if f.deleteDone != nil {
		return f.deleteDone(ctx, ids, done)
	}
	return f.delete(ctx, ids)
}

type fakeBatchLog struct {
	load    func(ctx context.Context) ([]batchlog.Record, error)
	pending func(ctx context.Context, rec batchlog.Record) error
}

func (f fakeBatchLog) Slot() string { return "s" }
func (f fakeBatchLog) Load(ctx context.Context) ([]batchlog.Record, error) {
	return f.load(ctx)
}
func (f fakeBatchLog) Pending(ctx context.Context, rec batchlog.Record) error {
	return f.pending(ctx, rec)
}

type fakeDeadLetter struct {
	put func(ctx context.Context, rs []deadletter.Rejected) error
}

func (f fakeDeadLetter) Put(ctx context.Context, rs []deadletter.Rejected) error {
	return f.put(ctx, rs)
}

var (
	_ Source     = fakeSource{}
	_ Sink       = fakeSink{}
	_ Deleter    = fakeDeleter{}
	_ DeadLetter = fakeDeadLetter{}
	_ BatchLog   = fakeBatchLog{}
)

// Test data. Event n has an id ending in byte n; logs print ids as [1 2 3].

func ev(n byte) event.Event {
	return event.Event{ID: [16]byte{15: n}, Type: "order.created", Environment: "test",
		Context: []byte(`{"n":1}`), MetadataVersion: 1}
}

func evItem(n byte) replication.Item { return replication.Item{Event: ev(n)} }

// tx is a whole transaction: events ns, then its commit at lsn.
func tx(lsn uint64, ns ...byte) []replication.Item {
	var its []replication.Item
	for _, n := range ns {
		its = append(its, evItem(n))
	}
	return append(its, replication.Item{Commit: true, EndLSN: lsn})
}

func seq(from, to byte) []byte {
	var ns []byte
	for n := from; n <= to; n++ {
		ns = append(ns, n)
	}
	return ns
}

func evIDs(evs []event.Event) []byte {
	out := make([]byte, len(evs))
	for i := range evs {
		out[i] = evs[i].ID[15]
	}
	return out
}

func rowIDs(ids [][16]byte) []byte {
	out := make([]byte, len(ids))
	for i := range ids {
		out[i] = ids[i][15]
	}
	return out
}

// recorder is the ordered log of calls into the fakes.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lines)
}

// checkLog compares the calls the fakes logged with want.
// Writes run on goroutines of their own, one per sink, in batch order, and
// deletes, acks and after-flush callbacks on the completer's, overlapping:
// so the log is checked as two lanes, each in order. A write's "confirmed=N" in want is the most that may
// have been confirmed by then (the previous batch may or may not be).
func checkLog(t *testing.T, got, want []string) {
	t.Helper()
	gw, gc := lanes(got)
	ww, wc := lanes(want)
	ok := slices.Equal(gc, wc) && len(gw) == len(ww)
	for i := 0; ok && i < len(gw); i++ {
		ok = writeWithin(gw[i], ww[i])
	}
	if !ok {
		t.Errorf("calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	// Across the lanes: a row is deleted only once it was written (or
	// dead-lettered), where the test logs its writes.
	stored := map[string]bool{}
	for _, l := range got {
		if len(gw) == 0 {
			break
		}
		i, j := strings.IndexByte(l, '['), strings.IndexByte(l, ']')
		if i < 0 || j < i {
			continue
		}
		ids := strings.Fields(l[i+1 : j])
		ok := !strings.Contains(l, "refused") && (!strings.Contains(l, "err=") || strings.Contains(l, "err=<nil>"))
		switch {
		case (strings.HasPrefix(l, "write ") || strings.HasPrefix(l, "dead-letter ")) && ok:
			for _, id := range ids {
				stored[id] = true
			}
		case strings.HasPrefix(l, "delete "):
			for _, id := range ids {
				if !stored[id] {
					t.Errorf("row %s deleted before it was stored:\n  %s", id, strings.Join(got, "\n  "))
				}
			}
		}
	}
}

func lanes(log []string) (writes, rest []string) {
	for _, l := range log {
		if strings.HasPrefix(l, "write ") {
			writes = append(writes, l)
		} else {
			rest = append(rest, l)
		}
	}
	return writes, rest
}

// writeWithin says whether a logged write matches want, its confirmed
// position at most want's.
func writeWithin(got, want string) bool {
	gp, gc, gok := confirmedIn(got)
	wp, wc, wok := confirmedIn(want)
	if !gok || !wok {
		return got == want
	}
	return gp == wp && gc <= wc
}

// confirmedIn splits "write [1] confirmed=N rest" into "write [1] rest" and N.
func confirmedIn(l string) (string, uint64, bool) {
	i := strings.Index(l, " confirmed=")
	if i < 0 {
		return l, 0, false
	}
	num := l[i+len(" confirmed="):]
	j := strings.IndexByte(num, ' ')
	if j < 0 {
		j = len(num)
	}
	var n uint64
	if _, err := fmt.Sscan(num[:j], &n); err != nil {
		return l, 0, false
	}
	return l[:i] + num[j:], n, true
}

// count reads a counter.
func count(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatalf("read counter: %v", err)
	}
	return m.GetCounter().GetValue()
}

// rig holds the parts of one relay under test. Its default fakes accept
// everything and log each call with the position confirmed at that moment.
type rig struct {
	t        *testing.T
	capacity int64
	budget   *event.Budget
	tracker  *ack.Tracker
	metrics  *metrics.Metrics
	log      recorder
	sink     fakeSink
	more     []Sink // Parts.MoreSinks
	cleaner  fakeDeleter
	dead     fakeDeadLetter
	sources  []Source // handed out by NewSource, one per connection
	forecast batch.Forecast
	routes   []Route // Parts.Routes
}

const bigBudget = 1 << 20

func newRig(t *testing.T, capacity int64) *rig {
	g := &rig{t: t, capacity: capacity, budget: event.NewBudget(capacity), tracker: ack.New(0), metrics: metrics.New()}
	g.sink = fakeSink{write: func(_ context.Context, evs []event.Event) error {
		if len(evs) > 0 { // a commit-only batch has nothing to store
			g.log.add("write %v confirmed=%d", evIDs(evs), g.tracker.Confirmed())
		}
		return nil
	}}
	g.cleaner = fakeDeleter{delete: func(_ context.Context, ids [][16]byte) (int64, error) {
		g.log.add("delete %v confirmed=%d", rowIDs(ids), g.tracker.Confirmed())
		return int64(len(ids)), nil
	}}
	g.dead = fakeDeadLetter{put: func(_ context.Context, rs []deadletter.Rejected) error {
		ids := make([]byte, len(rs))
		for i, rj := range rs {
			ids[i] = rj.Event.ID[15]
		}
		g.log.add("dead-letter %v", ids)
		return nil
	}}
	return g
}

// relay builds the Relay from the rig's fakes as they are now.
func (g *rig) relay(p batch.Policy) *Relay {
	next := 0
	newSource := func() Source {
		next++
		if next > len(g.sources) {
			g.t.Errorf("connection %d: only %d scripted", next, len(g.sources))
			return g.stream(script{})
		}
		return g.sources[next-1]
	}
	return New(Config{Policy: p, ShutdownGrace: 10 * time.Second,
		Backoff: retry.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}},
		Parts{NewSource: newSource, Sink: g.sink, MoreSinks: g.more, Deleter: g.cleaner, DeadLetter: g.dead,
			Tracker: g.tracker, Budget: g.budget, Metrics: g.metrics, Forecast: &g.forecast, Routes: g.routes},
		zerolog.Nop())
}

// script is what one connection of the fake source streams.
type script struct {
	live     []replication.Item // sent while ctx lives
	fail     error              // when set, returned after live (a broken stream)
	shutdown []replication.Item // sent after ctx ended, before End (the open transaction's rest)
	// noEnd: after the shutdown items the source returns without End or
	// waiting for drained (its drain timeout passed).
	noEnd bool
	// together sends live in one hand-over (as the source does with a
	// transaction) instead of one item per send.
	together bool
}

// stream is a source that keeps the contract of package source: it takes an
// event's weight from the budget before sending it, never closes out, and
// after ctx ended sends its last items and End, then waits for drained and
// logs the position its final status update would report.
func (g *rig) stream(s script) fakeSource {
	return fakeSource{run: func(ctx context.Context, out chan<- []replication.Item, drained <-chan struct{}) error {
		if s.together {
			_ = g.emit(ctx, out, s.live...)
		}
		for _, it := range s.live {
			if s.together || g.emit(ctx, out, it) != nil {
				break
			}
		}
		if s.fail != nil && ctx.Err() == nil {
			return s.fail
		}
		<-ctx.Done()
		// Hand-offs after ctx ended stop once the consumer is gone.
		ectx, cancel := untilClosed(drained)
		defer cancel()
		last := slices.Clone(s.shutdown)
		if !s.noEnd {
			last = append(last, replication.Item{End: true})
		}
		for _, it := range last {
			if g.emit(ectx, out, it) != nil {
				break
			}
		}
		if s.noEnd {
			return nil
		}
		<-drained
		g.log.add("drained confirmed=%d", g.tracker.Confirmed())
		return nil
	}}
}

func (g *rig) emit(ctx context.Context, out chan<- []replication.Item, its ...replication.Item) error {
	for i, it := range its {
		if !it.Commit && !it.End {
			if err := g.budget.Take(ctx, &its[i].Event); err != nil {
				g.budget.Give(replication.Events(its[:i]))
				return err
			}
		}
	}
	select {
	case out <- its:
		return nil
	case <-ctx.Done():
		g.budget.Give(replication.Events(its))
		return ctx.Err()
	}
}

// untilClosed is a context that ends when ch is closed.
func untilClosed(ch <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// checkBudget asserts that every byte the source took was given back.
func (g *rig) checkBudget() {
	g.t.Helper()
	// An event of the budget's size takes all of it: only a whole budget has that.
	whole := &event.Event{Context: make([]byte, g.capacity)}
	if !g.budget.TryTake(whole) {
		g.t.Errorf("budget of %d bytes not whole: the relay kept weight the source took", g.capacity)
		return
	}
	g.budget.Give(event.All([]event.Event{*whole}))
}

// signal returns a commit callback that logs the confirmed position and
// closes the returned channel.
func (g *rig) signal() (func(context.Context) error, <-chan struct{}) {
	done := make(chan struct{})
	return func(context.Context) error {
		g.log.add("after-flush confirmed=%d", g.tracker.Confirmed())
		close(done)
		return nil
	}, done
}

// run is a Relay.Run in progress.
type run struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func start(t *testing.T, r *Relay) *run {
	ctx, cancel := context.WithCancel(t.Context())
	x := &run{cancel: cancel, done: make(chan struct{})}
	go func() {
		x.err = r.Run(ctx)
		close(x.done)
	}()
	// The bubble's clock stops with the test's goroutine: stop Run first.
	t.Cleanup(func() { _ = x.stop() })
	return x
}

func (x *run) wait() error {
	<-x.done
	return x.err
}

// stop cancels Run's context (SIGTERM) and waits for it to return.
func (x *run) stop() error {
	x.cancel()
	return x.wait()
}

// halted waits for Run to stop by itself; closing ch (a flush) first is a
// failure.
func (x *run) halted(t *testing.T, ch <-chan struct{}) error {
	t.Helper()
	select {
	case <-x.done:
		return x.err
	case <-ch:
		t.Errorf("the batch was flushed and confirmed; want Run to stop with an error")
		return x.stop()
	}
}

// until waits for ch, failing if Run returns first.
func (x *run) until(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-x.done:
		t.Fatalf("Run returned before %s: %v", what, x.err)
	}
}

var (
	errDown   = errors.New("clickhouse: connection refused")
	errSchema = errors.New("clickhouse: code 16: no such column event_tag in table event_log")
)

// Nothing is acknowledged before the sink accepted the batch, and the rows
// are deleted before the position is confirmed.
func TestAckOnlyAfterSinkAccepted(t *testing.T) {
	tests := []struct {
		name     string
		sinkErrs []error // returned by the first writes, then nil
	}{
		{name: "sink accepts at once"},
		{name: "two retryable failures", sinkErrs: []error{errDown, errDown}},
		{name: "attempt timeouts are retried", sinkErrs: []error{context.DeadlineExceeded, errDown}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, bigBudget)
				calls := 0
				g.sink.write = func(_ context.Context, evs []event.Event) error {
					var err error
					if calls < len(tc.sinkErrs) {
						err = tc.sinkErrs[calls]
					}
					calls++
					g.log.add("write %v confirmed=%d err=%v", evIDs(evs), g.tracker.Confirmed(), err)
					return err
				}
				after, flushed := g.signal()
				live := tx(100, 1, 2, 3)
				live[3].AfterConfirm = after
				g.sources = []Source{g.stream(script{live: live})}
				x := start(t, g.relay(batch.Policy{MaxEvents: 100, MaxAge: 10 * time.Millisecond}))

				x.until(t, flushed, "the flush")
				if err := x.stop(); err != nil {
					t.Errorf("Run: %v", err)
				}
				var want []string
				for _, err := range tc.sinkErrs {
					want = append(want, fmt.Sprintf("write [1 2 3] confirmed=0 err=%v", err))
				}
				want = append(want,
					"write [1 2 3] confirmed=0 err=<nil>",
					"delete [1 2 3] confirmed=0",
					"after-flush confirmed=100",
					"drained confirmed=100",
				)
				checkLog(t, g.log.get(), want)
				if got := g.tracker.Confirmed(); got != 100 {
					t.Errorf("Confirmed() = %d, want 100", got)
				}
				if got, want := count(t, g.metrics.SinkErrorsTotal.WithLabelValues(metrics.SinkErrorRetryable)), float64(len(tc.sinkErrs)); got != want {
					t.Errorf("retryable sink errors = %v, want %v", got, want)
				}
				g.checkBudget()
			})
		})
	}
}

// A transaction split over batches is acknowledged only by the batch that
// holds its commit.
func TestTransactionSpanningBatches(t *testing.T) {
	tests := []struct {
		name      string
		maxEvents int
		failWrite int // 1-based write that fails permanently; 0 for none
		want      []string
		wantErr   error
		wantAcked uint64
	}{
		{
			name:      "batch size 1",
			maxEvents: 1,
			want: []string{
				"write [1] confirmed=0", "delete [1] confirmed=0",
				"write [2] confirmed=0", "delete [2] confirmed=0",
				"write [3] confirmed=0", "delete [3] confirmed=0",
				"after-flush confirmed=100", "drained confirmed=100",
			},
			wantAcked: 100,
		},
		{
			name:      "batch size 2 (CH_OUTBOX_BATCH_SIZE=2)",
			maxEvents: 2,
			want: []string{
				"write [1 2] confirmed=0", "delete [1 2] confirmed=0",
				"write [3] confirmed=0", "delete [3] confirmed=0",
				"after-flush confirmed=100", "drained confirmed=100",
			},
			wantAcked: 100,
		},
		{
			name:      "batch full just before the commit",
			maxEvents: 3,
			want: []string{
				"write [1 2 3] confirmed=0", "delete [1 2 3] confirmed=0",
				"after-flush confirmed=100", "drained confirmed=100",
			},
			wantAcked: 100,
		},
		{
			name:      "the commit's batch fails: nothing confirmed",
			maxEvents: 2,
			failWrite: 2,
			want: []string{
				"write [1 2] confirmed=0", "delete [1 2] confirmed=0",
				"write [3] refused", "drained confirmed=0",
			},
			wantErr: errSchema,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, bigBudget)
				writes := 0
				g.sink.write = func(_ context.Context, evs []event.Event) error {
					writes++
					switch {
					case len(evs) == 0: // the commit alone: nothing to store
					case writes == tc.failWrite:
						g.log.add("write %v refused", evIDs(evs))
						return retry.Permanent(errSchema)
					default:
						g.log.add("write %v confirmed=%d", evIDs(evs), g.tracker.Confirmed())
					}
					return nil
				}
				after, flushed := g.signal()
				live := tx(100, 1, 2, 3)
				live[3].AfterConfirm = after
				g.sources = []Source{g.stream(script{live: live})}
				x := start(t, g.relay(batch.Policy{MaxEvents: tc.maxEvents, MaxAge: 10 * time.Millisecond}))

				var err error
				if tc.wantErr == nil {
					x.until(t, flushed, "the commit's batch was flushed")
					err = x.stop()
				} else {
					err = x.halted(t, flushed)
				}
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("Run = %v, want %v", err, tc.wantErr)
				}
				checkLog(t, g.log.get(), tc.want)
				if got := g.tracker.Confirmed(); got != tc.wantAcked {
					t.Errorf("Confirmed() = %d, want %d", got, tc.wantAcked)
				}
				if tc.wantErr == nil {
					g.checkBudget()
				}
			})
		})
	}
}

// A permanent sink error that is not about an event's content stops the
// relay with nothing confirmed or deleted.
func TestPermanentSinkError(t *testing.T) {
	tests := []struct {
		name     string
		sinkErrs []error // one per write; the last is permanent
	}{
		{name: "permanent at once", sinkErrs: []error{retry.Permanent(errSchema)}},
		{name: "permanent after retryable failures", sinkErrs: []error{errDown, errDown, retry.Permanent(fmt.Errorf("insert: %w", errSchema))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, bigBudget)
				calls := 0
				g.sink.write = func(_ context.Context, evs []event.Event) error {
					if calls >= len(tc.sinkErrs) {
						t.Errorf("write %d after a permanent error", calls+1)
						return nil
					}
					err := tc.sinkErrs[calls]
					calls++
					g.log.add("write %v", evIDs(evs))
					return err
				}
				after, flushed := g.signal()
				live := tx(100, 1, 2, 3)
				live[3].AfterConfirm = after
				g.sources = []Source{g.stream(script{live: live})}
				x := start(t, g.relay(batch.Policy{MaxEvents: 100, MaxAge: 10 * time.Millisecond}))

				err := x.halted(t, flushed)
				if !errors.Is(err, errSchema) || !retry.IsPermanent(err) {
					t.Errorf("Run = %v, want a permanent error wrapping %v", err, errSchema)
				}
				want := slices.Repeat([]string{"write [1 2 3]"}, len(tc.sinkErrs))
				checkLog(t, g.log.get(), append(want, "drained confirmed=0"))
				if got := g.tracker.Confirmed(); got != 0 {
					t.Errorf("Confirmed() = %d, want 0", got)
				}
				if got := count(t, g.metrics.SinkErrorsTotal.WithLabelValues(metrics.SinkErrorFatal)); got != 1 {
					t.Errorf("fatal sink errors = %v, want 1", got)
				}
			})
		})
	}
}

// Events the sink rejects for their content are isolated by bisection and
// dead-lettered; the rest is written, every row deleted and the commit
// confirmed, also when the sink rejects the whole batch: a writer's data
// must not stop the stream.
func TestRejectedEvents(t *testing.T) {
	tests := []struct {
		name   string
		events []byte
		poison []byte
	}{
		{name: "one poison among 8", events: seq(1, 8), poison: []byte{6}},
		{name: "two adjacent poison after two good", events: seq(1, 4), poison: []byte{3, 4}},
		{name: "poison first and last", events: seq(1, 5), poison: []byte{1, 5}},
		{name: "a batch of only 2 poison is dead-lettered", events: seq(1, 2), poison: seq(1, 2)},
		{name: "a transaction of 12 all poison is dead-lettered whole", events: seq(1, 12), poison: seq(1, 12)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, bigBudget)
				var written []byte
				g.sink.write = func(_ context.Context, evs []event.Event) error {
					for _, e := range evs {
						if slices.Contains(tc.poison, e.ID[15]) {
							return retry.Permanent(fmt.Errorf("event %d: cannot parse event_context: %w", e.ID[15], event.ErrRejected))
						}
					}
					written = append(written, evIDs(evs)...)
					return nil
				}
				put := g.dead.put
				g.dead.put = func(ctx context.Context, rs []deadletter.Rejected) error {
					for _, rj := range rs {
						if !errors.Is(rj.Err, event.ErrRejected) || !strings.Contains(rj.Err.Error(), fmt.Sprintf("event %d:", rj.Event.ID[15])) {
							t.Errorf("event %d dead-lettered with %v, want its own rejection", rj.Event.ID[15], rj.Err)
						}
					}
					return put(ctx, rs)
				}
				after, flushed := g.signal()
				live := tx(100, tc.events...)
				live[len(live)-1].AfterConfirm = after
				g.sources = []Source{g.stream(script{live: live})}
				x := start(t, g.relay(batch.Policy{MaxEvents: 100, MaxAge: 10 * time.Millisecond}))

				x.until(t, flushed, "the flush")
				if err := x.stop(); err != nil {
					t.Errorf("Run: %v", err)
				}
				good := slices.DeleteFunc(slices.Clone(tc.events), func(n byte) bool { return slices.Contains(tc.poison, n) })
				if !slices.Equal(written, good) {
					t.Errorf("written %v, want each good event once: %v", written, good)
				}
				checkLog(t, g.log.get(), []string{
					fmt.Sprintf("dead-letter %v", tc.poison),
					fmt.Sprintf("delete %v confirmed=0", tc.events),
					"after-flush confirmed=100",
					"drained confirmed=100",
				})
				if got, want := count(t, g.metrics.DeadLetterEventsTotal), float64(len(tc.poison)); got != want {
					t.Errorf("dead-lettered events metric = %v, want %v", got, want)
				}
				g.checkBudget()
			})
		})
	}
}

// On shutdown the complete transactions are flushed and confirmed before
// drained is closed; an open transaction is not written.
func TestShutdownDrain(t *testing.T) {
	tests := []struct {
		name      string
		live      []replication.Item
		shutdown  []replication.Item // what the source still sends before End
		noEnd     bool
		stall     bool // the sink never answers
		want      []string
		wantAcked uint64
	}{
		{
			name: "nothing buffered",
			want: []string{"drained confirmed=0"},
		},
		{
			name: "complete transactions buffered",
			live: slices.Concat(tx(100, 1, 2), tx(200, 3, 4)),
			want: []string{
				"write [1 2 3 4] confirmed=0", "delete [1 2 3 4] confirmed=0", "drained confirmed=200",
			},
			wantAcked: 200,
		},
		{
			name:     "open transaction completed by the source",
			live:     append(tx(100, 1, 2), evItem(3)),
			shutdown: []replication.Item{evItem(4), {Commit: true, EndLSN: 200}},
			want: []string{
				"write [1 2 3 4] confirmed=0", "delete [1 2 3 4] confirmed=0", "drained confirmed=200",
			},
			wantAcked: 200,
		},
		{
			name: "open transaction given up",
			live: append(tx(100, 1, 2), evItem(3)),
			want: []string{
				"write [1 2] confirmed=0", "delete [1 2] confirmed=0", "drained confirmed=100",
			},
			wantAcked: 100,
		},
		{
			name:     "uncommitted tail after more items",
			live:     append(tx(100, 1, 2), evItem(3)),
			shutdown: []replication.Item{evItem(4)},
			want: []string{
				"write [1 2] confirmed=0", "delete [1 2] confirmed=0", "drained confirmed=100",
			},
			wantAcked: 100,
		},
		{
			name:     "source returns without End",
			live:     append(tx(100, 1, 2), evItem(3)),
			shutdown: []replication.Item{evItem(4), {Commit: true, EndLSN: 200}, evItem(5)},
			noEnd:    true,
			want: []string{
				"write [1 2 3 4] confirmed=0", "delete [1 2 3 4] confirmed=0",
			},
			wantAcked: 200,
		},
		{
			name:  "sink stalled past the grace period",
			live:  tx(100, 1, 2),
			stall: true,
			want:  []string{"write [1 2] abandoned", "drained confirmed=0"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, bigBudget)
				if tc.stall {
					g.sink.write = func(ctx context.Context, evs []event.Event) error {
						<-ctx.Done()
						g.log.add("write %v abandoned", evIDs(evs))
						return ctx.Err()
					}
				}
				g.sources = []Source{g.stream(script{live: tc.live, shutdown: tc.shutdown, noEnd: tc.noEnd})}
				// No timed flush: only the shutdown writes.
				r := g.relay(batch.Policy{MaxEvents: 100, MaxAge: time.Hour})
				x := start(t, r)
				synctest.Wait() // every live item is buffered
				checkLog(t, g.log.get(), nil)

				stopped := time.Now()
				if err := x.stop(); err != nil {
					t.Errorf("Run = %v, want nil after a shutdown", err)
				}
				if took := time.Since(stopped); took > r.cfg.ShutdownGrace {
					t.Errorf("shutdown took %v, more than the grace period %v", took, r.cfg.ShutdownGrace)
				}
				checkLog(t, g.log.get(), tc.want)
				if got := g.tracker.Confirmed(); got != tc.wantAcked {
					t.Errorf("Confirmed() = %d, want %d", got, tc.wantAcked)
				}
				g.checkBudget()
			})
		})
	}
}

// The relay gives back exactly the weight the source took for each event,
// whether it was written or dropped.
func TestBudget(t *testing.T) {
	e := ev(1)
	w := int64(e.Size())
	big := evItem(1)
	big.Event.Context = []byte(`"` + strings.Repeat("x", 5000) + `"`)
	big2 := big
	big2.Event.ID = ev(2).ID
	tests := []struct {
		name     string
		capacity int64
		sources  []script
		want     []byte // event ids written, in order
		ackedAt  uint64 // the commit whose flush is awaited
	}{
		{
			name:     "small events",
			capacity: 1000,
			sources:  []script{{live: tx(100, 1, 2, 3)}},
			want:     seq(1, 3),
			ackedAt:  100,
		},
		{
			name:     "events larger than the budget take all of it",
			capacity: 100,
			sources:  []script{{live: []replication.Item{big, {Commit: true, EndLSN: 100}, big2, {Commit: true, EndLSN: 200}}}},
			want:     seq(1, 2),
			ackedAt:  200,
		},
		{
			name:     "more events than the budget holds: the source waits for flushes",
			capacity: 3 * w,
			sources:  []script{{live: slices.Concat(tx(100, 1, 2), tx(200, 3, 4), tx(300, 5, 6), tx(400, 7, 8), tx(500, 9, 10))}},
			want:     seq(1, 10),
			ackedAt:  500,
		},
		{
			name:     "open transaction of a broken stream is dropped",
			capacity: 1000,
			sources: []script{
				{live: append(tx(100, 1, 2), evItem(3)), fail: errors.New("receive message: unexpected EOF")},
				// Streamed again from the confirmed position.
				{live: slices.Concat(tx(100, 1, 2), tx(200, 3, 4))},
			},
			want:    seq(1, 4),
			ackedAt: 200,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, tc.capacity)
				var written []byte
				g.sink.write = func(_ context.Context, evs []event.Event) error {
					written = append(written, evIDs(evs)...)
					return nil
				}
				after, flushed := g.signal()
				for _, s := range tc.sources {
					for i, it := range s.live {
						if it.Commit && it.EndLSN == tc.ackedAt {
							s.live[i].AfterConfirm = after
						}
					}
					g.sources = append(g.sources, g.stream(s))
				}
				x := start(t, g.relay(batch.Policy{MaxEvents: 100, MaxAge: 10 * time.Millisecond}))

				x.until(t, flushed, "the last flush")
				synctest.Wait()
				g.checkBudget()
				if err := x.stop(); err != nil {
					t.Errorf("Run: %v", err)
				}
				if got := g.tracker.Confirmed(); got != tc.ackedAt {
					t.Errorf("Confirmed() = %d, want %d", got, tc.ackedAt)
				}
				for _, n := range tc.want {
					if !slices.Contains(written, n) {
						t.Errorf("event %d never written (written %v)", n, written)
					}
				}
				if len(tc.sources) == 1 && !slices.Equal(written, tc.want) {
					t.Errorf("written %v, want %v", written, tc.want)
				}
				if got, want := count(t, g.metrics.ReconnectsTotal), float64(len(tc.sources)-1); got != want {
					t.Errorf("reconnects = %v, want %v", got, want)
				}
				g.checkBudget()
			})
		})
	}
}

// A broken stream is reconnected after the backoff, a slot held by another
// relay is polled as a standby, and a permanent source error stops Run.
func TestReconnect(t *testing.T) {
	tests := []struct {
		name    string
		err     error // the first connection's
		minGap  time.Duration
		maxGap  time.Duration
		wantErr bool
	}{
		{name: "broken stream", err: errors.New("receive message: unexpected EOF"),
			minGap: 500 * time.Microsecond, maxGap: 5 * time.Millisecond},
		{name: "slot in use by another relay", err: fmt.Errorf("start replication: %w", replication.ErrSlotInUse),
			minGap: standbyPoll, maxGap: standbyPoll},
		{name: "permanent source error", err: retry.Permanent(errors.New("publication outbox_pub does not exist")),
			wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, bigBudget)
				var first time.Time
				second := make(chan time.Time, 1)
				g.sources = []Source{
					fakeSource{run: func(context.Context, chan<- []replication.Item, <-chan struct{}) error {
						first = time.Now()
						return tc.err
					}},
					fakeSource{run: func(ctx context.Context, out chan<- []replication.Item, drained <-chan struct{}) error {
						second <- time.Now()
						return g.stream(script{}).Run(ctx, out, drained)
					}},
				}
				x := start(t, g.relay(batch.Policy{MaxEvents: 100, MaxAge: 10 * time.Millisecond}))

				if tc.wantErr {
					select {
					case <-x.done:
						if !errors.Is(x.err, tc.err) {
							t.Errorf("Run = %v, want %v", x.err, tc.err)
						}
					case <-second:
						t.Errorf("reconnected after a permanent error")
					}
					return
				}
				var at time.Time
				select {
				case at = <-second:
				case <-x.done:
					t.Fatalf("Run returned instead of reconnecting: %v", x.err)
				}
				if gap := at.Sub(first); gap < tc.minGap || gap > tc.maxGap {
					t.Errorf("reconnected after %v, want %v..%v", gap, tc.minGap, tc.maxGap)
				}
				if err := x.stop(); err != nil {
					t.Errorf("Run: %v", err)
				}
				if got := count(t, g.metrics.ReconnectsTotal); got != 1 {
					t.Errorf("reconnects = %v, want 1", got)
				}
			})
		})
	}
}

// The next batch is written while the previous one's rows are deleted
// (the two steps overlap), and positions are still confirmed in order,
// each only after its own delete.
func TestWriteOverlapsCleanup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newRig(t, bigBudget)
		secondWrite := make(chan struct{})
		g.sink.write = func(_ context.Context, evs []event.Event) error {
			if len(evs) == 0 { // a commit alone: nothing to store
				return nil
			}
			g.log.add("write %v confirmed=%d", evIDs(evs), g.tracker.Confirmed())
			if evs[0].ID == ev(2).ID {
				close(secondWrite)
			}
			return nil
		}
		g.cleaner.delete = func(_ context.Context, ids [][16]byte) (int64, error) {
			if ids[0] == ev(1).ID {
				select {
				case <-secondWrite:
					g.log.add("delete %v overlapped the next write, confirmed=%d", rowIDs(ids), g.tracker.Confirmed())
				case <-time.After(time.Minute):
					g.log.add("delete %v ran alone", rowIDs(ids))
				}
			} else {
				g.log.add("delete %v confirmed=%d", rowIDs(ids), g.tracker.Confirmed())
			}
			return int64(len(ids)), nil
		}
		after, flushed := g.signal()
		second := tx(200, 2)
		second[1].AfterConfirm = after
		g.sources = []Source{g.stream(script{live: append(tx(100, 1), second...)})}
		x := start(t, g.relay(batch.Policy{MaxEvents: 1, MaxAge: 10 * time.Millisecond}))
		x.until(t, flushed, "the second batch")
		if err := x.stop(); err != nil {
			t.Errorf("Run = %v", err)
		}
		checkLog(t, g.log.get(), []string{
			"write [1] confirmed=0", "write [2] confirmed=0",
			"delete [1] overlapped the next write, confirmed=0",
			// MaxEvents 1: each event is a part of its transaction, and
			// its commit follows alone.
			"delete [2] confirmed=100",
			"after-flush confirmed=200", "drained confirmed=200",
		})
		g.checkBudget()
	})
}

// The source hands a run of transactions over at once: the relay cuts it
// into batches of whole transactions as if the items came one by one (a
// full batch at the last commit before the limit), and when a write fails
// half-way through the run, the events it did not take yet get their
// budget back too.
func TestHandOverOfManyItems(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("write fails %v", fail), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, bigBudget)
				g.sink.write = func(_ context.Context, evs []event.Event) error {
					if fail {
						g.log.add("write %v refused", evIDs(evs))
						return retry.Permanent(errSchema)
					}
					g.log.add("write %v confirmed=%d", evIDs(evs), g.tracker.Confirmed())
					return nil
				}
				after, flushed := g.signal()
				live := slices.Concat(tx(100, 1, 2), tx(200, 3, 4), tx(300, 5))
				live[len(live)-1].AfterConfirm = after
				g.sources = []Source{g.stream(script{live: live, together: true})}
				x := start(t, g.relay(batch.Policy{MaxEvents: 3, MaxAge: 10 * time.Millisecond}))
				if fail {
					if err := x.halted(t, flushed); !errors.Is(err, errSchema) {
						t.Errorf("Run = %v, want %v", err, errSchema)
					}
					checkLog(t, g.log.get(), []string{"write [1 2] refused", "drained confirmed=0"})
				} else {
					x.until(t, flushed, "the last batch")
					if err := x.stop(); err != nil {
						t.Errorf("Run = %v", err)
					}
					checkLog(t, g.log.get(), []string{
						"write [1 2] confirmed=0", "write [3 4] confirmed=100",
						"delete [1 2] confirmed=0", "delete [3 4] confirmed=100",
						"write [5] confirmed=200", "delete [5] confirmed=200",
						"after-flush confirmed=300", "drained confirmed=300",
					})
				}
				g.checkBudget()
			})
		})
	}
}

// With two sinks the next batch is written while the previous one still
// is, and a later batch that is written first still waits: deletes and
// acks keep batch order. (With one sink this deadlocks: the first write
// waits for the second.)
func TestConcurrentWritesCompleteInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newRig(t, bigBudget)
		second := make(chan struct{})
		g.sink.write = func(_ context.Context, evs []event.Event) error {
			switch {
			case len(evs) == 0: // a commit-only batch has nothing to store
				return nil
			case evs[0].ID[15] == 1:
				<-second // the first batch is slow to write…
				g.log.add("write %v confirmed=%d", evIDs(evs), g.tracker.Confirmed())
			default:
				// …the second is written meanwhile; logged before the first is let go,
				// or the two log lines race.
				g.log.add("write %v confirmed=%d", evIDs(evs), g.tracker.Confirmed())
				close(second)
			}
			return nil
		}
		g.more = []Sink{g.sink}
		after, flushed := g.signal()
		live := slices.Concat(tx(100, 1, 2), tx(200, 3, 4))
		live[len(live)-1].AfterConfirm = after
		g.sources = []Source{g.stream(script{live: live, together: true})}
		x := start(t, g.relay(batch.Policy{MaxEvents: 2, MaxAge: 10 * time.Millisecond}))
		x.until(t, flushed, "the second batch")
		if err := x.stop(); err != nil {
			t.Errorf("Run = %v", err)
		}
		checkLog(t, g.log.get(), []string{
			"write [3 4] confirmed=0", "write [1 2] confirmed=0",
			"delete [1 2] confirmed=0", "delete [3 4] confirmed=100",
			"after-flush confirmed=200", "drained confirmed=200",
		})
		g.checkBudget()
	})
}

// The position is confirmed only once the delivered rows are deleted.
func TestCleanupGatesAck(t *testing.T) {
	errLocked := errors.New("delete: canceling statement due to lock timeout")
	tests := []struct {
		name       string
		deleteErrs []error // returned by the first deletes, then nil
		want       []string
		wantErr    error
		wantAcked  uint64
	}{
		{
			name:       "retryable delete failures delay the ack",
			deleteErrs: []error{errLocked, errLocked},
			want: []string{
				"write [1 2] confirmed=0",
				"delete [1 2] confirmed=0 err=" + errLocked.Error(),
				"delete [1 2] confirmed=0 err=" + errLocked.Error(),
				"delete [1 2] confirmed=0 err=<nil>",
				"after-flush confirmed=100", "drained confirmed=100",
			},
			wantAcked: 100,
		},
		{
			name:       "a permanent delete failure confirms nothing",
			deleteErrs: []error{retry.Permanent(errLocked)},
			want: []string{
				"write [1 2] confirmed=0",
				"delete [1 2] confirmed=0 err=" + errLocked.Error(),
				"drained confirmed=0",
			},
			wantErr: errLocked,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, bigBudget)
				calls := 0
				g.cleaner.delete = func(_ context.Context, ids [][16]byte) (int64, error) {
					var err error
					if calls < len(tc.deleteErrs) {
						err = tc.deleteErrs[calls]
					}
					calls++
					g.log.add("delete %v confirmed=%d err=%v", rowIDs(ids), g.tracker.Confirmed(), err)
					if err != nil {
						return 0, err
					}
					return int64(len(ids)), nil
				}
				after, flushed := g.signal()
				live := tx(100, 1, 2)
				live[2].AfterConfirm = after
				g.sources = []Source{g.stream(script{live: live})}
				x := start(t, g.relay(batch.Policy{MaxEvents: 100, MaxAge: 10 * time.Millisecond}))

				var err error
				if tc.wantErr == nil {
					x.until(t, flushed, "the flush")
					err = x.stop()
				} else {
					err = x.halted(t, flushed)
				}
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("Run = %v, want %v", err, tc.wantErr)
				}
				checkLog(t, g.log.get(), tc.want)
				if got := g.tracker.Confirmed(); got != tc.wantAcked {
					t.Errorf("Confirmed() = %d, want %d", got, tc.wantAcked)
				}
				g.checkBudget()
			})
		})
	}
}

// SIGTERM while a flush retries against a failing sink: if the sink comes
// back within the grace period the batch and the rest of the open
// transaction are flushed; otherwise Run gives up after the grace with
// nothing confirmed, and returns nil (the events are streamed again).
func TestShutdownWhileSinkDown(t *testing.T) {
	tests := []struct {
		name      string
		recovers  bool
		want      []string
		wantAcked uint64
	}{
		{
			name:     "sink recovers within the grace",
			recovers: true,
			want: []string{
				"write [1 2] err=" + errDown.Error(),
				"write [1 2] confirmed=0 err=<nil>",
				// Whole transactions only: 3 waited for its commit.
				"write [3 4] confirmed=100 err=<nil>",
				"delete [1 2] confirmed=0", "delete [3 4] confirmed=100",
				"drained confirmed=200",
			},
			wantAcked: 200,
		},
		{
			name: "sink down for the whole grace",
			want: []string{
				"write [1 2] err=" + errDown.Error(),
				"drained confirmed=0",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newRig(t, bigBudget)
				writing, resume := make(chan struct{}), make(chan struct{})
				up, failed := false, false
				g.sink.write = func(ctx context.Context, evs []event.Event) error {
					if !up {
						if !failed {
							failed = true
							g.log.add("write %v err=%v", evIDs(evs), errDown)
							close(writing)
						}
						select {
						case <-resume:
							up = true
						case <-ctx.Done():
						}
						return errDown
					}
					g.log.add("write %v confirmed=%d err=<nil>", evIDs(evs), g.tracker.Confirmed())
					return nil
				}
				g.sources = []Source{g.stream(script{
					live:     append(tx(100, 1, 2), evItem(3)),
					shutdown: []replication.Item{evItem(4), {Commit: true, EndLSN: 200}},
				})}
				r := g.relay(batch.Policy{MaxEvents: 100, MaxAge: 10 * time.Millisecond})
				x := start(t, r)
				x.until(t, writing, "the first write")

				stopped := time.Now()
				x.cancel() // SIGTERM while the write hangs
				if tc.recovers {
					close(resume)
				}
				if err := x.wait(); err != nil {
					t.Errorf("Run = %v, want nil after a shutdown", err)
				}
				if took := time.Since(stopped); took > r.cfg.ShutdownGrace {
					t.Errorf("shutdown took %v, more than the grace period %v", took, r.cfg.ShutdownGrace)
				}
				checkLog(t, g.log.get(), tc.want)
				if got := g.tracker.Confirmed(); got != tc.wantAcked {
					t.Errorf("Confirmed() = %d, want %d", got, tc.wantAcked)
				}
				if tc.recovers {
					// Otherwise the source's last items stay queued, their
					// weight taken; harmless here, since Run is over.
					g.checkBudget()
				}
			})
		})
	}
}

// A flush can fail after the sink took the batch: here the commit's
// after-flush callback (the backfill marker update) meets a dropped
// PostgreSQL connection. The session ends and Run reconnects. The items the
// source had already queued for the next batch die with the session; their
// weight must go back to the budget, or the new source waits for room that
// never comes (an event as large as the budget then stalls the relay for
// good, while the stream looks healthy).
func TestQueuedItemsReleasedOnReconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := ev(1)
		w := int64(e.Size())
		g := newRig(t, 4*w)
		queue, queued := make(chan struct{}), make(chan struct{})
		writes := 0
		g.sink.write = func(_ context.Context, evs []event.Event) error {
			writes++
			g.log.add("write %v", evIDs(evs))
			if writes == 1 {
				close(queue) // the source decodes on while the batch is written
				<-queued
			}
			return nil
		}
		first := tx(100, 1, 2)
		first[2].AfterConfirm = func(context.Context) error {
			return errors.New("write outbox_relay_state: conn closed")
		}
		big := evItem(4)
		big.Event.Context = []byte(`"` + strings.Repeat("x", 5000) + `"`)
		after, flushed := g.signal()
		g.sources = []Source{
			fakeSource{run: func(ctx context.Context, out chan<- []replication.Item, drained <-chan struct{}) error {
				for _, it := range first {
					if err := g.emit(ctx, out, it); err != nil {
						t.Errorf("send: %v", err)
					}
				}
				<-queue
				if err := g.emit(ctx, out, evItem(3)); err != nil { // the next transaction, still open
					t.Errorf("send: %v", err)
				}
				close(queued)
				return g.stream(script{}).Run(ctx, out, drained)
			}},
			// Streamed again from the confirmed position 100.
			g.stream(script{live: slices.Concat(tx(200, 3), []replication.Item{big, {Commit: true, EndLSN: 300, AfterConfirm: after}})}),
		}
		x := start(t, g.relay(batch.Policy{MaxEvents: 100, MaxAge: 10 * time.Millisecond}))

		select {
		case <-flushed:
		case <-x.done:
			t.Fatalf("Run returned: %v", x.err)
		case <-time.After(time.Minute):
			t.Fatalf("stalled: the new source cannot take budget for event 4 (budget %d bytes); calls: %v", g.capacity, g.log.get())
		}
		synctest.Wait()
		g.checkBudget()
		if err := x.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		if got := g.tracker.Confirmed(); got != 300 {
			t.Errorf("Confirmed() = %d, want 300", got)
		}
	})
}

// Events carried by logical decoding messages are written with the rows of
// their transaction, in order, and acknowledged with them; only the rows
// are deleted.
func TestMessageEventsAreNotDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newRig(t, bigBudget)
		g.sink.write = func(_ context.Context, evs []event.Event) error {
			g.log.add("write %v", evIDs(evs))
			return nil
		}
		after, flushed := g.signal()
		live := tx(100, 1, 2, 3, 4)
		live[1].Event.FromMessage = true
		live[3].Event.FromMessage = true
		live[4].AfterConfirm = after
		g.sources = []Source{g.stream(script{live: live})}
		x := start(t, g.relay(batch.Policy{MaxEvents: 100, MaxAge: 10 * time.Millisecond}))
		x.until(t, flushed, "the flush")
		if err := x.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		checkLog(t, g.log.get(), []string{
			"write [1 2 3 4]",
			"delete [1 3] confirmed=0",
			"after-flush confirmed=100",
			"drained confirmed=100",
		})
	})
}

// txAt is a transaction committed at lsn (its events carry it, as the
// stream's do), ending at lsn+1.
func txAt(lsn uint64, ns ...byte) []replication.Item {
	its := tx(lsn+1, ns...)
	for i := range its[:len(its)-1] {
		its[i].Event.CommitLSN = lsn
	}
	return its
}

// A restarted relay rebuilds the recorded batches exactly: a done one is
// not written again (only deleted and confirmed), a pending one is written
// with its recorded identity and relayed_at; then batching goes on, and
// every new batch is recorded as pending before it is written.
func TestRecordedBatchesReplayed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newRig(t, bigBudget)
		recorded := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		recs := []batchlog.Record{
			{Range: batch.Range{First: batch.Position{LSN: 100}, Last: batch.Position{LSN: 100, Index: 1}, EndsTx: true}, Events: 2, RelayedAt: recorded, Done: true},
			{Range: batch.Range{First: batch.Position{LSN: 200}, Last: batch.Position{LSN: 200}, EndsTx: true}, Events: 1, RelayedAt: recorded},
		}
		g.sink.writeBatch = func(_ context.Context, evs []event.Event, token string, at time.Time) error {
			g.log.add("write %v %s recorded=%v", evIDs(evs), token, at.Equal(recorded))
			return nil
		}
		g.cleaner.deleteDone = func(_ context.Context, ids [][16]byte, done *batch.Range) (int64, error) {
			g.log.add("delete %v done=%s", rowIDs(ids), done.Token("s"))
			return int64(len(ids)), nil
		}
		bl := fakeBatchLog{
			load: func(context.Context) ([]batchlog.Record, error) { return recs, nil },
			pending: func(_ context.Context, rec batchlog.Record) error {
				g.log.add("pending %s", rec.Range.Token("s"))
				return nil
			},
		}
		after, flushed := g.signal()
		live := slices.Concat(txAt(100, 1, 2), txAt(200, 3), txAt(300, 4), txAt(400, 5))
		live[len(live)-1].AfterConfirm = after
		g.sources = []Source{g.stream(script{live: live, together: true})}
		r := g.relay(batch.Policy{MaxEvents: 100, MaxAge: 10 * time.Millisecond})
		r.batches = bl
		x := start(t, r)
		x.until(t, flushed, "the last batch")
		if err := x.stop(); err != nil {
			t.Errorf("Run = %v", err)
		}
		// The completer overlaps a batch's delete with the next write: check
		// the lines, and the order within each batch.
		got := g.log.get()
		want := []string{
			"delete [1 2] done=s:0/64.0:0/64.1",
			"write [3] s:0/C8.0:0/C8.0 recorded=true",
			"delete [3] done=s:0/C8.0:0/C8.0",
			"pending s:0/12C.0:0/190.0",
			"write [4 5] s:0/12C.0:0/190.0 recorded=false",
			"delete [4 5] done=s:0/12C.0:0/190.0",
			"after-flush confirmed=401", "drained confirmed=401",
		}
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
			t.Fatalf("calls:\n  %s\nwant (in any order across batches):\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		for _, pair := range [][2]string{{want[1], want[2]}, {want[3], want[4]}, {want[4], want[5]}, {want[5], want[6]}} {
			if slices.Index(got, pair[0]) > slices.Index(got, pair[1]) {
				t.Errorf("%q after %q", pair[0], pair[1])
			}
		}
		g.checkBudget()
	})
}

func gauge(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatalf("read gauge: %v", err)
	}
	return m.GetGauge().GetValue()
}

// While the sink refuses a batch, the buffer gauges show it (the "relay
// stuck" runbook reads them); once it is accepted they drop to zero.
func TestBufferGaugesHoldUntilSinkAccepted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newRig(t, bigBudget)
		failing, up := make(chan struct{}), make(chan struct{})
		var once sync.Once
		g.sink.write = func(_ context.Context, _ []event.Event) error {
			select {
			case <-up:
				return nil
			default:
				once.Do(func() { close(failing) })
				return errDown
			}
		}
		after, flushed := g.signal()
		live := tx(100, 1, 2, 3)
		live[3].AfterConfirm = after
		g.sources = []Source{g.stream(script{live: live})}
		x := start(t, g.relay(batch.Policy{MaxEvents: 100, MaxAge: 10 * time.Millisecond}))

		x.until(t, failing, "the first failed write")
		synctest.Wait()
		one := ev(1)
		wantBytes := float64(3 * one.Size())
		if got := gauge(t, g.metrics.BufferEvents); got != 3 {
			t.Errorf("%s = %v while the sink is down, want 3", metrics.NameBufferEvents, got)
		}
		if got := gauge(t, g.metrics.BufferBytes); got != wantBytes {
			t.Errorf("%s = %v while the sink is down, want %v", metrics.NameBufferBytes, got, wantBytes)
		}
		close(up)
		x.until(t, flushed, "the flush")
		if got := gauge(t, g.metrics.BufferEvents); got != 0 {
			t.Errorf("%s = %v after the sink accepted the batch, want 0", metrics.NameBufferEvents, got)
		}
		if got := gauge(t, g.metrics.BufferBytes); got != 0 {
			t.Errorf("%s = %v after the sink accepted the batch, want 0", metrics.NameBufferBytes, got)
		}
		if err := x.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		g.checkBudget()
	})
}

// Rows backfilled from the table come before any recorded range is
// streamed again: the relay gives the records up rather than hold the
// backfill, writes the backfilled rows without an identity and records
// the stream's batches as usual.
func TestBackfillGivesUpRecordedBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newRig(t, bigBudget)
		g.sink.writeBatch = func(_ context.Context, evs []event.Event, token string, _ time.Time) error {
			g.log.add("write %v token=%q", evIDs(evs), token)
			return nil
		}
		bl := fakeBatchLog{
			load: func(context.Context) ([]batchlog.Record, error) {
				return []batchlog.Record{{Range: batch.Range{First: batch.Position{LSN: 50}, Last: batch.Position{LSN: 50}, EndsTx: true}}}, nil
			},
			pending: func(_ context.Context, rec batchlog.Record) error {
				g.log.add("pending %s", rec.Range.Token("s"))
				return nil
			},
		}
		after, flushed := g.signal()
		backfill := []replication.Item{
			{Event: ev(1), Backfill: true}, {Event: ev(2), Backfill: true},
			{Commit: true, EndLSN: 90, Backfill: true},
		}
		live := slices.Concat(backfill, txAt(100, 3))
		live[len(live)-1].AfterConfirm = after
		g.sources = []Source{g.stream(script{live: live, together: true})}
		r := g.relay(batch.Policy{MaxEvents: 1, MaxAge: 10 * time.Millisecond})
		r.batches = bl
		x := start(t, r)
		x.until(t, flushed, "the stream's batch")
		if err := x.stop(); err != nil {
			t.Errorf("Run = %v", err)
		}
		got := g.log.get()
		for _, want := range []string{`write [1] token=""`, `write [2] token=""`, "pending s:0/64.0:0/64.0", `write [3] token="s:0/64.0:0/64.0"`} {
			if !slices.Contains(got, want) {
				t.Errorf("no %q in\n  %s", want, strings.Join(got, "\n  "))
			}
		}
		g.checkBudget()
	})
}

// The end of a backfill (the slot's backfill marker cleared) completes
// before the stream's first batch is recorded, even with a free sink: a
// relay that died in between would backfill again on restart, and a
// resumed backfill does not rebuild recorded batches (they would repeat).
func TestBackfillEndsBeforeStreamBatchesAreRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newRig(t, bigBudget)
		g.more = []Sink{g.sink}
		// The backfill's write waits until everything else in the bubble is
		// blocked: the relay had every chance to record the stream's batch.
		backfillWrites := make(chan struct{})
		g.sink.writeBatch = func(_ context.Context, evs []event.Event, token string, _ time.Time) error {
			if token == "" {
				<-backfillWrites
			}
			g.log.add("write %v token=%q", evIDs(evs), token)
			return nil
		}
		bl := fakeBatchLog{
			load: func(context.Context) ([]batchlog.Record, error) { return nil, nil },
			pending: func(_ context.Context, rec batchlog.Record) error {
				g.log.add("pending %s", rec.Range.Token("s"))
				return nil
			},
		}
		after, flushed := g.signal()
		backfill := []replication.Item{
			{Event: ev(1), Backfill: true}, {Event: ev(2), Backfill: true},
			{Commit: true, EndLSN: 90, Backfill: true, AfterConfirm: func(context.Context) error {
				g.log.add("backfill marker cleared")
				return nil
			}},
		}
		live := slices.Concat(backfill, txAt(100, 3))
		live[len(live)-1].AfterConfirm = after
		g.sources = []Source{g.stream(script{live: live, together: true})}
		r := g.relay(batch.Policy{MaxEvents: 10, MaxAge: 10 * time.Millisecond})
		r.batches = bl
		x := start(t, r)
		synctest.Wait()
		close(backfillWrites)
		x.until(t, flushed, "the stream's batch")
		if err := x.stop(); err != nil {
			t.Errorf("Run = %v", err)
		}
		got := g.log.get()
		cleared, pending := slices.Index(got, "backfill marker cleared"), slices.Index(got, "pending s:0/64.0:0/64.0")
		if cleared < 0 || pending < 0 || pending < cleared {
			t.Errorf("the stream's batch was recorded before the backfill ended:\n  %s", strings.Join(got, "\n  "))
		}
		g.checkBudget()
	})
}

// The relay keeps the forecast at its open batch's expected cut, for the
// source to pace its reads by: the age limit of the first event while it
// fills slowly, and that of an event arriving now once nothing is held.
func TestForecastFollowsTheOpenBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newRig(t, bigBudget)
		after, flushed := g.signal()
		live := tx(100, 1)
		live[1].AfterConfirm = after
		g.sources = []Source{g.stream(script{live: live})}
		const maxAge = time.Second
		x := start(t, g.relay(batch.Policy{MaxEvents: 100, MaxAge: maxAge}))
		arrived := time.Now()
		synctest.Wait()
		if got, want := g.forecast.Load(), arrived.Add(maxAge); !got.Equal(want) {
			t.Errorf("forecast with one event held = %v, want its age limit %v", got, want)
		}
		x.until(t, flushed, "the flush at the age limit")
		synctest.Wait()
		if got, want := g.forecast.Load(), time.Now().Add(maxAge); !got.Equal(want) {
			t.Errorf("forecast after the flush = %v, want %v", got, want)
		}
		if err := x.stop(); err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

// Batches rejected whole, rejectedStreak of them in a row, make the relay
// say the table is the likely cause, once per streak; a batch with an
// accepted event ends the streak.
func TestWatchRejections(t *testing.T) {
	var logs bytes.Buffer
	r := New(Config{}, Parts{Metrics: metrics.New()}, zerolog.New(&logs))
	rj := []deadletter.Rejected{{Err: fmt.Errorf("event 1: %w", event.ErrRejected)}}
	said := func() int { return strings.Count(logs.String(), "the table, not the data") }
	for i, step := range []struct {
		whole bool
		want  int
	}{{true, 0}, {true, 0}, {false, 0}, {true, 0}, {true, 0}, {true, 1}, {true, 1}, {false, 1}, {true, 1}, {true, 1}, {true, 2}} {
		r.watchRejections(step.whole, rj)
		if got := said(); got != step.want {
			t.Fatalf("after step %d (whole %v): said %d times, want %d:\n%s", i, step.whole, got, step.want, logs.String())
		}
	}
}
