package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/outbox-relay/relay/internal/sink/clickhouse/chsql"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/retry"
)

// tableColumn is a column of a table as system.columns describes it.
type tableColumn struct {
	name string
	typ  string
	kind string // default_kind: "", DEFAULT, MATERIALIZED, ALIAS
}

// readColumns reads table's columns from system.columns, in the database
// conn is in: the one reading of them, when the sink opens (describe), when
// an outbox column is not among them (refresh), and for relay status
// (ColumnTypes).
func readColumns(ctx context.Context, conn driver.Conn, table string) ([]tableColumn, error) {
	rows, err := conn.Query(ctx, `SELECT name, type, default_kind FROM system.columns
		WHERE database = currentDatabase() AND table = ?`, table)
	if err != nil {
		return nil, classify("describe table", err)
	}
	defer rows.Close()
	var out []tableColumn
	for rows.Next() {
		var c tableColumn
		if err := rows.Scan(&c.name, &c.typ, &c.kind); err != nil {
			return nil, classify("describe table", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, classify("describe table", err)
	}
	return out, nil
}

// ColumnTypes reads table's columns (readColumns) as their types by name,
// as the server spells them: for relay status, which compares them with
// the outbox table's.
func ColumnTypes(ctx context.Context, conn driver.Conn, table string) (map[string]string, error) {
	cols, err := readColumns(ctx, conn, table)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(cols))
	for _, c := range cols {
		out[c.name] = c.typ
	}
	return out, nil
}

// errNoTable is a table the database does not have.
var errNoTable = errors.New("no such table")

// describe reads the table's columns: those the relay fills (and the
// INSERT that names them), those left to the outbox table's extra columns
// or to the server, and the ranges the relay's columns take (see check).
// A relay column in a type the relay cannot write, or a column the table
// requires that nothing fills (see required), is refused here, before
// anything is written.
func (t *table) describe(ctx context.Context, conn driver.Conn, carried []string) error {
	cols, err := readColumns(ctx, conn, t.name)
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		return retry.Permanent(fmt.Errorf("clickhouse table %s does not exist in the database of CLICKHOUSE_URL (run `relay migrate`): %w", t.name, errNoTable))
	}
	t.cols, t.inputs, t.converts = nil, nil, false
	for _, tc := range cols {
		c, ok := newColumn(tc.name, tc.typ)
		if ok && c.converted {
			if !convertsNative(t.s.version) {
				return retry.Permanent(fmt.Errorf("clickhouse: %s.%s is %s: the relay writes %s there, which ClickHouse converts from 23.3 on (this server is %s); make the column %s",
					t.name, tc.name, tc.typ, c.typ, t.s.Version(), c.typ))
			}
			t.converts = true
		}
		if !ok {
			c, ok = relayedAtColumn(tc.name, tc.typ, &t.s.relayedAt)
		}
		switch {
		case ok && (tc.kind == "MATERIALIZED" || tc.kind == "ALIAS"):
			// The server computes it: not the relay's to write.
		case ok:
			t.cols = append(t.cols, c)
			t.inputs = append(t.inputs, c.input())
		case relayColumns[tc.name] && tc.kind != "MATERIALIZED" && tc.kind != "ALIAS":
			return retry.Permanent(fmt.Errorf("%w: %s.%s is %s, a type the relay cannot write its %s into (%s); change the column's type or map the field onto another column",
				event.ErrSchema, t.name, tc.name, tc.typ, tc.name, relayTypes[tc.name]))
		case !relayColumns[tc.name]:
			// Filled from an extra column of the outbox table, or by the
			// server (its DEFAULT, MATERIALIZED or ALIAS expression, or its
			// type's default).
			t.extras.table[tc.name] = tc
		}
	}
	if err := required(t.name, cols, carried); err != nil {
		return err
	}
	if len(t.cols) == 0 {
		return retry.Permanent(fmt.Errorf("%w: clickhouse table %s has none of the relay's columns (%s)", event.ErrSchema, t.name, strings.Join(relayFields, ", ")))
	}
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = chsql.Ident(c.name)
	}
	t.timeLo, t.timeHi = t.timeRange()
	t.versionLo, t.versionHi = math.MinInt64, math.MaxInt64
	for _, c := range t.cols {
		if c.name == "metadata_version" {
			t.versionLo, t.versionHi = intRange(c.typ)
		}
	}
	// 18.16 needs the explicit column list.
	t.insert = fmt.Sprintf("INSERT INTO %s (%s) VALUES", chsql.Ident(t.name), strings.Join(names, ", "))
	return nil
}

// required refuses a column the table requires that the relay would leave
// out of its INSERT: one with no DEFAULT (or MATERIALIZED, ALIAS) that is
// not Nullable, is not a relay column, and is not among carried, the
// outbox table's extra columns. ClickHouse would store the type's zero
// there, which reads as a value the application never wrote. carried nil
// means they are not known: nothing is refused.
func required(table string, cols []tableColumn, carried []string) error {
	if carried == nil {
		return nil
	}
	have := make(map[string]bool, len(carried))
	for _, c := range carried {
		have[c] = true
	}
	for _, c := range cols {
		if relayColumns[c.name] || have[c.name] || c.kind != "" || strings.Contains(c.typ, "Nullable(") {
			continue
		}
		return retry.Permanent(fmt.Errorf("%w: %s.%s (%s) has no DEFAULT and is not Nullable, and the relay has nothing to fill it with "+
			"(it is not a relay column, and the outbox table has no column %s); give it a default (ALTER TABLE %s MODIFY COLUMN %s %s DEFAULT …), "+
			"make it Nullable, or add the column to the outbox table",
			event.ErrSchema, table, c.name, c.typ, c.name, chsql.Ident(table), chsql.Ident(c.name), c.typ))
	}
	return nil
}

// relayFields names the columns the relay fills, for messages.
var relayFields = []string{"event_id", "event_type", "event_date_time", "environment", "event_context", "metadata_version", "commit_lsn", "relayed_at"}

// relayTypes are the types the relay writes each of its columns into
// (Nullable of them too), for messages.
var relayTypes = map[string]string{
	"event_id":           "UUID or String",
	"event_type":         "String, or LowCardinality(String) on 23.3+",
	"environment":        "String, or LowCardinality(String) on 23.3+",
	"event_context":      "String, or JSON on 23.3+",
	"event_date_time":    "DateTime or DateTime64(p), with or without a time zone",
	"event_date_time_us": "UInt32",
	"metadata_version":   "Int32, UInt32, Int64 or UInt64",
	"commit_lsn":         "UInt64",
	"relayed_at":         "DateTime",
}

// intRange is the range of an integer type the relay writes
// metadata_version into.
func intRange(typ string) (lo, hi int64) {
	switch typ {
	case "Int32":
		return math.MinInt32, math.MaxInt32
	case "UInt32":
		return 0, math.MaxUint32
	case "UInt64":
		return 0, math.MaxInt64
	}
	return math.MinInt64, math.MaxInt64
}

// timeRange is the range of the event_date_time column's type.
func (t *table) timeRange() (lo, hi time.Time) {
	for _, c := range t.cols {
		if c.name == "event_date_time" && strings.HasPrefix(c.typ, "DateTime64") {
			return time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2262, 4, 11, 0, 0, 0, 0, time.UTC)
		}
	}
	return time.Unix(0, 0).UTC(), time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC)
}

// refresh rereads the table's columns.
func (t *table) refresh(ctx context.Context) error {
	conn, err := Connect(ctx, t.s.dsn)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	cols, err := readColumns(ctx, conn, t.name)
	if err != nil {
		return err
	}
	for _, c := range cols {
		if !relayColumns[c.name] {
			t.extras.table[c.name] = c
		}
	}
	return nil
}
