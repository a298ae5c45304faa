package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/outbox-relay/relay/internal/sink/clickhouse/chsql"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outbox-relay/relay/internal/retry"
)

// tableColumn is a column of event_log as system.columns describes it.
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

// describe reads the server's version and the table's columns: those the
// relay fills (and the INSERT that names them), those left to the outbox
// table's extra columns or to the server, and the ranges the relay's
// columns take (see check).
func (s *Sink) describe(ctx context.Context, conn driver.Conn) error {
	v, err := conn.ServerVersion()
	if err != nil {
		return classify("server version", err)
	}
	s.version = *v
	s.extras.caps = CapsOf(*v)
	cols, err := readColumns(ctx, conn, s.table)
	if err != nil {
		return err
	}
	for _, tc := range cols {
		c, ok := newColumn(tc.name, tc.typ)
		if ok && c.typ != tc.typ {
			if !convertsNative(s.version) {
				return retry.Permanent(fmt.Errorf("clickhouse: %s.%s is %s: the relay writes %s there, which ClickHouse converts from 23.3 on (this server is %s); make the column %s",
					s.table, tc.name, tc.typ, c.typ, s.Version(), c.typ))
			}
			s.converts = true
		}
		if !ok {
			c, ok = relayedAtColumn(tc.name, tc.typ, &s.relayedAt)
		}
		switch {
		case ok:
			s.cols = append(s.cols, c)
			s.inputs = append(s.inputs, c.input())
		case !relayColumns[tc.name]:
			// Filled from an extra column of the outbox table, or by the
			// server (its DEFAULT, MATERIALIZED or ALIAS expression, or its
			// type's default).
			s.extras.table[tc.name] = tc
		}
	}
	if len(s.cols) == 0 {
		return retry.Permanent(fmt.Errorf("clickhouse table %s does not exist in the database of CLICKHOUSE_URL (run `relay migrate`)", s.table))
	}
	names := make([]string, len(s.cols))
	for i, c := range s.cols {
		names[i] = chsql.Ident(c.name)
	}
	s.timeLo, s.timeHi = s.timeRange()
	for _, c := range s.cols {
		if c.name == "metadata_version" && strings.Contains(c.typ, "UInt") {
			s.unsignedVersion = true
		}
	}
	// 18.16 needs the explicit column list.
	s.insert = fmt.Sprintf("INSERT INTO %s (%s) VALUES", chsql.Ident(s.table), strings.Join(names, ", "))
	return nil
}

// timeRange is the range of the event_date_time column's type.
func (s *Sink) timeRange() (lo, hi time.Time) {
	for _, c := range s.cols {
		if c.name == "event_date_time" && strings.HasPrefix(c.typ, "DateTime64") {
			return time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2262, 4, 11, 0, 0, 0, 0, time.UTC)
		}
	}
	return time.Unix(0, 0).UTC(), time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC)
}

// refresh rereads event_log's columns.
func (s *Sink) refresh(ctx context.Context) error {
	conn, err := Connect(ctx, s.dsn)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	cols, err := readColumns(ctx, conn, s.table)
	if err != nil {
		return err
	}
	for _, c := range cols {
		if !relayColumns[c.name] {
			s.extras.table[c.name] = c
		}
	}
	return nil
}
