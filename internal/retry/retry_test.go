package retry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

var errBoom = errors.New("boom")

func TestPermanent(t *testing.T) {
	tests := []struct {
		name          string
		err           error
		wantNil       bool
		wantPermanent bool
	}{
		{name: "nil stays nil", err: Permanent(nil), wantNil: true},
		{name: "plain error is retryable", err: errBoom},
		{name: "marked", err: Permanent(errBoom), wantPermanent: true},
		{name: "marked twice", err: Permanent(Permanent(errBoom)), wantPermanent: true},
		{name: "wrapped after marking", err: fmt.Errorf("write batch: %w", Permanent(errBoom)), wantPermanent: true},
		{name: "joined with a retryable error", err: errors.Join(errBoom, Permanent(errors.New("bad schema"))), wantPermanent: true},
		{name: "marked error's text only wrapped", err: fmt.Errorf("write batch: %v", Permanent(errBoom))}, //nolint:errorlint // losing the mark is the point
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantNil {
				if tt.err != nil {
					t.Fatalf("got %v, want nil", tt.err)
				}
				return
			}
			if got := IsPermanent(tt.err); got != tt.wantPermanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.wantPermanent)
			}
		})
	}
	if IsPermanent(nil) {
		t.Error("IsPermanent(nil) = true")
	}
}

func TestPermanentKeepsError(t *testing.T) {
	err := Permanent(fmt.Errorf("insert: %w", errBoom))
	if err.Error() != "insert: boom" {
		t.Errorf("Error() = %q, want the wrapped text unchanged", err.Error())
	}
	if !errors.Is(err, errBoom) {
		t.Error("errors.Is(Permanent(err), cause) = false")
	}
	if twice := Permanent(err); twice != err { //nolint:errorlint // identity: no second layer
		t.Errorf("Permanent(Permanent(err)) = %#v, want the same value %#v", twice, err)
	}
}

func TestBackoffNext(t *testing.T) {
	tests := []struct {
		name    string
		b       Backoff
		skip    int           // calls before the one checked
		wantMin time.Duration // inclusive
		wantMax time.Duration // inclusive
	}{
		{name: "first wait is about Initial", b: Backoff{Initial: 100 * time.Millisecond, Max: time.Minute}, wantMin: 50 * time.Millisecond, wantMax: 100 * time.Millisecond},
		{name: "doubles", b: Backoff{Initial: 100 * time.Millisecond, Max: time.Minute}, skip: 1, wantMin: 100 * time.Millisecond, wantMax: 200 * time.Millisecond},
		{name: "doubles again", b: Backoff{Initial: 100 * time.Millisecond, Max: time.Minute}, skip: 3, wantMin: 400 * time.Millisecond, wantMax: 800 * time.Millisecond},
		{name: "capped at Max", b: Backoff{Initial: 100 * time.Millisecond, Max: time.Second}, skip: 10, wantMin: 500 * time.Millisecond, wantMax: time.Second},
		{name: "Initial above Max is capped", b: Backoff{Initial: time.Hour, Max: time.Second}, wantMin: 500 * time.Millisecond, wantMax: time.Second},
		{name: "many attempts do not overflow", b: Backoff{Initial: time.Second, Max: 30 * time.Second}, skip: 200, wantMin: 15 * time.Second, wantMax: 30 * time.Second},
		{name: "zero Backoff never waits", b: Backoff{}, skip: 5, wantMin: 0, wantMax: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Jitter is random: check the bounds on many draws.
			for range 200 {
				b := tt.b
				for range tt.skip {
					b.Next()
				}
				if got := b.Next(); got < tt.wantMin || got > tt.wantMax {
					t.Fatalf("Next() after %d calls = %v, want in [%v, %v]", tt.skip, got, tt.wantMin, tt.wantMax)
				}
			}
		})
	}
}

func TestBackoffJitters(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		b := Backoff{Initial: time.Second, Max: time.Minute}
		seen[b.Next()] = true
	}
	if len(seen) < 2 {
		t.Errorf("50 first waits were all %v: no jitter", seen)
	}
}

func TestBackoffReset(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Minute}
	for range 8 {
		b.Next()
	}
	b.Reset()
	if got := b.Next(); got < 50*time.Millisecond || got > 100*time.Millisecond {
		t.Errorf("Next() after Reset = %v, want in [50ms, 100ms]", got)
	}
}

// fakeOp is an operation whose results are scripted.
type fakeOp struct {
	results []error
	calls   int
	onCall  func(n int) // optional, sees the 1-based call number
}

func (f *fakeOp) run(context.Context) error {
	f.calls++
	if f.onCall != nil {
		f.onCall(f.calls)
	}
	if f.calls > len(f.results) {
		return nil
	}
	return f.results[f.calls-1]
}

func TestDo(t *testing.T) {
	perm := Permanent(errors.New("bad schema"))
	tests := []struct {
		name        string
		results     []error
		wantErr     error // nil: success
		wantCalls   int
		wantRetries int
	}{
		{name: "first try", results: nil, wantCalls: 1},
		{name: "after two retryable errors", results: []error{errBoom, errBoom}, wantCalls: 3, wantRetries: 2},
		{name: "permanent stops at once", results: []error{perm}, wantErr: perm, wantCalls: 1},
		{name: "permanent after retries", results: []error{errBoom, perm, nil}, wantErr: perm, wantCalls: 2, wantRetries: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := &fakeOp{results: tt.results}
			var retried []error
			err := Do(context.Background(), Backoff{}, op.run, func(err error, _ time.Duration) {
				retried = append(retried, err)
			})
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Do() = %v, want nil", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Do() = %v, want %v", err, tt.wantErr)
			}
			if op.calls != tt.wantCalls {
				t.Errorf("op called %d times, want %d", op.calls, tt.wantCalls)
			}
			if len(retried) != tt.wantRetries {
				t.Errorf("onRetry called %d times, want %d", len(retried), tt.wantRetries)
			}
			for _, r := range retried {
				if !errors.Is(r, errBoom) {
					t.Errorf("onRetry saw %v, want %v", r, errBoom)
				}
			}
		})
	}
}

func TestDoNilOnRetry(t *testing.T) {
	op := &fakeOp{results: []error{errBoom}}
	if err := Do(context.Background(), Backoff{}, op.run, nil); err != nil {
		t.Fatalf("Do() = %v, want nil", err)
	}
	if op.calls != 2 {
		t.Errorf("op called %d times, want 2", op.calls)
	}
}

func TestDoPassesWaits(t *testing.T) {
	op := &fakeOp{results: []error{errBoom, errBoom, errBoom}}
	var waits []time.Duration
	b := Backoff{Initial: time.Nanosecond, Max: 4 * time.Nanosecond}
	if err := Do(context.Background(), b, op.run, func(_ error, w time.Duration) { waits = append(waits, w) }); err != nil {
		t.Fatalf("Do() = %v", err)
	}
	if len(waits) != 3 {
		t.Fatalf("waits = %v, want 3", waits)
	}
	for i, w := range waits {
		if w < 0 || w > 4*time.Nanosecond {
			t.Errorf("wait %d = %v, want in [0, 4ns]", i, w)
		}
	}
}

// The context ends while the operation runs: Do returns at once with both
// the context's error and the operation's.
func TestDoContextEndsDuringOp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	op := &fakeOp{results: []error{errBoom, errBoom}, onCall: func(int) { cancel() }}
	err := Do(ctx, Backoff{Initial: time.Hour, Max: time.Hour}, op.run, nil)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errBoom) {
		t.Errorf("Do() = %v, want both context.Canceled and %v", err, errBoom)
	}
	if op.calls != 1 {
		t.Errorf("op called %d times, want 1", op.calls)
	}
}

// The context ends during the wait: an hour's backoff must not be slept.
func TestDoContextEndsDuringWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	op := &fakeOp{results: []error{errBoom, errBoom}}
	done := make(chan error, 1)
	go func() {
		done <- Do(ctx, Backoff{Initial: time.Hour, Max: time.Hour}, op.run, func(error, time.Duration) { cancel() })
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !errors.Is(err, errBoom) {
			t.Errorf("Do() = %v, want both context.Canceled and %v", err, errBoom)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Do did not return within 10s of the context ending")
	}
	if op.calls != 1 {
		t.Errorf("op called %d times, want 1", op.calls)
	}
}

// A permanent error wins even when the context has ended too.
func TestDoPermanentWithEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	perm := Permanent(errBoom)
	op := &fakeOp{results: []error{perm}}
	err := Do(ctx, Backoff{}, op.run, nil)
	if !errors.Is(err, perm) || errors.Is(err, context.Canceled) {
		t.Errorf("Do() = %v, want only the permanent error", err)
	}
}

func TestSleep(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), -time.Second)
	defer cancel2()
	tests := []struct {
		name    string
		ctx     context.Context
		d       time.Duration
		wantErr error
	}{
		{name: "zero wait", ctx: context.Background(), d: 0, wantErr: nil},
		{name: "short wait", ctx: context.Background(), d: time.Microsecond, wantErr: nil},
		{name: "canceled context cuts an hour short", ctx: canceled, d: time.Hour, wantErr: context.Canceled},
		{name: "expired context cuts an hour short", ctx: expired, d: time.Hour, wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- Sleep(tt.ctx, tt.d) }()
			select {
			case err := <-done:
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
					t.Errorf("Sleep() = %v, want %v", err, tt.wantErr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Sleep did not return within 10s")
			}
		})
	}
}
