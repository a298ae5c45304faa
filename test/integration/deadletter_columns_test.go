package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/deadletter"
	"github.com/outbox-relay/relay/internal/testenv"
)

// TestDeadLetterKeepsExtraColumns: an event with extra columns (one NOT
// NULL) is dead-lettered; its outbox row is gone, so the dead letter must
// keep every value; after the operator fixes the event, a replay brings it
// to ClickHouse with each extra value as it was written.
func TestDeadLetterKeepsExtraColumns(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	faultExec(ctx, t, e, `ALTER TABLE outbox_event ADD COLUMN dl_amount numeric(12,2) NOT NULL DEFAULT 0,
		ADD COLUMN dl_tags text[], ADD COLUMN dl_doc jsonb, ADD COLUMN dl_at timestamptz, ADD COLUMN dl_null bigint`)
	p := faultStart(t, relayBin, e)
	env := e.RelayEnv()
	id := uuid.New()
	faultExec(ctx, t, e, `INSERT INTO outbox_event (id, event_type, environment, event_context, event_date_time,
		dl_amount, dl_tags, dl_doc, dl_at) VALUES ($1, 'dlcols', 'test', '{}', '1900-01-01T00:00:00Z',
		1234567890.12, '{"a b",NULL,"ü"}', '{"n": 1, "s": "x"}', '2024-02-29 12:34:56.789012+00')`, id)
	dlWaitLetters(t, env, 1)

	code, out := dlRun(t, env, "deadletter", "show", "--json", id.String())
	var l deadletter.Letter
	if code != dlExitOK {
		t.Fatalf("deadletter show: exit %d:\n%s", code, out)
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("deadletter show --json printed %q: %v", out, err)
	}
	if l.Columns["dl_amount"] == nil || *l.Columns["dl_amount"] != "1234567890.12" || l.Columns["dl_null"] != nil {
		t.Fatalf("dead letter columns = %v, want dl_amount 1234567890.12 and dl_null null", out)
	}

	// The operator's fix, then the replay.
	faultExec(ctx, t, e, `UPDATE outbox_dead_letter SET event_date_time = '2024-01-01T00:00:00Z' WHERE id = $1`, id)
	if code, out := dlRun(t, env, "deadletter", "replay", id.String()); code != dlExitOK {
		t.Fatalf("deadletter replay: exit %d:\n%s", code, out)
	}
	e.WaitDelivered(t, 1, time.Minute, p)
	var amount, tags, doc, at, null string
	q := fmt.Sprintf(`SELECT toString(dl_amount), toString(dl_tags), toString(dl_doc), toString(dl_at), ifNull(toString(dl_null), 'NULL')
		FROM event_log WHERE toString(event_id) = '%s'`, id)
	if err := e.CH.QueryRow(ctx, q).Scan(&amount, &tags, &doc, &at, &null); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	got := []string{amount, tags, doc, at, null}
	want := []string{"1234567890.12", "['a b',NULL,'ü']", `{"n": 1, "s": "x"}`, "2024-02-29 12:34:56.789012", "NULL"}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("replayed extra column %d = %q, want %q", i, got[i], want[i])
		}
	}
}
