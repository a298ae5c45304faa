package deadletter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/testenv"
)

// billingTable is an application's own outbox: a bigint identity key the
// application never sets, its own column names, no environment or
// metadata_version, a polling worker's flag the stream ignores, and an
// extra column.
const billingTable = `CREATE SCHEMA billing;
CREATE TABLE billing.outbox (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind varchar(50) NOT NULL,
	created_at timestamp NOT NULL,
	payload jsonb NOT NULL,
	tenant integer,
	processed boolean NOT NULL DEFAULT false
)`

var billingStream = config.Stream{Name: "billing", Outbox: "billing.outbox", ClickHouseTable: "billing_{event_type}",
	Columns:   map[string]string{config.FieldEventType: "kind", config.FieldEventDateTime: "created_at", config.FieldEventContext: "payload"},
	Constants: map[string]string{config.FieldEnvironment: "prod", config.FieldMetadataVersion: "1"},
	Ignore:    []string{"processed"}}

var testStreams = []config.Stream{
	{Name: config.DefaultStreamName, Outbox: config.DefaultOutboxTable, ClickHouseTable: config.DefaultClickHouseTable},
	billingStream,
}

// billingEvent is a rejected event of the billing stream with key, tenant
// 7 as an extra column.
func billingEvent(key, typ, table string) Rejected {
	cols := event.NewColumns(1, []event.Column{{Name: "tenant", TypeOID: pgtype.Int4OID, TypeName: "integer"}})
	return Rejected{Stream: "billing", Table: table, Err: errors.New("rejected"), Event: event.Event{
		ID: uuid.NewSHA1(uuid.NameSpaceOID, []byte("billing.outbox/"+key)), Key: key, Type: typ,
		OccurredAt: time.Date(2024, 2, 29, 12, 34, 56, 789012000, time.UTC), Environment: "prod",
		Context: []byte(`{"amount": 12}`), MetadataVersion: 1, Columns: cols, Extra: event.AppendValue(nil, event.KindText, []byte("7")),
	}}
}

// Dead letters keep their stream, table and key; list filters by stream;
// replay puts a stream's dead letters back into its own outbox table under
// its column names and their own keys (a GENERATED ALWAYS identity), the
// ignored column left to its default, and refuses, moving nothing, a dead
// letter whose stream is no longer configured or that lost its key.
func TestReplayIntoAStreamsOwnOutbox(t *testing.T) {
	t.Parallel()
	e := testenv.NewPostgres(t)
	ctx := context.Background()
	if _, err := e.PG.Exec(ctx, billingTable); err != nil {
		t.Fatal(err)
	}
	plain := Rejected{Stream: config.DefaultStreamName, Table: "event_log", Err: errors.New("rejected"), Event: event.Event{
		ID: uuid.New(), Type: "plain", OccurredAt: time.Now(), Environment: "test", Context: []byte(`{}`), MetadataVersion: 1}}
	rs := []Rejected{billingEvent("42", "invoice", "billing_invoice"), billingEvent("43", "bad type!", ""), plain}
	if err := New(e.PG).Put(ctx, rs); err != nil {
		t.Fatal(err)
	}

	all, total, err := List(ctx, e.PG, Filter{}, 0)
	if err != nil || total != 3 {
		t.Fatalf("list: %d of %d (%v), want 3", len(all), total, err)
	}
	got := map[uuid.UUID]Letter{}
	for _, l := range all {
		got[l.ID] = l
	}
	for _, r := range rs {
		l := got[r.Event.ID]
		if l.Stream != r.Stream || l.Table != r.Table || l.Key != r.Event.Key {
			t.Errorf("dead letter %s: stream %q table %q key %q, want %q %q %q", l.ID, l.Stream, l.Table, l.Key, r.Stream, r.Table, r.Event.Key)
		}
	}
	billing, total, err := List(ctx, e.PG, Filter{Streams: []string{"billing"}}, 0)
	if err != nil || total != 2 || slices.ContainsFunc(billing, func(l Letter) bool { return l.Stream != "billing" }) {
		t.Fatalf("list --stream billing: %+v (total %d, %v), want the 2 of billing", billing, total, err)
	}
	if l, err := Show(ctx, e.PG, rs[0].Event.ID); err != nil || l.Stream != "billing" || l.Table != "billing_invoice" || l.Key != "42" {
		t.Errorf("show: %+v (%v), want stream billing, table billing_invoice, key 42", l, err)
	}

	// A stream no longer configured is refused by name, and nothing moves.
	if _, err := Replay(ctx, e.PG, testStreams[:1], Filter{}, nil); !errors.Is(err, ErrStreamGone) || !strings.Contains(fmt.Sprint(err), `"billing"`) {
		t.Fatalf("replay without the billing stream configured: %v, want %v naming it", err, ErrStreamGone)
	}
	if _, n, _ := List(ctx, e.PG, Filter{}, 0); n != 3 {
		t.Fatalf("a refused replay left %d dead letters, want 3", n)
	}

	moved, err := Replay(ctx, e.PG, testStreams, Filter{Streams: []string{"billing"}}, nil)
	if err != nil {
		t.Fatalf("replay --stream billing: %v", err)
	}
	if len(moved) != 2 || moved[0].Stream != "billing" || moved[0].Outbox != "billing.outbox" || !moved[0].Inserted || !moved[1].Inserted {
		t.Errorf("replay moved %+v, want the 2 of billing inserted into billing.outbox", moved)
	}
	rows, err := e.PG.Query(ctx, `SELECT id, kind, created_at::text, payload::text, tenant, processed FROM billing.outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		ID                int64
		Kind, At, Payload string
		Tenant            int32
		Processed         bool
	}
	var out []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.ID, &r.Kind, &r.At, &r.Payload, &r.Tenant, &r.Processed); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []row{{42, "invoice", "2024-02-29 12:34:56.789012", `{"amount": 12}`, 7, false},
		{43, "bad type!", "2024-02-29 12:34:56.789012", `{"amount": 12}`, 7, false}}
	if !slices.Equal(out, want) {
		t.Errorf("billing.outbox after the replay:\n%+v\nwant\n%+v", out, want)
	}
	if _, n, _ := List(ctx, e.PG, Filter{}, 0); n != 1 {
		t.Errorf("%d dead letters left, want the default stream's 1", n)
	}

	// Dead-lettered again (the relay has not deleted the row yet): the row
	// is there under its key, so the replay inserts nothing and says so.
	if err := New(e.PG).Put(ctx, rs[:1]); err != nil {
		t.Fatal(err)
	}
	moved, err = Replay(ctx, e.PG, testStreams, Filter{IDs: []uuid.UUID{rs[0].Event.ID}}, nil)
	if err != nil || len(moved) != 1 || moved[0].Inserted {
		t.Errorf("replay of an event whose row is there: %+v (%v), want 1 moved, not inserted", moved, err)
	}

	// Without a key, a bigint-keyed table would give the event another
	// identity: refused.
	keyless := billingEvent("", "invoice", "billing_invoice")
	keyless.Event.ID = uuid.New()
	if err := New(e.PG).Put(ctx, []Rejected{keyless}); err != nil {
		t.Fatal(err)
	}
	if _, err := Replay(ctx, e.PG, testStreams, Filter{Streams: []string{"billing"}}, nil); !errors.Is(err, ErrNoKey) {
		t.Errorf("replay of a keyless dead letter into a bigint-keyed table: %v, want %v", err, ErrNoKey)
	}
}
