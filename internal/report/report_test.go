package report

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/getsentry/sentry-go"
)

// captureTransport keeps events in memory instead of sending them.
type captureTransport struct {
	mu     sync.Mutex
	events []*sentry.Event
}

func (c *captureTransport) Configure(sentry.ClientOptions)        {}
func (c *captureTransport) Flush(time.Duration) bool              { return true }
func (c *captureTransport) FlushWithContext(context.Context) bool { return true }
func (c *captureTransport) Close()                                {}
func (c *captureTransport) SendEvent(e *sentry.Event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}
func (c *captureTransport) byType(typ string) (out []*sentry.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func newCapturing(t *testing.T, rate float64) (*Reporter, *captureTransport) {
	t.Helper()
	tr := &captureTransport{}
	r, err := New(Options{DSN: "https://public@sentry.invalid/1", Environment: "test", Release: "v1.2.3", SampleRate: rate, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return r, tr
}

func TestDisabledIsNoop(t *testing.T) {
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Enabled() {
		t.Fatal("enabled without a DSN")
	}
	ctx, finish := r.StartSpan(context.Background(), "flush", nil)
	finish()
	if sentry.SpanFromContext(ctx) != nil {
		t.Fatal("a span was started without a DSN")
	}
	r.Error(errors.New("x"), nil) // must not panic
}

func TestErrorCarriesTagsReleaseAndEnvironment(t *testing.T) {
	r, tr := newCapturing(t, 0)
	r.Error(errors.New("write batch: boom"), map[string]string{"slot": "outbox_relay", "lsn": "0/16B3748"})
	r.Flush(time.Second)
	evs := tr.byType("")
	if len(evs) != 1 {
		t.Fatalf("captured %d error events, want 1", len(evs))
	}
	e := evs[0]
	if e.Tags["slot"] != "outbox_relay" || e.Tags["lsn"] != "0/16B3748" {
		t.Errorf("tags = %v", e.Tags)
	}
	if e.Release != "v1.2.3" || e.Environment != "test" {
		t.Errorf("release %q environment %q", e.Release, e.Environment)
	}
}

func TestFlushTransactionHasSpans(t *testing.T) {
	r, tr := newCapturing(t, 1)
	ctx, finish := r.StartSpan(context.Background(), "flush", map[string]string{"batch_size": "3"})
	for _, op := range []string{"sink.write", "outbox.delete", "lsn.ack"} {
		_, done := r.StartSpan(ctx, op, nil)
		done()
	}
	finish()
	r.Flush(time.Second)
	txs := tr.byType("transaction")
	if len(txs) != 1 {
		t.Fatalf("captured %d transactions, want 1", len(txs))
	}
	var ops []string
	for _, s := range txs[0].Spans {
		ops = append(ops, s.Op)
	}
	for _, want := range []string{"sink.write", "outbox.delete", "lsn.ack"} {
		if !slices.Contains(ops, want) {
			t.Errorf("spans %v lack %q", ops, want)
		}
	}
	if txs[0].Tags["batch_size"] != "3" {
		t.Errorf("transaction tags = %v", txs[0].Tags)
	}
}

func TestSampleRateZeroSendsNoTransaction(t *testing.T) {
	r, tr := newCapturing(t, 0)
	_, finish := r.StartSpan(context.Background(), "flush", nil)
	finish()
	r.Flush(time.Second)
	if n := len(tr.byType("transaction")); n != 0 {
		t.Fatalf("captured %d transactions at sample rate 0", n)
	}
}
