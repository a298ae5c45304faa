package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/payload"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/outbox"
)

const msgPrefix = "outbox_it"

// msgRow is one event as ClickHouse holds it (or as a test expects it).
type msgRow struct {
	Type, Env, Context string
	Micros             int64
	Version            uint64
	CommitLSN          uint64
}

func msgPublisher(t *testing.T, opts ...outbox.Option) *outbox.Publisher {
	t.Helper()
	pub, err := outbox.NewPublisher(spineEnvironment, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// publishTx publishes events through pub in one transaction, committed or
// rolled back, and returns them with their ids set.
func publishTx(ctx context.Context, t *testing.T, e *testenv.Env, commit bool, steps ...func(pgx.Tx) error) {
	t.Helper()
	tx, err := e.PG.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, step := range steps {
		if err := step(tx); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if commit {
		if err := tx.Commit(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
}

// publishStep publishes evs with pub (in message mode or not) and records
// them in want.
func publishStep(ctx context.Context, pub *outbox.Publisher, messages bool, want map[uuid.UUID]msgRow, evs ...outbox.Event) func(pgx.Tx) error {
	return func(tx pgx.Tx) error {
		for i := range evs {
			if evs[i].ID == uuid.Nil {
				evs[i].ID = uuid.New()
			}
		}
		if _, err := pub.Publish(ctx, tx, evs...); err != nil {
			return err
		}
		for _, ev := range evs {
			b, _ := json.Marshal(ev.Context)
			if raw, ok := ev.Context.(json.RawMessage); ok {
				b = raw
			}
			if !messages {
				// A row's context is jsonb: PostgreSQL's text of it arrives.
				if err := tx.QueryRow(ctx, "SELECT $1::jsonb::text", string(b)).Scan(&b); err != nil {
					return err
				}
			}
			want[ev.ID] = msgRow{Type: ev.Type, Env: spineEnvironment, Context: string(b),
				Micros: ev.OccurredAt.UnixMicro(), Version: uint64(max(ev.MetadataVersion, 1))}
		}
		return nil
	}
}

// eventLogRows reads every row of event_log (FINAL or not) by id, counting
// repeats.
func eventLogRows(ctx context.Context, e *testenv.Env, final bool) (map[uuid.UUID]msgRow, map[uuid.UUID]int, error) {
	dt64, err := spineDateTime64(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	micros := "toUInt64(event_date_time) * 1000000 + event_date_time_us"
	if dt64 {
		micros = "toUnixTimestamp64Micro(event_date_time)"
	}
	q := "SELECT toString(event_id), event_type, environment, event_context, toInt64(" + micros + "), metadata_version, commit_lsn FROM event_log"
	if final {
		q += " FINAL"
	}
	rows, err := e.CH.Query(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	got, seen := map[uuid.UUID]msgRow{}, map[uuid.UUID]int{}
	for rows.Next() {
		var id string
		var r msgRow
		if err := rows.Scan(&id, &r.Type, &r.Env, &r.Context, &r.Micros, &r.Version, &r.CommitLSN); err != nil {
			return nil, nil, err
		}
		u, err := uuid.Parse(id)
		if err != nil {
			return nil, nil, err
		}
		got[u] = r
		seen[u]++
	}
	return got, seen, rows.Err()
}

// emitRaw emits a message with a valid payload outside the publisher:
// another prefix, or not transactional.
func emitRaw(ctx context.Context, t *testing.T, e *testenv.Env, transactional bool, prefix, tag string) uuid.UUID {
	t.Helper()
	id := uuid.New()
	p := payload.Append(nil, payload.Fields{ID: id, OccurredAtMicros: time.Now().UnixMicro(), MetadataVersion: 1,
		Type: []byte(spineEventType), Environment: []byte(spineEnvironment), Context: []byte(`{"tag":"` + tag + `"}`)}, nil)
	mustExec(ctx, t, e.PG, "SELECT pg_logical_emit_message($1, $2::text, $3::bytea)", transactional, prefix, p)
	return id
}

// TestMessageModeDelivery: in message mode a rolled-back transaction's
// messages never arrive; a transaction of 10,000 messages, one with a
// 5 MiB message and one mixing rows and messages all arrive value-exact,
// once; messages of another prefix and non-transactional ones are ignored;
// only the table rows are deleted.
func TestMessageModeDelivery(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := startRelay(t, e, "RELAY_MESSAGE_PREFIX="+msgPrefix)
	waitLog(t, p, logStreaming, 30*time.Second)

	msgs := msgPublisher(t, outbox.WithMessages(msgPrefix), outbox.WithMaxContextBytes(6<<20))
	rows := msgPublisher(t)
	want := map[uuid.UUID]msgRow{}
	rolledBack := map[uuid.UUID]msgRow{}
	base := time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.UTC)
	ev := func(tag string, i int) outbox.Event {
		return outbox.Event{Type: spineEventType, OccurredAt: base.Add(time.Duration(i) * time.Microsecond),
			Context: map[string]any{"tag": tag, "i": i, "s": "ü \" \\ {"}, MetadataVersion: int64(i%5 + 1)}
	}

	publishTx(ctx, t, e, false,
		publishStep(ctx, msgs, true, rolledBack, ev("rb-msg", 1), ev("rb-msg", 2)),
		publishStep(ctx, rows, false, rolledBack, ev("rb-row", 3)))
	bulk := make([]outbox.Event, 10000)
	for i := range bulk {
		bulk[i] = ev("bulk", i)
	}
	publishTx(ctx, t, e, true, publishStep(ctx, msgs, true, want, bulk...))
	big := json.RawMessage(`{"tag":"big","pad":"` + strings.Repeat("x", 5<<20) + `"}`)
	publishTx(ctx, t, e, true, publishStep(ctx, msgs, true, want, outbox.Event{Type: spineEventType, OccurredAt: base, Context: big}))
	mixedIDs := map[uuid.UUID]bool{}
	mixed := map[uuid.UUID]msgRow{}
	publishTx(ctx, t, e, true,
		publishStep(ctx, rows, false, mixed, ev("mixed-row", 1)),
		publishStep(ctx, msgs, true, mixed, ev("mixed-msg", 2), ev("mixed-msg", 3)),
		publishStep(ctx, rows, false, mixed, ev("mixed-row", 4)),
		publishStep(ctx, msgs, true, mixed, ev("mixed-msg", 5)))
	for id, r := range mixed {
		want[id], mixedIDs[id] = r, true
	}
	ignored := []uuid.UUID{emitRaw(ctx, t, e, true, "other_prefix", "other"), emitRaw(ctx, t, e, false, msgPrefix, "nontx")}
	publishTx(ctx, t, e, true, publishStep(ctx, msgs, true, want, ev("marker", 0)))

	e.WaitDelivered(t, uint64(len(want)), 2*time.Minute, p)
	waitLog(t, p, `non-transactional message with the outbox prefix ignored`, 10*time.Second)
	for _, final := range []bool{true, false} {
		got, seen, err := eventLogRows(ctx, e, final)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("FINAL=%t: %d events, want %d", final, len(got), len(want))
		}
		bad := 0
		for id, w := range want {
			g, ok := got[id]
			w.CommitLSN = g.CommitLSN
			if !ok || g != w || seen[id] != 1 {
				if bad++; bad <= 3 {
					t.Errorf("FINAL=%t event %s: got %.80v (%d rows), want %.80v", final, id, g, seen[id], w)
				}
			}
		}
		for id := range rolledBack {
			if seen[id] > 0 {
				t.Errorf("rolled-back event %s arrived", id)
			}
		}
		for _, id := range ignored {
			if seen[id] > 0 {
				t.Errorf("ignored message %s arrived", id)
			}
		}
		var lsn uint64
		for id := range mixedIDs {
			if lsn != 0 && got[id].CommitLSN != lsn {
				t.Errorf("mixed transaction: commit_lsn %d and %d", lsn, got[id].CommitLSN)
			}
			lsn = got[id].CommitLSN
		}
	}
}

// TestMessageModeOffIgnoresMessages: without RELAY_MESSAGE_PREFIX the
// relay does not ask for messages; table rows flow as before.
func TestMessageModeOffIgnoresMessages(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := startRelay(t, e)
	waitLog(t, p, logStreaming, 30*time.Second)
	id := emitRaw(ctx, t, e, true, msgPrefix, "msg")
	spineInsert(ctx, t, e.PG, "row")
	e.WaitDelivered(t, 1, time.Minute, p)
	_, seen, err := eventLogRows(ctx, e, true)
	if err != nil {
		t.Fatal(err)
	}
	if seen[id] != 0 {
		t.Fatalf("message delivered with message mode off")
	}
	if strings.Contains(p.Output(), fmt.Sprint(id)) {
		t.Fatalf("relay mentions the message")
	}
}

// TestAPIMessageMode: `relay api` with RELAY_MESSAGE_PREFIX publishes its
// user_created events as messages (outbox_event refuses every insert here),
// stamped with user_id as in table mode, and the relay with the same
// prefix delivers them.
func TestAPIMessageMode(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	mustExec(ctx, t, e.PG, `CREATE FUNCTION no_rows() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'outbox_event must stay unused in message mode'; END $$`)
	mustExec(ctx, t, e.PG, `CREATE TRIGGER no_rows BEFORE INSERT ON outbox_event FOR EACH ROW EXECUTE FUNCTION no_rows()`)
	relay := startRelay(t, e, "RELAY_MESSAGE_PREFIX="+msgPrefix)
	waitLog(t, relay, logStreaming, 30*time.Second)
	addr := testenv.FreeAddr(t)
	api := testenv.Start(t, relayBin, e.RelayEnv("API_ADDR="+addr, "RELAY_MESSAGE_PREFIX="+msgPrefix), "api")
	client := &http.Client{Timeout: 5 * time.Second}
	const n = 20
	for i := range n {
		testenv.Eventually(t, 30*time.Second, "POST /users", func() error {
			if api.Exited() {
				t.Fatalf("api exited:\n%s", api.Output())
			}
			code, err := postUser(client, "http://"+addr, fmt.Sprintf("msg%d@example.com", i))
			if err == nil && code != http.StatusCreated {
				t.Fatalf("POST /users: status %d\n%s", code, api.Output())
			}
			return err
		})
	}
	e.WaitDelivered(t, n, time.Minute, relay)
	var users uint64
	if err := e.CH.QueryRow(ctx, "SELECT count() FROM event_log FINAL WHERE event_type = 'user_created'").Scan(&users); err != nil {
		t.Fatal(err)
	}
	if users != n {
		t.Fatalf("user_created events = %d, want %d", users, n)
	}
	// The messages carry user_id as rows do: the relay added the column.
	// (A message's context is the publisher's compact JSON.)
	var stamped uint64
	err := e.CH.QueryRow(ctx, `SELECT count() FROM event_log FINAL
		WHERE event_type = 'user_created' AND position(event_context, concat('"id":"', toString(user_id), '"')) > 0`).Scan(&stamped)
	if err != nil || stamped != n {
		t.Errorf("%d user_created messages carry their user's id in event_log.user_id (%v), want %d", stamped, err, n)
	}
}

// TestMessageModeSlotRecreatedIsCritical: in message mode, a slot dropped
// while the relay was down loses the messages emitted meanwhile. The
// restarted relay says so: its log, /readyz (503) and relay status
// (CRITICAL) carry "events may have been lost" until an operator clears
// the mark; messages after the new slot flow again.
func TestMessageModeSlotRecreatedIsCritical(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	env := []string{"RELAY_MESSAGE_PREFIX=" + msgPrefix}
	first := startRelay(t, e, env...)
	waitLog(t, first, logStreaming, 30*time.Second)
	msgs := msgPublisher(t, outbox.WithMessages(msgPrefix))
	delivered := map[uuid.UUID]msgRow{}
	publishTx(ctx, t, e, true, publishStep(ctx, msgs, true, delivered, outbox.Event{Type: spineEventType, Context: 1}))
	e.WaitDelivered(t, 1, time.Minute, first)
	if err := first.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := first.Wait(time.Minute); code != 0 {
		t.Fatalf("relay exit %d:\n%s", code, first.Output())
	}
	// The walsender may outlive the relay's exit by a moment: the slot
	// stays active until it has gone.
	testenv.Eventually(t, 30*time.Second, "the slot dropped", func() error {
		_, err := e.PG.Exec(ctx, "SELECT pg_drop_replication_slot($1)", e.Slot)
		return err
	})
	code, _, out := relayStatus(t, e.RelayEnv(env...))
	if code != statusExitCritical || !strings.Contains(out, "does not exist and message mode is on: events may have been lost") {
		t.Fatalf("relay status with the slot missing: exit %d\n%s", code, out)
	}
	lost := map[uuid.UUID]msgRow{}
	publishTx(ctx, t, e, true, publishStep(ctx, msgs, true, lost, outbox.Event{Type: spineEventType, Context: 2}))

	addr := testenv.FreeAddr(t)
	second := startRelay(t, e, append(env, "RELAY_ADMIN_ADDR="+addr)...)
	waitLog(t, second, `CRITICAL: the slot was missing and is recreated in message mode: events may have been lost`, 30*time.Second)
	waitLog(t, second, logStreaming, 30*time.Second)
	waitAdmin(t, second, addr, "/readyz", http.StatusServiceUnavailable, "events may have been lost", 30*time.Second)
	publishTx(ctx, t, e, true, publishStep(ctx, msgs, true, delivered, outbox.Event{Type: spineEventType, Context: 3}))
	e.WaitDelivered(t, 2, time.Minute, second)
	_, seen, err := eventLogRows(ctx, e, true)
	if err != nil {
		t.Fatal(err)
	}
	for id := range lost {
		if seen[id] != 0 {
			t.Errorf("a message emitted without a slot arrived: %s", id)
		}
	}
	code, r, out := relayStatus(t, e.RelayEnv(env...))
	if code != statusExitCritical || r == nil || r.EventsLostAt == nil ||
		!strings.Contains(strings.Join(r.Reasons, "\n"), "was lost or recreated at") {
		t.Fatalf("relay status after the recreation: exit %d\n%s", code, out)
	}
	// Without RELAY_MESSAGE_PREFIX too: the mark is in PostgreSQL.
	if code, _, out = relayStatus(t, e.RelayEnv()); code != statusExitCritical || !strings.Contains(out, "events may have been lost") {
		t.Fatalf("relay status without the prefix: exit %d\n%s", code, out)
	}
	mustExec(ctx, t, e.PG, "UPDATE outbox_relay_state SET events_lost_at = NULL WHERE slot = $1", e.Slot)
	code, r, out = relayStatus(t, e.RelayEnv(env...))
	if r == nil || r.EventsLostAt != nil || strings.Contains(out, "events may have been lost") {
		t.Fatalf("relay status after clearing: exit %d\n%s", code, out)
	}
}
