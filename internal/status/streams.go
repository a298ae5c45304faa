package status

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/sink/clickhouse/chsql"
	"github.com/outbox-relay/relay/internal/topology"
)

// GuaranteeUnknown is TableStatus.Guarantee when it was not read (no
// Target.Guarantee, or ClickHouse could not say).
const GuaranteeUnknown = "unknown"

// GuaranteeFunc states the delivery guarantee a ClickHouse table gives the
// relay's replays (e.g. "exactly once", "at least once: ..."), read on
// conn.
type GuaranteeFunc func(ctx context.Context, conn driver.Conn, table string) (string, error)

// StreamStatus is one stream of the relay: the backlog of its outbox table
// and the ClickHouse tables it writes.
type StreamStatus struct {
	Name string `json:"name"`
	// Outbox is the outbox table as configured; OutboxExists is false when
	// PostgreSQL has no such table.
	Outbox       string `json:"outbox"`
	OutboxExists bool   `json:"outbox_exists"`
	// InPublication says the publication includes the outbox table (the
	// slot streams nothing of it otherwise).
	InPublication bool `json:"in_publication"`
	// BacklogRows is the number of rows in the outbox table: events not yet
	// delivered. OldestBacklogAgeSeconds is now() minus the oldest event
	// time; null when the table is empty or unreadable.
	BacklogRows             int64    `json:"backlog_rows"`
	OldestBacklogAgeSeconds *float64 `json:"oldest_backlog_age_seconds"`
	// DeadLetters is the stream's rows of outbox_dead_letter; null when
	// the table cannot be read or predates streams (migration 00010).
	DeadLetters *int64 `json:"dead_letters"`
	// ClickHouseTable is the configured table, or the template (Routed)
	// whose values name the tables.
	ClickHouseTable string `json:"clickhouse_table"`
	Routed          bool   `json:"routed"`
	// Tables are the stream's table, or the tables its template routed to
	// so far (those of the database the template matches); empty when
	// ClickHouse was not read.
	Tables []TableStatus `json:"tables"`
	// Error says why the outbox table could not be read ("" when fine).
	Error string `json:"error"`
}

// TableStatus is one ClickHouse table a stream writes.
type TableStatus struct {
	Name   string `json:"name"`
	Exists bool   `json:"exists"`
	Engine string `json:"engine"`
	// Rows is the table's row count (replays not yet merged away counted
	// twice): the active parts' rows of a MergeTree table, count() of
	// another stream table (e.g. Distributed); null when not read.
	Rows *uint64 `json:"rows"`
	// Guarantee is the delivery guarantee the table gives the relay's
	// replays; "unknown" when it was not read.
	Guarantee string `json:"guarantee"`
	// Error says why the table could not be read ("" when fine).
	Error string `json:"error"`
}

// gatherStreams reads each stream's outbox table: whether it exists and is
// in the publication, and its backlog. A problem of one stream's table (a
// missing table or column, no privilege) is recorded in its status; other
// PostgreSQL errors are returned.
func gatherStreams(ctx context.Context, db DB, publication string, streams []config.Stream) ([]StreamStatus, error) {
	out := make([]StreamStatus, len(streams))
	for i, s := range streams {
		st := StreamStatus{Name: s.Name, Outbox: s.Outbox, ClickHouseTable: s.ClickHouseTable, Routed: s.Routed(),
			Tables: []TableStatus{}}
		if err := gatherOutbox(ctx, db, publication, s, &st); err != nil {
			return nil, err
		}
		out[i] = st
	}
	return out, nil
}

// gatherOutbox fills st from s's outbox table.
func gatherOutbox(ctx context.Context, db DB, publication string, s config.Stream, st *StreamStatus) error {
	var schema, table string
	err := db.QueryRow(ctx, `SELECT n.nspname, c.relname, EXISTS (SELECT 1 FROM pg_publication_tables p
			WHERE p.pubname = $2 AND p.schemaname = n.nspname AND p.tablename = c.relname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`,
		s.OutboxRegclass(), publication).Scan(&schema, &table, &st.InPublication)
	if errors.Is(err, pgx.ErrNoRows) {
		st.Error = fmt.Sprintf("outbox table %s does not exist", s.Outbox)
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %q: read outbox table %s: %w", s.Name, s.Outbox, err)
	}
	st.OutboxExists = true
	err = db.QueryRow(ctx, `SELECT count(*), extract(epoch FROM now() - min(`+pgx.Identifier{s.Column(config.FieldEventDateTime)}.Sanitize()+
		`))::float8 FROM `+pgx.Identifier{schema, table}.Sanitize()).Scan(&st.BacklogRows, &st.OldestBacklogAgeSeconds)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "42") { // no such column, no privilege
		st.Error = fmt.Sprintf("read backlog of %s: %s", s.Outbox, pgErr.Message)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read backlog of %s: %w", s.Outbox, err)
	}
	if age := st.OldestBacklogAgeSeconds; age != nil && *age < 0 {
		*age = 0 // an event time in the future (clock skew of a publisher)
	}
	return nil
}

// gatherStreamDeadLetters counts each stream's dead letters, when
// outbox_dead_letter is readable and has its stream column.
func gatherStreamDeadLetters(ctx context.Context, db DB, streams []StreamStatus) error {
	var names []string
	var ns []int64
	err := db.QueryRow(ctx, `SELECT coalesce(array_agg(stream), '{}'), coalesce(array_agg(n), '{}')
		FROM (SELECT stream, count(*) AS n FROM outbox_dead_letter GROUP BY stream) s`).Scan(&names, &ns)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42703" { // before migration 00010
		return nil
	}
	if err != nil {
		return fmt.Errorf("count outbox_dead_letter by stream: %w", err)
	}
	counts := make(map[string]int64, len(names))
	for i, name := range names {
		counts[name] = ns[i]
	}
	for i := range streams {
		n := counts[streams[i].Name]
		streams[i].DeadLetters = &n
	}
	return nil
}

// chTable is a table of the ClickHouse database as system.tables lists it.
type chTable struct{ name, engine string }

// routedTables are the tables of the database s's template routed to:
// those its pattern matches that can hold rows (not views), without the
// local tables under a sharded topology's Distributed ones.
func routedTables(s config.Stream, tables []chTable, layout topology.Layout) []chTable {
	matched := map[string]bool{}
	for _, t := range tables {
		if s.RoutesTo(t.name) {
			matched[t.name] = true
		}
	}
	var out []chTable
	for _, t := range tables {
		if !matched[t.name] || strings.HasSuffix(t.engine, "View") {
			continue
		}
		if base, local := strings.CutSuffix(t.name, "_local"); local && layout.Topology == topology.Sharded && matched[base] {
			continue
		}
		out = append(out, t)
	}
	return out
}

// gatherStreamTables fills each stream's ClickHouse tables: which exist,
// their rows and guarantee. A problem of one table is recorded in its
// status; the error is one of the database (its tables cannot be listed).
func gatherStreamTables(ctx context.Context, conn driver.Conn, t Target, streams []StreamStatus) error {
	tables, err := listTables(ctx, conn)
	if err != nil {
		return err
	}
	engines := make(map[string]string, len(tables))
	for _, tb := range tables {
		engines[tb.name] = tb.engine
	}
	parts, err := partRows(ctx, conn)
	if err != nil {
		return err
	}
	for i := range streams {
		st := &streams[i]
		var mine []chTable
		if st.Routed {
			mine = routedTables(config.Stream{ClickHouseTable: st.ClickHouseTable}, tables, t.Layout)
		} else {
			mine = []chTable{{name: st.ClickHouseTable, engine: engines[st.ClickHouseTable]}}
		}
		for _, tb := range mine {
			st.Tables = append(st.Tables, readTable(ctx, conn, t, tb, parts, !st.Routed))
		}
	}
	return nil
}

// readTable reads one stream table's rows and guarantee; count() only for
// a table that is not a MergeTree (whose rows system.parts has) and when
// counting is cheap enough (one table, not a routed family).
func readTable(ctx context.Context, conn driver.Conn, t Target, tb chTable, parts map[string]uint64, count bool) TableStatus {
	ts := TableStatus{Name: tb.name, Engine: tb.engine, Exists: tb.engine != "", Guarantee: GuaranteeUnknown}
	if !ts.Exists {
		ts.Error = fmt.Sprintf("table %s does not exist in the database of CLICKHOUSE_URL", tb.name)
		return ts
	}
	if n, ok := parts[tb.name]; ok || strings.HasSuffix(tb.engine, "MergeTree") {
		ts.Rows = &n
	} else if count {
		var n uint64
		if err := conn.QueryRow(ctx, `SELECT count() FROM `+chsql.Ident(tb.name)).Scan(&n); err != nil {
			ts.Error = fmt.Sprintf("count %s: %v", tb.name, err)
		} else {
			ts.Rows = &n
		}
	}
	if t.Guarantee != nil {
		g, err := t.Guarantee(ctx, conn, tb.name)
		switch {
		case err != nil:
			ts.Error = fmt.Sprintf("read the guarantee of %s: %v", tb.name, err)
		case g != "":
			ts.Guarantee = g
		}
	}
	return ts
}

// listTables lists the tables of the connection's database.
func listTables(ctx context.Context, conn driver.Conn) ([]chTable, error) {
	rows, err := conn.Query(ctx, `SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list the tables: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []chTable
	for rows.Next() {
		var tb chTable
		if err := rows.Scan(&tb.name, &tb.engine); err != nil {
			return nil, fmt.Errorf("list the tables: %w", err)
		}
		out = append(out, tb)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list the tables: %w", err)
	}
	return out, nil
}

// partRows are the rows of the active parts of each MergeTree table of the
// connection's database: count() without reading a column.
func partRows(ctx context.Context, conn driver.Conn) (map[string]uint64, error) {
	rows, err := conn.Query(ctx, `SELECT table, sum(rows) FROM system.parts WHERE database = currentDatabase() AND active GROUP BY table`)
	if err != nil {
		return nil, fmt.Errorf("read system.parts: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := map[string]uint64{}
	for rows.Next() {
		var name string
		var n uint64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, fmt.Errorf("read system.parts: %w", err)
		}
		out[name] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read system.parts: %w", err)
	}
	return out, nil
}
