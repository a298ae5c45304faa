package replication

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"

	"github.com/outbox-relay/relay/internal/ack"
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
	cfg := Config{ConnString: e.DatabaseURL, Slot: e.Slot, Publication: e.Publication, Table: "outbox_event",
		StatusInterval: time.Second, DrainTimeout: time.Second, BudgetBytes: 1 << 24, MessagePrefix: "ordered"}
	src := New(cfg, e.PG, ack.New(0), semaphore.NewWeighted(1<<24), zerolog.Nop(),
		Hooks{MessageIgnored: func(reason string) { ignored <- reason }}, nil)
	out := make(chan []Item, 64)
	drained := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out, drained) }()
	defer func() {
		cancel()
		close(drained)
		if err := <-done; err != nil {
			t.Logf("stream after cancel: %v", err)
		}
	}()
	var pending []Item // the rest of a hand-over, not consumed yet
	next := func() Item {
		t.Helper()
		for {
			select {
			case its := <-out:
				if len(its) > 0 {
					pending = append(pending, its[1:]...)
					return its[0]
				}
			case err := <-done:
				t.Fatalf("source stopped: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("no item within 30s")
			}
		}
	}
	take := func() Item {
		t.Helper()
		if len(pending) > 0 {
			it := pending[0]
			pending = pending[1:]
			return it
		}
		return next()
	}
	// The backfill's commit says the slot exists and the stream starts.
	for !take().Commit {
		continue
	}

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
