package batchlog_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/batchlog"
	"github.com/outbox-relay/relay/internal/testenv"
)

func rng(first, last uint64, endsTx bool) batch.Range {
	return batch.Range{First: batch.Position{LSN: first}, Last: batch.Position{LSN: last, Index: 2}, EndsTx: endsTx}
}

// Records come back in stream order with what was recorded; done is set in
// the caller's batch; a range recorded again replaces the old one; ranges
// the slot has confirmed past are forgotten by the next Pending.
func TestLog(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	var confirmed int64
	err := e.PG.QueryRow(ctx, "SELECT (lsn - '0/0')::bigint FROM pg_create_logical_replication_slot($1, 'pgoutput')", e.Slot).Scan(&confirmed)
	if err != nil {
		t.Fatal(err)
	}
	l := batchlog.New(e.PG, e.Slot)
	at := time.Date(2026, 12, 3, 18, 0, 1, 0, time.UTC)
	c := uint64(confirmed)
	old := batchlog.Record{Range: rng(c-200, c-100, true), Events: 3, RelayedAt: at}
	a := batchlog.Record{Range: rng(c+100, c+100, false), Events: 5, RelayedAt: at}
	b := batchlog.Record{Range: rng(c+100, c+200, true), Events: 7, RelayedAt: at.Add(time.Second)}
	next := batchlog.Record{Range: rng(c+300, c+300, true), Events: 1, RelayedAt: at}
	for _, r := range []batchlog.Record{old, a} {
		if err := l.Pending(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Recording a forgot old: the slot confirmed past its last event.
	if want := []batchlog.Record{a}; !slices.Equal(got, want) {
		t.Errorf("Load = %+v, want %+v", got, want)
	}
	// b has a's first position: it replaces a.
	if err := l.Pending(ctx, b); err != nil {
		t.Fatal(err)
	}
	pb := &pgx.Batch{}
	l.QueueDone(pb, b.Range)
	if err := e.PG.SendBatch(ctx, pb).Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Pending(ctx, next); err != nil {
		t.Fatal(err)
	}
	got, err = l.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.Done = true
	if want := []batchlog.Record{b, next}; !slices.Equal(got, want) {
		t.Errorf("Load = %+v, want %+v", got, want)
	}
}
