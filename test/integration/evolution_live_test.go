package integration

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// evoExitSchema is relay run's exit code for a refused change (cli.ExitSchema).
const evoExitSchema = 5

// evoWithValues commits n events tagged tag whose user_ref is 1..n.
func evoWithValues(ctx context.Context, t *testing.T, e *testenv.Env, tag string, n int) {
	t.Helper()
	faultExec(ctx, t, e, `INSERT INTO outbox_event (event_type, environment, event_context, user_ref)
		SELECT 'fault', 'test', jsonb_build_object('tag', $1::text, 'n', g), g FROM generate_series(1, $2::int) g`, tag, n)
}

// evoCheckUserRef checks event_log.user_ref: the withTag events carry
// their n, every other event NULL (written before the column existed, or
// by the producer, which never sets it).
func evoCheckUserRef(ctx context.Context, t *testing.T, e *testenv.Env, withTag string, n int) {
	t.Helper()
	var tagged, right, others, nulls uint64
	err := e.CH.QueryRow(ctx, `SELECT
			countIf(position(event_context, ?) > 0),
			countIf(position(event_context, ?) > 0 AND concat(' ', toString(user_ref)) = visitParamExtractRaw(event_context, 'n')),
			countIf(position(event_context, ?) = 0),
			countIf(position(event_context, ?) = 0 AND isNull(user_ref))
		FROM event_log FINAL`, `"tag": "`+withTag+`"`, `"tag": "`+withTag+`"`, `"tag": "`+withTag+`"`, `"tag": "`+withTag+`"`).
		Scan(&tagged, &right, &others, &nulls)
	if err != nil {
		t.Fatal(err)
	}
	if tagged != uint64(n) || right != tagged {
		t.Errorf("%d events tagged %s in ClickHouse, %d with the right user_ref; want %d of %d", tagged, withTag, right, n, n)
	}
	if nulls != others {
		t.Errorf("%d of the %d other events have a NULL user_ref, want all", nulls, others)
	}
}

// TestEvolutionLiveAddColumn adds a column to outbox_event under a steady
// load: events written before it arrive with NULL there, those written
// with a value carry it, every event exactly once, and the relay never
// restarts (nor reconnects).
func TestEvolutionLiveAddColumn(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := startRelay(t, e)
	waitLog(t, p, logStreaming, 30*time.Second)
	prod := startFaultProducer(e, "load", 3, 5*time.Millisecond)
	prod.stopOnCleanup(t)
	faultWaitFlushes(t, e, p, 3)

	faultExec(ctx, t, e, "ALTER TABLE outbox_event ADD COLUMN user_ref bigint")
	evoWithValues(ctx, t, e, "with-ref", 50)
	faultWaitFlushes(t, e, p, 3)
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	faultExpectExactlyOnce(t, e, committed+50, 2*time.Minute, p)
	evoCheckUserRef(ctx, t, e, "with-ref", 50)
	faultAlive(t, p, "after the column was added")
	out := p.Output()
	if !strings.Contains(out, "ADD COLUMN `user_ref` Nullable(Int64)") {
		t.Errorf("the relay did not log adding user_ref:\n%s", out)
	}
	for _, bad := range []string{logReconnecting, `"level":"error"`} {
		if strings.Contains(out, bad) {
			t.Errorf("the relay logged %s after the column was added:\n%s", bad, out)
		}
	}
}

// TestEvolutionAddColumnSIGKILL kills the relay with SIGKILL as soon as it
// added the column to ClickHouse (the rows that carry it may or may not be
// in, and nothing of them is acknowledged): the next relay replays them,
// finds the column there, and every event arrives once with its value.
func TestEvolutionAddColumnSIGKILL(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := startRelay(t, e)
	waitLog(t, p, logStreaming, 30*time.Second)
	prod := startFaultProducer(e, "load", 3, 5*time.Millisecond)
	prod.stopOnCleanup(t)
	faultWaitFlushes(t, e, p, 2)

	faultExec(ctx, t, e, "ALTER TABLE outbox_event ADD COLUMN user_ref bigint")
	evoWithValues(ctx, t, e, "with-ref", 50)
	testenv.Eventually(t, time.Minute, "event_log.user_ref added by the relay", func() error {
		faultAlive(t, p, "while waiting for the column")
		var n uint64
		if err := e.CH.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'event_log' AND name = 'user_ref'").Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no column yet")
		}
		return nil
	})
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.Wait(10 * time.Second)
	p2 := startRelay(t, e)
	waitLog(t, p2, logStreaming, 30*time.Second)
	faultWaitFlushes(t, e, p2, 2)
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	faultExpectExactlyOnce(t, e, committed+50, 2*time.Minute, p2)
	evoCheckUserRef(ctx, t, e, "with-ref", 50)
}

// evoRefusal is one change the relay refuses, how to make it, and how an
// operator fixes it.
type evoRefusal struct {
	name string
	// setup runs before the relay starts; change while it streams, then one
	// event is written.
	setup, change []string
	chSetup       []string
	wantMsg       []string
	fix, chFix    []string
	dropSlot      bool // the fix includes recreating the slot (see README)
	// insert writes the event after the change (default: faultInsert's).
	insert string
}

// TestEvolutionRefusals: each change the relay cannot apply safely stops
// it with exit code 5 and a message naming the column, the old and new
// types and what to do; nothing of the change is acknowledged (the slot
// stays before it, the row stays in outbox_event, ClickHouse lacks it).
// After the documented fix a restart delivers every event.
func TestEvolutionRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []evoRefusal{
		{
			name:    "unsafe type change",
			setup:   []string{"ALTER TABLE outbox_event ADD COLUMN amount bigint"},
			change:  []string{"ALTER TABLE outbox_event ALTER COLUMN amount TYPE text"},
			wantMsg: []string{"outbox_event.amount is text", "maps to Nullable(String)", "event_log.amount is Nullable(Int64)", "MODIFY COLUMN `amount` Nullable(String)"},
			chFix:   []string{"ALTER TABLE event_log MODIFY COLUMN amount Nullable(String)"},
		},
		{
			name:    "ClickHouse column of another type",
			chSetup: []string{"ALTER TABLE event_log ADD COLUMN amount Nullable(String)"},
			change:  []string{"ALTER TABLE outbox_event ADD COLUMN amount bigint"},
			wantMsg: []string{"outbox_event.amount is bigint", "maps to Nullable(Int64)", "event_log.amount is Nullable(String)"},
			chFix:   []string{"ALTER TABLE event_log DROP COLUMN amount"},
		},
		{
			name:     "relay column renamed",
			change:   []string{"ALTER TABLE outbox_event RENAME COLUMN environment TO env"},
			wantMsg:  []string{"has no column environment", "RENAME COLUMN", "pg_drop_replication_slot"},
			insert:   `INSERT INTO outbox_event (event_type, env, event_context) VALUES ('fault', 'test', '{"tag": "after"}')`,
			fix:      []string{"ALTER TABLE outbox_event RENAME COLUMN env TO environment"},
			dropSlot: true,
		},
		{
			name:     "relay column dropped",
			change:   []string{"ALTER TABLE outbox_event DROP COLUMN event_type"},
			wantMsg:  []string{"has no column event_type", "ADD COLUMN event_type text"},
			insert:   `INSERT INTO outbox_event (environment, event_context) VALUES ('test', '{"tag": "after"}')`,
			fix:      []string{"ALTER TABLE outbox_event ADD COLUMN event_type text NOT NULL DEFAULT 'restored'"},
			dropSlot: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			evoRefuse(t, tc)
		})
	}
}

func evoRefuse(t *testing.T, tc evoRefusal) {
	e := testenv.New(t)
	ctx := context.Background()
	for _, q := range tc.setup {
		faultExec(ctx, t, e, q)
	}
	for _, q := range tc.chSetup {
		if err := e.CH.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	p := startRelay(t, e)
	waitLog(t, p, logStreaming, 30*time.Second)
	faultInsert(ctx, t, e, "before", 20)
	e.WaitDelivered(t, 20, time.Minute, p)

	for _, q := range tc.change {
		faultExec(ctx, t, e, q)
	}
	if tc.insert != "" {
		faultExec(ctx, t, e, tc.insert)
	} else {
		faultInsert(ctx, t, e, "after", 1)
	}
	// The refused transaction's commit ends at or before this position; a
	// confirmed position below it has not acknowledged the transaction (a
	// keepalive may move it into the transaction's records while the
	// relay is idle, which skips nothing).
	commitEnd := faultCurrentLSN(ctx, t, e)
	code := faultExitCode(t, p, time.Minute)
	out := p.Output()
	if i := strings.LastIndex(strings.TrimSpace(out), "\n"); i >= 0 {
		t.Logf("refusal: %s", strings.TrimSpace(out)[i+1:])
	}
	if code != evoExitSchema {
		t.Fatalf("relay exited %d, want %d:\n%s", code, evoExitSchema, out)
	}
	for _, want := range append([]string{"schema change refused", "acknowledged"}, tc.wantMsg...) {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	slot, err := readFaultSlot(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if slot.Confirmed >= commitEnd {
		t.Errorf("slot confirmed %d, at or past %d, the end of the refused transaction", slot.Confirmed, commitEnd)
	}
	if n, err := e.OutboxRows(ctx); err != nil || n != 1 {
		t.Errorf("outbox_event holds %d rows (%v), want the refused one", n, err)
	}
	if c, err := e.ClickHouseCounts(ctx); err != nil || c.Distinct != 20 {
		t.Errorf("ClickHouse holds %d events (%v), want the 20 from before", c.Distinct, err)
	}

	for _, q := range tc.fix {
		faultExec(ctx, t, e, q)
	}
	for _, q := range tc.chFix {
		if err := e.CH.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if tc.dropSlot {
		faultExec(ctx, t, e, "SELECT pg_drop_replication_slot($1)", e.Slot)
	}
	p2 := startRelay(t, e)
	faultInsert(ctx, t, e, "fixed", 5)
	faultExpectExactlyOnce(t, e, 26, 2*time.Minute, p2)
}

// TestEvolutionModeFill: RELAY_SCHEMA_EVOLUTION=fill writes the extra
// columns event_log has and adds none.
func TestEvolutionModeFill(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	if err := e.CH.Exec(ctx, "ALTER TABLE event_log ADD COLUMN user_ref Nullable(Int64)"); err != nil {
		t.Fatal(err)
	}
	p := startRelay(t, e, "RELAY_SCHEMA_EVOLUTION=fill")
	waitLog(t, p, logStreaming, 30*time.Second)
	faultExec(ctx, t, e, "ALTER TABLE outbox_event ADD COLUMN user_ref bigint, ADD COLUMN note text")
	faultExec(ctx, t, e, `INSERT INTO outbox_event (event_type, environment, event_context, user_ref, note)
		SELECT 'fault', 'test', jsonb_build_object('tag', 'with-ref', 'n', g), g, 'x' FROM generate_series(1, 30) g`)
	faultExpectExactlyOnce(t, e, 30, time.Minute, p)
	evoCheckUserRef(ctx, t, e, "with-ref", 30)
	var n uint64
	if err := e.CH.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'event_log' AND name = 'note'").Scan(&n); err != nil || n != 0 {
		t.Errorf("event_log has %d columns named note (%v): fill mode added one", n, err)
	}
	if out := p.Output(); !strings.Contains(out, `"column":"note"`) || !strings.Contains(out, "not written (RELAY_SCHEMA_EVOLUTION=fill)") {
		t.Errorf("the relay did not warn that note is not written:\n%s", out)
	}
}

// TestEvolutionModeRefuse: RELAY_SCHEMA_EVOLUTION=refuse stops at a column
// event_log lacks (exit 5, nothing acknowledged) and says how to add it;
// once it is added, a restart in the same mode delivers with its values.
func TestEvolutionModeRefuse(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	// In refuse mode every extra column needs its ClickHouse column first,
	// the migrations' user_id (the demo API's) included.
	if err := e.CH.Exec(ctx, "ALTER TABLE event_log ADD COLUMN `user_id` Nullable(UUID)"); err != nil {
		t.Fatal(err)
	}
	p := startRelay(t, e, "RELAY_SCHEMA_EVOLUTION=refuse")
	waitLog(t, p, logStreaming, 30*time.Second)
	faultExec(ctx, t, e, "ALTER TABLE outbox_event ADD COLUMN user_ref bigint")
	evoWithValues(ctx, t, e, "with-ref", 10)
	commitEnd := faultCurrentLSN(ctx, t, e)
	if code := faultExitCode(t, p, time.Minute); code != evoExitSchema {
		t.Fatalf("relay exited %d, want %d:\n%s", code, evoExitSchema, p.Output())
	}
	out := p.Output()
	for _, want := range []string{"outbox_event.user_ref (bigint) has no column in event_log", "RELAY_SCHEMA_EVOLUTION=refuse", "ADD COLUMN `user_ref` Nullable(Int64)"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	if slot, err := readFaultSlot(ctx, e); err != nil || slot.Confirmed >= commitEnd {
		t.Errorf("slot confirmed %d (%v), at or past %d, the end of the refused transaction", slot.Confirmed, err, commitEnd)
	}
	if n, err := e.OutboxRows(ctx); err != nil || n != 10 {
		t.Errorf("outbox_event holds %d rows (%v), want 10", n, err)
	}
	if err := e.CH.Exec(ctx, "ALTER TABLE event_log ADD COLUMN `user_ref` Nullable(Int64)"); err != nil {
		t.Fatal(err)
	}
	p2 := startRelay(t, e, "RELAY_SCHEMA_EVOLUTION=refuse")
	faultExpectExactlyOnce(t, e, 10, time.Minute, p2)
	evoCheckUserRef(ctx, t, e, "with-ref", 10)
}
