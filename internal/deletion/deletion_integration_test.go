package deletion

import (
	"context"
	"testing"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/testenv"
)

// Delivered rows are deleted by each table's own key: a uuid, a bigint
// identity, a varchar; rows of other streams and undelivered rows stay.
func TestDeleteByEachTablesKey(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE core_outboxevent (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_type text)`,
		`INSERT INTO core_outboxevent (event_type) SELECT 'x' FROM generate_series(1, 5)`,
		`CREATE SCHEMA "Billing"`,
		`CREATE TABLE "Billing"."Out box" (ref varchar(20) PRIMARY KEY)`,
		`INSERT INTO "Billing"."Out box" VALUES ('a'), ('b'), ('1')`,
		`INSERT INTO outbox_event (id, event_type, event_date_time, environment, event_context)
			VALUES ('00000000-0000-0000-0000-000000000001', 't', now(), 'e', '{}'), ('00000000-0000-0000-0000-000000000002', 't', now(), 'e', '{}')`,
	} {
		if _, err := e.PG.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	d := New(e.PG, []Table{
		{Schema: "public", Name: "outbox_event", Key: "id", KeyType: "uuid"},
		{Schema: "public", Name: "core_outboxevent", Key: "id", KeyType: "bigint"},
		{Schema: "Billing", Name: "Out box", Key: "ref", KeyType: "character varying(20)"},
	}, nil)
	n, err := d.Delete(ctx, []event.Row{
		{Stream: 0, ID: [16]byte{15: 1}}, {Stream: 1, Key: "2"}, {Stream: 1, Key: "4"},
		{Stream: 2, Key: "1"}, {Stream: 2, Key: "b"}, {Stream: 1, Key: "99"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Errorf("deleted %d rows, want 5", n)
	}
	for q, want := range map[string]string{
		`SELECT string_agg(id::text, ',' ORDER BY id) FROM core_outboxevent`: "1,3,5",
		`SELECT string_agg(ref, ',' ORDER BY ref) FROM "Billing"."Out box"`:  "a",
		`SELECT string_agg(id::text, ',' ORDER BY id) FROM outbox_event`:     "00000000-0000-0000-0000-000000000002",
	} {
		var got string
		if err := e.PG.QueryRow(ctx, q).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %s, want %s", q, got, want)
		}
	}
}
