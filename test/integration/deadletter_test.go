package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// An event ClickHouse cannot store (a date outside event_log's range) is
// moved to outbox_dead_letter with the reason; the rest of its batch is
// delivered and the stream goes on.
func TestRejectedEventIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	tx, err := e.PG.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		when := "2024-01-01T00:00:00Z"
		if i == 4 {
			when = "1900-01-01T00:00:00Z"
		}
		if _, err := tx.Exec(ctx, `INSERT INTO outbox_event (event_type, environment, event_context, event_date_time)
			VALUES ('dl', 'test', jsonb_build_object('i', $1::int), $2::timestamptz)`, i, when); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, relayBin, e.RelayEnv("CH_OUTBOX_BATCH_SIZE=100"), "run")
	e.WaitDelivered(t, 9, time.Minute, p)

	var n int
	var reason string
	if err := e.PG.QueryRow(ctx, `SELECT count(*), min(error) FROM outbox_dead_letter WHERE event_context->>'i' = '4'`).Scan(&n, &reason); err != nil {
		t.Fatal(err)
	}
	if n != 1 || reason == "" {
		t.Fatalf("dead letters for the poison event = %d (reason %q), want 1 with a reason", n, reason)
	}
	// The stream goes on after the rejection.
	if _, err := e.PG.Exec(ctx, `INSERT INTO outbox_event (event_type, environment, event_context) VALUES ('after', 'test', '{}')`); err != nil {
		t.Fatal(err)
	}
	e.WaitDelivered(t, 10, time.Minute, p)
	var total int
	if err := e.PG.QueryRow(ctx, `SELECT count(*) FROM outbox_dead_letter`).Scan(&total); err != nil || total != 1 {
		t.Fatal(fmt.Sprint("dead letters total = ", total, err))
	}
}
