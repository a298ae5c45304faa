package ack

import (
	"sync"
	"testing"
)

// op is one call on the Tracker.
type op func(*Tracker)

func begin() op               { return func(t *Tracker) { t.Begin() } }
func received(lsn uint64) op  { return func(t *Tracker) { t.Received(lsn) } }
func flushed(lsn uint64) op   { return func(t *Tracker) { t.Confirm(lsn) } }
func keepalive(lsn uint64) op { return func(t *Tracker) { t.Keepalive(lsn) } }
func start(lsn uint64) op     { return func(t *Tracker) { t.Start(lsn) } }
func reset(lsn uint64) op     { return func(t *Tracker) { t.Reset(lsn) } }

func TestPosition(t *testing.T) {
	tests := []struct {
		name          string
		start         uint64
		ops           []op
		wantWritten   uint64
		wantFlushed   uint64
		wantConfirmed uint64
	}{
		{
			name:          "new tracker reports its start",
			start:         100,
			wantWritten:   100,
			wantFlushed:   100,
			wantConfirmed: 100,
		},
		{
			name:          "received but not flushed is only written",
			start:         100,
			ops:           []op{begin(), received(200)},
			wantWritten:   200,
			wantFlushed:   100,
			wantConfirmed: 100,
		},
		{
			name:          "flushed moves the confirmed position",
			start:         100,
			ops:           []op{begin(), received(200), flushed(200)},
			wantWritten:   200,
			wantFlushed:   200,
			wantConfirmed: 200,
		},
		{
			name:          "partly flushed",
			start:         100,
			ops:           []op{begin(), received(200), begin(), received(300), flushed(200)},
			wantWritten:   300,
			wantFlushed:   200,
			wantConfirmed: 200,
		},
		{
			name:          "reset goes back to a new slot's start, idle skip-ahead dropped",
			start:         100,
			ops:           []op{begin(), received(300), flushed(300), keepalive(400), reset(250)},
			wantWritten:   250,
			wantFlushed:   250,
			wantConfirmed: 250,
		},
		{
			name:          "flushed never goes back",
			start:         100,
			ops:           []op{begin(), received(300), flushed(300), flushed(200)},
			wantWritten:   300,
			wantFlushed:   300,
			wantConfirmed: 300,
		},
		{
			name:          "received never goes back",
			start:         100,
			ops:           []op{begin(), received(300), begin(), received(200)},
			wantWritten:   300,
			wantFlushed:   100,
			wantConfirmed: 100,
		},
		{
			name:          "open transaction alone moves nothing",
			start:         100,
			ops:           []op{begin()},
			wantWritten:   100,
			wantFlushed:   100,
			wantConfirmed: 100,
		},
		{
			name:          "keepalive while idle skips ahead",
			start:         100,
			ops:           []op{keepalive(500)},
			wantWritten:   500,
			wantFlushed:   500,
			wantConfirmed: 100,
		},
		{
			name:          "keepalive after everything was flushed skips ahead",
			start:         100,
			ops:           []op{begin(), received(200), flushed(200), keepalive(500)},
			wantWritten:   500,
			wantFlushed:   500,
			wantConfirmed: 200,
		},
		{
			name:          "keepalive behind flushed changes nothing",
			start:         100,
			ops:           []op{begin(), received(200), flushed(200), keepalive(150)},
			wantWritten:   200,
			wantFlushed:   200,
			wantConfirmed: 200,
		},
		{
			name:          "keepalive during an open transaction is ignored",
			start:         100,
			ops:           []op{begin(), keepalive(500)},
			wantWritten:   100,
			wantFlushed:   100,
			wantConfirmed: 100,
		},
		{
			name:          "keepalive ignored during a transaction stays ignored after it is flushed",
			start:         100,
			ops:           []op{begin(), keepalive(500), received(200), flushed(200)},
			wantWritten:   200,
			wantFlushed:   200,
			wantConfirmed: 200,
		},
		{
			name:          "keepalive with received but unflushed data is ignored",
			start:         100,
			ops:           []op{begin(), received(200), keepalive(500)},
			wantWritten:   200,
			wantFlushed:   100,
			wantConfirmed: 100,
		},
		{
			name:          "keepalive with unflushed data stays ignored after the flush",
			start:         100,
			ops:           []op{begin(), received(200), keepalive(500), flushed(200)},
			wantWritten:   200,
			wantFlushed:   200,
			wantConfirmed: 200,
		},
		{
			name:          "idle skip-ahead is withdrawn while a transaction is open",
			start:         100,
			ops:           []op{keepalive(500), begin()},
			wantWritten:   100,
			wantFlushed:   100,
			wantConfirmed: 100,
		},
		{
			name:          "idle skip-ahead is withdrawn while received data is unflushed",
			start:         100,
			ops:           []op{keepalive(500), begin(), received(600)},
			wantWritten:   600,
			wantFlushed:   100,
			wantConfirmed: 100,
		},
		{
			name:          "data flushed past an old keepalive",
			start:         100,
			ops:           []op{keepalive(500), begin(), received(600), flushed(600)},
			wantWritten:   600,
			wantFlushed:   600,
			wantConfirmed: 600,
		},
		{
			name:          "a later, lower keepalive does not lower the skip-ahead",
			start:         100,
			ops:           []op{keepalive(500), keepalive(300)},
			wantWritten:   500,
			wantFlushed:   500,
			wantConfirmed: 100,
		},
		{
			name:          "start raises both positions",
			start:         100,
			ops:           []op{start(400)},
			wantWritten:   400,
			wantFlushed:   400,
			wantConfirmed: 400,
		},
		{
			name:          "start never lowers a position",
			start:         100,
			ops:           []op{begin(), received(300), flushed(300), start(200)},
			wantWritten:   300,
			wantFlushed:   300,
			wantConfirmed: 300,
		},
		{
			name:          "start keeps received data not yet flushed",
			start:         100,
			ops:           []op{begin(), received(300), start(200)},
			wantWritten:   300,
			wantFlushed:   200,
			wantConfirmed: 200,
		},
		{
			name:          "start closes a transaction the broken stream left open",
			start:         100,
			ops:           []op{begin(), start(100), keepalive(500)},
			wantWritten:   500,
			wantFlushed:   500,
			wantConfirmed: 100,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New(tt.start)
			for _, o := range tt.ops {
				o(tr)
			}
			w, f := tr.Position()
			if w != tt.wantWritten || f != tt.wantFlushed {
				t.Errorf("Position() = (%d, %d), want (%d, %d)", w, f, tt.wantWritten, tt.wantFlushed)
			}
			if c := tr.Confirmed(); c != tt.wantConfirmed {
				t.Errorf("Confirmed() = %d, want %d", c, tt.wantConfirmed)
			}
		})
	}
}

// TestPositionInvariants checks, after every step of a long mixed sequence,
// that the reported flushed position is backed by Flushed or, when idle, by
// a keepalive; and that written is never behind flushed.
func TestPositionInvariants(t *testing.T) {
	tr := New(10)
	var maxFlushed, maxKeepalive, maxReceived uint64 = 10, 0, 10
	inTx := false
	skipped := 0
	for i := range 2000 {
		lsn := uint64(10 + i*7%1000)
		switch i % 5 {
		case 0:
			tr.Begin()
			inTx = true
		case 1:
			tr.Received(lsn)
			inTx = false
			maxReceived = max(maxReceived, lsn)
		case 2:
			if i%3 == 0 {
				tr.Confirm(lsn)
				maxFlushed = max(maxFlushed, lsn)
			}
		case 3:
			tr.Keepalive(lsn + 5)
			if !inTx && maxFlushed >= maxReceived {
				maxKeepalive = max(maxKeepalive, lsn+5)
			}
		case 4:
			if i%7 == 0 {
				tr.Confirm(maxReceived)
				maxFlushed = max(maxFlushed, maxReceived)
			}
		}
		w, f := tr.Position()
		idle := !inTx && maxFlushed >= maxReceived
		want := maxFlushed
		if idle {
			want = max(maxFlushed, maxKeepalive)
		}
		if f != want {
			t.Fatalf("step %d: flushed %d, want %d (Flushed %d, keepalive %d, idle %v)", i, f, want, maxFlushed, maxKeepalive, idle)
		}
		if f > maxFlushed {
			skipped++
		}
		if w != max(maxReceived, f) {
			t.Fatalf("step %d: written %d, want max(received %d, flushed %d)", i, w, maxReceived, f)
		}
	}
	if skipped == 0 {
		t.Fatal("the sequence never exercised the idle skip-ahead")
	}
}

// TestConcurrentUse runs the relay loop (Flushed, Confirmed) against the
// replication goroutine (Begin, Received, Keepalive, Position, Start) under
// -race. The flushed position seen by the relay loop never goes back.
func TestConcurrentUse(t *testing.T) {
	const n = 5000
	tr := New(0)
	var wg sync.WaitGroup
	errs := make(chan string, 3)

	wg.Add(1)
	go func() { // replication goroutine
		defer wg.Done()
		for i := uint64(1); i <= n; i++ {
			tr.Begin()
			tr.Received(i * 10)
			tr.Keepalive(i*10 + 5)
			if w, f := tr.Position(); w < f {
				errs <- "written behind flushed"
				return
			}
		}
		tr.Start(0)
	}()

	wg.Add(1)
	go func() { // relay loop
		defer wg.Done()
		var last uint64
		for i := uint64(1); i <= n; i++ {
			tr.Confirm(i * 10)
			c := tr.Confirmed()
			if c < last {
				errs <- "confirmed went back"
				return
			}
			last = c
		}
	}()

	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if c := tr.Confirmed(); c != n*10 {
		t.Errorf("Confirmed() = %d, want %d", c, n*10)
	}
	w, f := tr.Position()
	if w < n*10 || f < n*10 {
		t.Errorf("Position() = (%d, %d), want both >= %d", w, f, n*10)
	}
	if f > n*10+5 {
		t.Errorf("flushed %d beyond the last keepalive %d", f, n*10+5)
	}
}
