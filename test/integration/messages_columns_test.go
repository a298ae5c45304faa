package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/outbox"
)

// msgColumns are extra columns of outbox_event for the message parity
// test (user_id uuid is there already, migration 00006).
var msgColumns = []struct{ name, pgType string }{
	{"c_int", "integer"},
	{"c_big", "bigint NOT NULL DEFAULT 7"},
	{"c_text", "text"},
	{"c_bool", "boolean"},
	{"c_num", "numeric(12,2)"},
	{"c_numu", "numeric"},
	{"c_ts", "timestamptz(3)"},
	{"c_jsonb", "jsonb"},
	{"c_vc", "varchar(8) NOT NULL DEFAULT 'main'"},
	{"c_arr", "integer[]"},
}

var msgThree int32 = 3

// msgColumnValues are the Columns of the events published both ways: every
// column set (numeric and timestamp values the modifier rounds), NULLs,
// nothing (the defaults), and other values.
var msgColumnValues = []map[string]any{
	{"user_id": uuid.MustParse("123e4567-e89b-12d3-a456-426614174000"), "c_int": int32(-5), "c_big": int64(9e18),
		"c_text": "ü line\nnext", "c_bool": true, "c_num": "1.005", "c_numu": "123.4500",
		"c_ts":    time.Date(2024, 2, 29, 12, 34, 56, 789_600_000, time.FixedZone("IST", 5*3600+1800)),
		"c_jsonb": map[string]any{"a": []any{1, nil}, "ü": "x"}, "c_vc": "acme", "c_arr": []int32{1, 2}},
	{"user_id": nil, "c_int": nil, "c_big": 0, "c_text": nil, "c_bool": nil, "c_num": nil, "c_numu": nil, "c_ts": nil,
		"c_jsonb": nil, "c_vc": "", "c_arr": nil},
	{},
	{"c_int": 2147483647, "c_text": "", "c_bool": false, "c_num": "-9999999999.99", "c_numu": "NaN",
		"c_jsonb": json.RawMessage(`"just a string"`), "c_arr": []*int32{nil, &msgThree}, "c_ts": "2024-01-01 00:00:00+00"},
}

// TestMessageColumnsLikeRows publishes the same extra column values as
// rows and as messages, in one transaction, and finds them identical in
// ClickHouse (in columns the relay added); a message of a publisher that
// read the columns before some were added (another shape, in the same
// batch) carries what it knew, the others read NULL.
func TestMessageColumnsLikeRows(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := startRelay(t, e, "RELAY_MESSAGE_PREFIX="+msgPrefix)
	waitLog(t, p, logStreaming, 30*time.Second)
	stale := msgTypedPublisher(ctx, t, e, true)
	var ddl []string
	for _, c := range msgColumns {
		ddl = append(ddl, "ADD COLUMN "+c.name+" "+c.pgType)
	}
	faultExec(ctx, t, e, "ALTER TABLE outbox_event "+strings.Join(ddl, ", "))
	rows, msgs := msgTypedPublisher(ctx, t, e, false), msgTypedPublisher(ctx, t, e, true)

	staleUser := uuid.New()
	publishTx(ctx, t, e, true, func(tx pgx.Tx) error {
		for i, cols := range msgColumnValues {
			for _, pub := range []struct {
				p   *outbox.Publisher
				typ string
			}{{rows, "row"}, {msgs, "message"}} {
				_, err := pub.p.Publish(ctx, tx, outbox.Event{Type: pub.typ, Context: map[string]int{"pair": i}, Columns: cols})
				if err != nil {
					return fmt.Errorf("%s %d: %w", pub.typ, i, err)
				}
			}
		}
		_, err := stale.Publish(ctx, tx, outbox.Event{Type: "stale", Context: map[string]int{"pair": -1},
			Columns: map[string]any{"user_id": staleUser}})
		return err
	})
	e.WaitDelivered(t, uint64(2*len(msgColumnValues)+1), time.Minute, p)

	got := msgColumnsInClickHouse(ctx, t, e)
	for i := range msgColumnValues {
		row, msg := got[fmt.Sprintf("row %d", i)], got[fmt.Sprintf("message %d", i)]
		if row == nil || msg == nil {
			t.Fatalf("pair %d: row %v, message %v in ClickHouse", i, row, msg)
		}
		for name, v := range row {
			if msg[name] != v {
				t.Errorf("pair %d column %s: the row has %q, the message %q", i, name, v, msg[name])
			}
		}
	}
	// Spot checks that the comparison compares something: the modifier
	// rounded, the defaults applied, NULLs are NULL.
	for _, c := range []struct{ key, col, want string }{
		{"message 0", "c_num", "1.01"}, {"message 0", "c_numu", "123.4500"}, {"message 0", "c_big", "9000000000000000000"},
		{"message 0", "user_id", "123e4567-e89b-12d3-a456-426614174000"}, {"message 0", "c_arr", "[1,2]"},
		{"message 1", "c_int", "NULL"}, {"message 1", "c_vc", ""}, {"message 2", "c_big", "7"}, {"message 2", "c_vc", "main"},
		{"message 3", "c_numu", "NaN"}, {"message 3", "c_jsonb", `"just a string"`}, {"message 3", "c_arr", "[NULL,3]"},
		{"stale -1", "user_id", staleUser.String()}, {"stale -1", "c_int", "NULL"},
	} {
		if g := got[c.key][c.col]; g != c.want {
			t.Errorf("%s %s = %q, want %q", c.key, c.col, g, c.want)
		}
	}
}

// msgTypedPublisher is a publisher of outbox_event's extra columns as
// they are now, for messages or rows.
func msgTypedPublisher(ctx context.Context, t *testing.T, e *testenv.Env, messages bool, only ...string) *outbox.Publisher {
	t.Helper()
	cols, err := outbox.ColumnTypes(ctx, e.PG)
	if err != nil {
		t.Fatal(err)
	}
	if len(only) > 0 {
		var keep []outbox.Column
		for _, c := range cols {
			for _, name := range only {
				if c.Name() == name {
					keep = append(keep, c)
				}
			}
		}
		cols = keep
	}
	opts := []outbox.Option{outbox.WithColumnTypes(cols...)}
	if messages {
		opts = append(opts, outbox.WithMessages(msgPrefix))
	}
	return msgPublisher(t, opts...)
}

// msgColumnsInClickHouse reads event_log's extra columns as text (NULL as
// "NULL"), by "<event type> <pair>".
func msgColumnsInClickHouse(ctx context.Context, t *testing.T, e *testenv.Env) map[string]map[string]string {
	t.Helper()
	names := []string{"user_id"}
	for _, c := range msgColumns {
		names = append(names, c.name)
	}
	exprs := make([]string, len(names))
	for i, n := range names {
		exprs[i] = fmt.Sprintf("ifNull(toString(%s), 'NULL')", n)
	}
	rows, err := e.CH.Query(ctx, "SELECT concat(event_type, ' ', replaceAll(visitParamExtractRaw(event_context, 'pair'), ' ', '')), "+
		strings.Join(exprs, ", ")+" FROM event_log FINAL")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]map[string]string{}
	for rows.Next() {
		vals := make([]string, len(names)+1)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for i, n := range names {
			m[n] = vals[i+1]
		}
		out[vals[0]] = m
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMessageColumnEvolution: a message carrying a column event_log lacks
// gets it added (RELAY_SCHEMA_EVOLUTION=add), or stops the relay with exit
// code 5 and the ALTER to run (refuse), acknowledging nothing, as a row
// would; after the ALTER a restarted relay delivers it. A column of a type
// the relay does not map stops it likewise, and RELAY_SCHEMA_EVOLUTION=fill
// then delivers the message without it.
func TestMessageColumnEvolution(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, mode, pgType string
		value              any
		wantExit           []string // what the refusal says; none: delivered at once
	}{
		{name: "add", mode: "add", pgType: "integer", value: 42},
		{name: "refuse", mode: "refuse", pgType: "integer", value: 42,
			wantExit: []string{"schema change refused", "ADD COLUMN `m_score` Nullable(Int32)"}},
		{name: "unmapped type", mode: "add", pgType: "inet", value: "10.0.0.1",
			wantExit: []string{"schema change refused", "m_score has type inet,", "does not map", "without the column under RELAY_SCHEMA_EVOLUTION=fill"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := testenv.New(t)
			ctx := context.Background()
			faultExec(ctx, t, e, "ALTER TABLE outbox_event ADD COLUMN m_score "+tt.pgType)
			env := []string{"RELAY_MESSAGE_PREFIX=" + msgPrefix, "RELAY_SCHEMA_EVOLUTION=" + tt.mode}
			p := startRelay(t, e, env...)
			waitLog(t, p, logStreaming, 30*time.Second)
			pub := msgTypedPublisher(ctx, t, e, true, "m_score")
			if _, err := pub.Publish(ctx, e.PG, outbox.Event{Type: "scored", Context: map[string]int{}, Columns: map[string]any{"m_score": tt.value}}); err != nil {
				t.Fatal(err)
			}
			if len(tt.wantExit) > 0 {
				if code := faultExitCode(t, p, time.Minute); code != evoExitSchema {
					t.Fatalf("relay exit code %d, want %d:\n%s", code, evoExitSchema, p.Output())
				}
				for _, want := range tt.wantExit {
					if !strings.Contains(p.Output(), want) {
						t.Errorf("the refusal does not say %q:\n%s", want, p.Output())
					}
				}
				if c, err := e.ClickHouseCounts(ctx); err != nil || c.Rows != 0 {
					t.Fatalf("event_log holds %+v (%v) after the refusal, want nothing", c, err)
				}
				if tt.pgType != "integer" {
					// What the refusal advises for messages written with
					// the type: fill delivers them without the column.
					p = startRelay(t, e, "RELAY_MESSAGE_PREFIX="+msgPrefix, "RELAY_SCHEMA_EVOLUTION=fill")
					e.WaitDelivered(t, 1, time.Minute, p)
					var n uint64
					if err := e.CH.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'event_log' AND name = 'm_score'").Scan(&n); err != nil || n != 0 {
						t.Errorf("event_log.m_score columns: %d (%v), want none", n, err)
					}
					return
				}
				if err := e.CH.Exec(ctx, "ALTER TABLE event_log ADD COLUMN m_score Nullable(Int32)"); err != nil {
					t.Fatal(err)
				}
				p = startRelay(t, e, env...)
			}
			e.WaitDelivered(t, 1, time.Minute, p)
			var score *int32
			var typ string
			if err := e.CH.QueryRow(ctx, "SELECT m_score, toTypeName(m_score) FROM event_log FINAL WHERE event_type = 'scored'").Scan(&score, &typ); err != nil {
				t.Fatal(err)
			}
			if score == nil || *score != 42 || typ != "Nullable(Int32)" {
				t.Errorf("event_log.m_score = %v (%s), want 42 (Nullable(Int32))", score, typ)
			}
		})
	}
}
