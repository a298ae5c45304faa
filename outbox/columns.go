package outbox

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// relayColumns are the outbox table's columns the publisher itself writes.
var relayColumns = []string{"id", "event_type", "event_date_time", "environment", "event_context", "metadata_version"}

// WithColumns declares the outbox table's extra columns that events may
// set through [Event.Columns] (see [TableColumns] to read them from the
// database).
func WithColumns(names ...string) Option {
	return func(p *Publisher) {
		if p.extra == nil {
			p.extra = map[string]bool{}
		}
		for _, n := range names {
			p.extra[n] = true
		}
	}
}

// HasColumn reports whether events may set the extra column name.
func (p *Publisher) HasColumn(name string) bool { return p.extra[name] }

// Querier reads one row (a *pgxpool.Pool, *pgx.Conn or pgx.Tx).
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// TableColumns reads the extra columns of the outbox table (default
// outbox_event; a name or schema and name), for [WithColumns].
func TableColumns(ctx context.Context, q Querier, table ...string) ([]string, error) {
	if len(table) == 0 {
		table = []string{DefaultTable}
	}
	var names []string
	err := q.QueryRow(ctx, `SELECT coalesce(array_agg(attname::text ORDER BY attnum), '{}') FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND NOT (attname = ANY($2))`,
		pgx.Identifier(table).Sanitize(), relayColumns).Scan(&names)
	if err != nil {
		return nil, fmt.Errorf("outbox: read the columns of %s: %w", pgx.Identifier(table).Sanitize(), err)
	}
	return names, nil
}

// checkColumns validates an event's extra columns.
func (p *Publisher) checkColumns(cols map[string]any) error {
	if len(cols) == 0 {
		return nil
	}
	if p.prefix != "" {
		return fmt.Errorf("%w: extra columns are for table mode; messages carry only the event", ErrUnknownColumn)
	}
	for name := range cols {
		if slices.Contains(relayColumns, name) {
			return fmt.Errorf("%w: %q is set by the publisher itself (use the Event's fields)", ErrUnknownColumn, name)
		}
		if !p.extra[name] {
			known := make([]string, 0, len(p.extra))
			for k := range p.extra {
				known = append(known, k)
			}
			slices.Sort(known)
			return fmt.Errorf("%w: %q is not an extra column of %s (known: %s; declare columns with WithColumns or TableColumns)",
				ErrUnknownColumn, name, p.table.Sanitize(), strings.Join(known, ", "))
		}
	}
	return nil
}

func withColumns(events []Event) bool {
	for i := range events {
		if len(events[i].Columns) > 0 {
			return true
		}
	}
	return false
}

// insertWithColumns is the INSERT of events some of which set extra
// columns: one VALUES row per event, the columns any event sets listed,
// DEFAULT where an event leaves one out. pgx encodes each value into its
// column's type.
func (p *Publisher) insertWithColumns(c columns, events []Event) (string, []any) {
	var extra []string
	for i := range events {
		for name := range events[i].Columns {
			if !slices.Contains(extra, name) {
				extra = append(extra, name)
			}
		}
	}
	slices.Sort(extra)
	var b strings.Builder
	b.WriteString("INSERT INTO " + p.table.Sanitize() + " (id, event_type, event_date_time, environment, event_context, metadata_version")
	for _, name := range extra {
		b.WriteString(", " + pgx.Identifier{name}.Sanitize())
	}
	b.WriteString(") VALUES ")
	args := []any{p.environment}
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	for i := range events {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(%s::uuid, %s::text, %s::timestamptz, $1::text, %s::jsonb, %s::bigint",
			param(c.ids[i].String()), param(c.types[i]), param(c.times[i]), param(c.contexts[i]), param(c.versions[i]))
		for _, name := range extra {
			if v, ok := events[i].Columns[name]; ok {
				b.WriteString(", " + param(v))
			} else {
				b.WriteString(", DEFAULT")
			}
		}
		b.WriteString(")")
	}
	return b.String(), args
}
