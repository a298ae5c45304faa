package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/sink/clickhouse/chsql"
	"github.com/outbox-relay/relay/internal/testenv"
)

// hostileColumns are outbox column names written to break out of the
// relay's ALTER TABLE: the two from the hostile-input probe (one dropped a
// partition, one added a column of its own) and names that end in or hold
// quotes and backslashes.
var hostileColumns = []string{
	"q\\` UInt8, DROP PARTITION 202612 --",
	"x\\` UInt8, ADD COLUMN injected UInt8 --",
	"ends with \\",
	"a`b\\`c",
	"a'b \"c\" -- /*",
	"line\nbreak",
}

// TestEvolutionHostileColumnNames adds outbox columns whose names are SQL
// meant to run on ClickHouse: each must become a ClickHouse column of
// exactly that name holding the row's value, and nothing else may change
// (no rows dropped, no other column added).
func TestEvolutionHostileColumnNames(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := startRelay(t, e)
	waitLog(t, p, logStreaming, 30*time.Second)
	for i := range 3 {
		faultExec(ctx, t, e, `INSERT INTO outbox_event (event_type, environment, event_context, event_date_time)
			VALUES ('before', 'test', '{}', $1)`, time.Now().UTC().AddDate(0, 0, -i))
	}
	e.WaitDelivered(t, 3, time.Minute, p)

	before := chColumns(ctx, t, e)
	names := make([]string, len(hostileColumns))
	vals := make([]string, len(hostileColumns))
	for i, c := range hostileColumns {
		names[i] = pgx.Identifier{c}.Sanitize()
		vals[i] = fmt.Sprintf("'value %d'", i)
		faultExec(ctx, t, e, "ALTER TABLE outbox_event ADD COLUMN "+names[i]+" text")
	}
	faultExec(ctx, t, e, fmt.Sprintf(`INSERT INTO outbox_event (event_type, environment, event_context, %s)
		VALUES ('hostile', 'test', '{}', %s)`, strings.Join(names, ", "), strings.Join(vals, ", ")))
	e.WaitDelivered(t, 4, time.Minute, p)

	want := append(before, hostileColumns...)
	got := chColumns(ctx, t, e)
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("event_log columns:\n got %q\nwant %q", got, want)
	}
	for i, c := range hostileColumns {
		var v string
		q := "SELECT toString(" + chsql.Ident(c) + ") FROM event_log WHERE event_type = 'hostile'"
		if err := e.CH.QueryRow(ctx, q).Scan(&v); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if v != fmt.Sprintf("value %d", i) {
			t.Errorf("column %q holds %q, want %q", c, v, fmt.Sprintf("value %d", i))
		}
	}
	var rows uint64
	if err := e.CH.QueryRow(ctx, "SELECT count() FROM event_log").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 4 {
		t.Fatalf("event_log holds %d rows, want the 4 delivered", rows)
	}
}

// chColumns lists event_log's columns in table order (18.16 has no position column; it lists them in order).
func chColumns(ctx context.Context, t *testing.T, e *testenv.Env) []string {
	t.Helper()
	rows, err := e.CH.Query(ctx, "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'event_log'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
