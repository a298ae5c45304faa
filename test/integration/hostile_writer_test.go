package integration

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/outbox"
)

// TestHostileWriterCannotStopTheStream: in message mode, a role with no
// rights on the outbox emits garbage messages with the outbox prefix
// (pg_logical_emit_message is open to PUBLIC), and writers commit
// 1,000-event transactions ClickHouse rejects whole (dates before 1970),
// between good traffic. Every good event arrives exactly once, every bad
// one waits in the dead letters (a garbage message with its payload), and
// the relay never stops or reconnects.
func TestHostileWriterCannotStopTheStream(t *testing.T) {
	t.Parallel()
	role := testenv.RandomName("relay_stranger_")
	t.Cleanup(func() { dropRole(role) })
	e := testenv.New(t)
	ctx := context.Background()
	opsExec(ctx, t, e.PG, "CREATE ROLE "+role+" LOGIN")
	opsExec(ctx, t, e.PG, "GRANT CONNECT ON DATABASE "+pgx.Identifier{e.Name}.Sanitize()+" TO "+role)
	u, err := url.Parse(e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	stranger, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stranger.Close(ctx) }()

	p := startRelay(t, e, "RELAY_MESSAGE_PREFIX="+msgPrefix, "CH_OUTBOX_BATCH_SIZE=500")
	waitLog(t, p, logStreaming, 30*time.Second)
	msgs := msgPublisher(t, outbox.WithMessages(msgPrefix))
	const rounds, good, bad, garbage = 3, 200, 1000, 2
	for r := range rounds {
		evs := make([]outbox.Event, good)
		for i := range evs {
			evs[i] = outbox.Event{Type: "good", Context: map[string]int{"r": r, "i": i}}
		}
		publishTx(ctx, t, e, true, func(tx pgx.Tx) error { _, err := msgs.Publish(ctx, tx, evs...); return err })
		for range garbage {
			if _, err := stranger.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2::bytea)", msgPrefix, []byte("garbage \x1b[2J\x00")); err != nil {
				t.Fatal(err)
			}
		}
		old := make([]outbox.Event, bad)
		for i := range old {
			old[i] = outbox.Event{Type: "too_old", OccurredAt: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), Context: map[string]int{"i": i}}
		}
		publishTx(ctx, t, e, true, func(tx pgx.Tx) error { _, err := msgs.Publish(ctx, tx, old...); return err })
	}
	// A last good transaction: once it is in, everything before it was handled.
	publishTx(ctx, t, e, true, func(tx pgx.Tx) error {
		_, err := msgs.Publish(ctx, tx, outbox.Event{Type: "good", Context: map[string]string{"last": "yes"}})
		return err
	})
	testenv.Eventually(t, 2*time.Minute, "every good event and every dead letter", func() error {
		var goodRows uint64
		if err := e.CH.QueryRow(ctx, "SELECT count() FROM event_log WHERE event_type = 'good'").Scan(&goodRows); err != nil {
			return err
		}
		var letters, raws int
		if err := e.PG.QueryRow(ctx, "SELECT count(*), count(raw) FROM outbox_dead_letter").Scan(&letters, &raws); err != nil {
			return err
		}
		if p.Exited() {
			t.Fatalf("the relay stopped:\n%s", p.Output())
		}
		if goodRows != rounds*good+1 || letters != rounds*(bad+garbage) || raws != rounds*garbage {
			return fmt.Errorf("good rows %d of %d, dead letters %d of %d (%d of %d garbage)",
				goodRows, rounds*good+1, letters, rounds*(bad+garbage), raws, rounds*garbage)
		}
		return nil
	})
	var distinct uint64
	if err := e.CH.QueryRow(ctx, "SELECT uniqExact(event_id) FROM event_log WHERE event_type = 'good'").Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if distinct != rounds*good+1 {
		t.Fatalf("distinct good events %d, want %d", distinct, rounds*good+1)
	}
	out := p.Output()
	if strings.Contains(out, "stream interrupted") || strings.Contains(out, "reconnecting") {
		t.Fatalf("the relay reconnected:\n%s", out)
	}
	var raw []byte
	if err := e.PG.QueryRow(ctx, "SELECT raw FROM outbox_dead_letter WHERE raw IS NOT NULL LIMIT 1").Scan(&raw); err != nil || string(raw) != "garbage \x1b[2J\x00" {
		t.Fatalf("a garbage message's dead letter keeps %q (%v), want its payload", raw, err)
	}
	if code, out := dlRun(t, e.RelayEnv(), "deadletter", "replay", "--all"); code == dlExitOK || !strings.Contains(out, "cannot be replayed") {
		t.Fatalf("replay --all with undecodable messages: exit %d, want a refusal naming them:\n%s", code, out)
	}
}
