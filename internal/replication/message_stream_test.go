package replication

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/ack"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/outbox"
)

// TestMessagesInStreamOrder runs the source against PostgreSQL: one
// transaction interleaving rows and messages of our prefix (plus a message
// of another prefix) arrives as one run of items in exactly the order it
// was written, the messages marked FromMessage, all with the commit's LSN.
func TestMessagesInStreamOrder(t *testing.T) {
	e := testenv.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ignored := make(chan string, 10)
	take := startMessageSource(ctx, t, e, "ordered", Hooks{MessageIgnored: func(reason string) { ignored <- reason }})

	rows, err := outbox.NewPublisher("it")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := outbox.NewPublisher("it", outbox.WithMessages("ordered"))
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		id      uuid.UUID
		message bool
	}
	var order []want
	err = pgx.BeginFunc(ctx, e.PG, func(tx pgx.Tx) error {
		for i := range 6 {
			pub, message := rows, i%3 != 0
			if message {
				pub = msgs
			}
			ids, err := pub.Publish(ctx, tx, outbox.Event{Type: "t", Context: i}, outbox.Event{Type: "t", Context: -i})
			if err != nil {
				return err
			}
			order = append(order, want{ids[0], message}, want{ids[1], message})
			if _, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, 'other', 'x')"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var lsn uint64
	for i, w := range order {
		it := take()
		if it.Commit || uuid.UUID(it.Event.ID) != w.id || it.Event.FromMessage != w.message {
			t.Fatalf("item %d = %+v (from message %v), want id %s from message %v", i, it.Event.ID, it.Event.FromMessage, w.id, w.message)
		}
		if lsn != 0 && it.Event.CommitLSN != lsn {
			t.Fatalf("item %d commit LSN %d, want %d", i, it.Event.CommitLSN, lsn)
		}
		lsn = it.Event.CommitLSN
	}
	if it := take(); !it.Commit {
		t.Fatalf("after the events: %+v, want the commit", it)
	}
	if n := len(ignored); n != 6 {
		t.Errorf("ignored messages = %d, want 6", n)
	}
}

// startMessageSource runs a source in message mode (prefix) on e until
// ctx ends, and returns what takes its items one by one, from after the
// backfill's commit (the stream has started).
func startMessageSource(ctx context.Context, t *testing.T, e *testenv.Env, prefix string, hooks Hooks) func() Item {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	cfg := Config{ConnString: e.DatabaseURL, Slot: e.Slot, Publication: e.Publication, Outboxes: []Outbox{*defaultOutbox()},
		StatusInterval: time.Second, DrainTimeout: time.Second, MessagePrefix: prefix}
	src := New(cfg, e.PG, ack.New(0), event.NewBudget(1<<24), zerolog.Nop(), hooks, nil)
	out := make(chan []Item, 64)
	drained := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out, drained) }()
	t.Cleanup(func() {
		cancel()
		close(drained)
		if err := <-done; err != nil {
			t.Logf("stream after cancel: %v", err)
		}
	})
	var pending []Item // the rest of a hand-over, not consumed yet
	take := func() Item {
		t.Helper()
		for len(pending) == 0 {
			select {
			case its := <-out:
				pending = append(pending, its...)
			case err := <-done:
				t.Fatalf("source stopped: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("no item within 30s")
			}
		}
		it := pending[0]
		pending = pending[1:]
		return it
	}
	for !take().Commit {
		continue
	}
	return take
}

// A row and a message with the same extra column values reach the sink
// alike: the same shape (one *event.Columns: names, types, modifiers, NOT
// NULL as the Relation message and the catalog say) and the same Extra
// bytes (pgoutput's binary values), for values the column's modifier
// changes, NULLs and defaults too.
func TestMessageColumnsMatchRows(t *testing.T) {
	e := testenv.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := e.PG.Exec(ctx, `ALTER TABLE outbox_event ADD COLUMN n numeric(8,2), ADD COLUMN tag varchar(4) NOT NULL DEFAULT 'x',
		ADD COLUMN at timestamptz, ADD COLUMN doc jsonb, ADD COLUMN flag boolean, ADD COLUMN ids bigint[]`)
	if err != nil {
		t.Fatal(err)
	}
	take := startMessageSource(ctx, t, e, "cols", Hooks{})
	cols, err := outbox.ColumnTypes(ctx, e.PG)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := outbox.NewPublisher("it", outbox.WithColumnTypes(cols...))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := outbox.NewPublisher("it", outbox.WithColumnTypes(cols...), outbox.WithMessages("cols"))
	if err != nil {
		t.Fatal(err)
	}
	values := []map[string]any{
		{"n": "12.345", "tag": "abcd", "at": time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC), "doc": map[string]any{"k": []int{1}},
			"flag": true, "ids": []int64{1, -2}, "user_id": uuid.New()},
		{"n": nil, "at": nil, "doc": nil, "flag": nil, "ids": nil, "user_id": nil},
		{},
	}
	err = pgx.BeginFunc(ctx, e.PG, func(tx pgx.Tx) error {
		for _, v := range values {
			for _, pub := range []*outbox.Publisher{rows, msgs} {
				if _, err := pub.Publish(ctx, tx, outbox.Event{Type: "t", Context: 1, Columns: v}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range values {
		row, msg := take(), take()
		if row.Event.FromMessage || !msg.Event.FromMessage {
			t.Fatalf("pair %d: from message %v, %v; want a row then a message", i, row.Event.FromMessage, msg.Event.FromMessage)
		}
		if row.Event.Columns == nil || msg.Event.Columns != row.Event.Columns {
			t.Fatalf("pair %d: message shape %+v, row shape %+v: want the same", i, msg.Event.Columns, row.Event.Columns)
		}
		if !bytes.Equal(row.Event.Extra, msg.Event.Extra) {
			t.Errorf("pair %d: message Extra %x, row Extra %x", i, msg.Event.Extra, row.Event.Extra)
		}
	}
}
