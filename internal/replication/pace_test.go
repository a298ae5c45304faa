package replication

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestPace(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	tests := []struct {
		name    string
		wait    time.Duration
		nextCut func() time.Time
		want    time.Duration
	}{
		{name: "no forecast: the receive wait", wait: 10 * ms, want: 10 * ms},
		{name: "unknown cut: the receive wait", wait: 10 * ms,
			nextCut: func() time.Time { return time.Time{} }, want: 10 * ms},
		{name: "half the time left", wait: 10 * ms,
			nextCut: func() time.Time { return now.Add(300 * ms) }, want: 150 * ms},
		{name: "capped far from the cut", wait: 10 * ms,
			nextCut: func() time.Time { return now.Add(5 * time.Second) }, want: maxPacedWait},
		{name: "near the cut: the receive wait", wait: 10 * ms,
			nextCut: func() time.Time { return now.Add(12 * ms) }, want: 10 * ms},
		{name: "past the cut: the receive wait", wait: 10 * ms,
			nextCut: func() time.Time { return now.Add(-time.Second) }, want: 10 * ms},
		{name: "a receive wait above the cap is kept", wait: 400 * ms,
			nextCut: func() time.Time { return now.Add(5 * time.Second) }, want: 400 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &session{src: &Source{cfg: Config{ReceiveWait: tt.wait, NextCut: tt.nextCut}}}
			if got := st.pace(now); got != tt.want {
				t.Errorf("pace = %v, want %v", got, tt.want)
			}
		})
	}
}

// The messages read after a wait count as arrived when the wait began, so
// that the consumer's flush interval does not grow by the wait.
func TestItemsAfterAWaitCountFromItsStart(t *testing.T) {
	ctx := t.Context()
	const n, wait = 10, 100 * time.Millisecond
	addr := serveFakeWalsender(ctx, t, n, 20, false) // a transaction every 50 ms
	st, _, budget, out := fakeStream(ctx, t, addr, wait, nil, false)
	streamErr := make(chan error, 1)
	go func() { streamErr <- st.receive(ctx, ctx) }()

	handOvers, got := 0, 0
	for got < n {
		select {
		case its := <-out:
			received := time.Now()
			handOvers++
			for _, it := range its {
				if !it.Commit {
					got++
					budget.Give(Events([]Item{it}))
				}
				// The first hand-over follows no wait.
				if held := received.Sub(it.At); handOvers > 1 && held < wait/2 {
					t.Errorf("hand-over %d: an item's At is %v before it was handed over, want the wait's start (%v before)",
						handOvers, held, wait)
				}
			}
		case err := <-streamErr:
			t.Fatalf("stream ended after %d events: %v", got, err)
		case <-time.After(time.Minute):
			t.Fatalf("%d of %d events after a minute", got, n)
		}
	}
	if handOvers < 3 {
		t.Errorf("%d hand-overs; the test needs waits between them", handOvers)
	}
}

// Over TLS a read takes every record already received, not one: a
// walsender sends each message as a record of its own, and a stream that
// read one record per wait would fall behind any real load.
func TestTLSReadTakesTheRecordsReceived(t *testing.T) {
	ctx := t.Context()
	const n = 3000
	addr := serveFakeWalsender(ctx, t, n, 0, true) // flat out, over TLS
	st, _, budget, out := fakeStream(ctx, t, addr, 10*time.Millisecond, nil, true)
	if !st.sock.isTLS {
		t.Fatal("the stream's socket is not TLS")
	}
	streamErr := make(chan error, 1)
	go func() { streamErr <- st.receive(ctx, ctx) }()
	handOvers, items, got := 0, 0, 0
	for got < n {
		select {
		case its := <-out:
			handOvers++
			items += len(its)
			for _, it := range its {
				if !it.Commit {
					got++
					budget.Give(Events([]Item{it}))
				}
			}
		case err := <-streamErr:
			t.Fatalf("stream ended after %d events: %v", got, err)
		case <-time.After(time.Minute):
			t.Fatalf("%d of %d events after a minute (%d hand-overs)", got, n, handOvers)
		}
	}
	// A record at a time is one item a hand-over (a message each).
	if per := items / handOvers; per < 3 {
		t.Errorf("%d items in %d hand-overs (%d each): the stream reads a record at a time", items, handOvers, per)
	}
}

// serveFakeWalsender runs fakeWalsender in this process on a loopback
// listener until ctx ends and returns its address.
func serveFakeWalsender(ctx context.Context, t *testing.T, n, rate int, useTLS bool) string {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go fakeWalsender(ctx, ln, n, rate, useTLS)
	return ln.Addr().String()
}
