package outbox

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
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

// WithColumnTypes declares the outbox table's extra columns with their
// types, as [ColumnTypes] reads them: what message mode needs to carry
// [Event.Columns] (see [WithMessages]). In table mode it is [WithColumns]
// of their names.
func WithColumnTypes(cols ...Column) Option {
	return func(p *Publisher) {
		for _, c := range cols {
			WithColumns(c.name)(p)
			i := slices.IndexFunc(p.typed, func(t Column) bool { return t.name == c.name })
			if i < 0 {
				p.typed = append(p.typed, c)
			} else {
				p.typed[i] = c
			}
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

// Column is an extra column of the outbox table with its type, as
// [ColumnTypes] reads it from the catalog. Message mode carries a column's
// values with its type (see [WithColumnTypes]); only columns read by
// ColumnTypes are accepted, because the type and default they hold go
// into the statement Publish sends.
type Column struct {
	name    string
	oid     uint32
	mod     int32
	notNull bool
	// typ spells the type with its modifier (format_type), base without.
	typ, base string
	// def is the DEFAULT expression as PostgreSQL prints it ("" for none).
	def string
	// lengthFunc is the type's (or, with lengthArray, its element type's)
	// length coercion that takes an isExplicit argument (varchar, bpchar,
	// bit, varbit): called with false it refuses an over-long value, as
	// an INSERT does, where a cast would cut it.
	lengthFunc  string
	lengthArray bool
}

// Name is the column's name.
func (c Column) Name() string { return c.name }

// String spells the column as a CREATE TABLE would, e.g.
// "amount numeric(12,2) NOT NULL DEFAULT 0".
func (c Column) String() string {
	s := pgx.Identifier{c.name}.Sanitize() + " " + c.typ
	if c.notNull {
		s += " NOT NULL"
	}
	if c.def != "" {
		s += " DEFAULT " + c.def
	}
	return s
}

// columnTypesSQL reads the extra columns ($2 names the relay's own) of
// table $1, as JSON, with what message mode needs to write a value of
// each as an INSERT would: the type with and without its modifier, the
// default (an identity column's is its sequence's nextval) and a length
// coercion that takes isExplicit. Generated columns are left out: no one
// sets them, and pgoutput does not send them.
const columnTypesSQL = `SELECT coalesce(json_agg(json_build_object(
		'name', a.attname, 'oid', a.atttypid::int8, 'mod', a.atttypmod, 'not_null', a.attnotnull,
		'type', format_type(a.atttypid, a.atttypmod), 'base', format_type(a.atttypid, NULL),
		'default', CASE WHEN a.attidentity <> '' THEN format('nextval(%L::regclass)', pg_get_serial_sequence($1::text, a.attname))
			ELSE coalesce(pg_get_expr(d.adbin, d.adrelid), '') END,
		'length_func', coalesce((SELECT c.castfunc::regproc::text FROM pg_cast c JOIN pg_proc f ON f.oid = c.castfunc
			WHERE c.castsource = e.elem AND c.casttarget = e.elem AND f.pronargs = 3 LIMIT 1), ''),
		'array', t.typcategory = 'A') ORDER BY a.attnum), '[]')
	FROM pg_attribute a
	JOIN pg_type t ON t.oid = a.atttypid
	CROSS JOIN LATERAL (SELECT CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE a.atttypid END AS elem) e
	LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		AND NOT (a.attname = ANY($2))`

// catalogColumn is one element of columnTypesSQL's result.
type catalogColumn struct {
	Name       string `json:"name"`
	OID        uint32 `json:"oid"`
	Mod        int32  `json:"mod"`
	NotNull    bool   `json:"not_null"`
	Type       string `json:"type"`
	Base       string `json:"base"`
	Default    string `json:"default"`
	LengthFunc string `json:"length_func"`
	Array      bool   `json:"array"`
}

// ColumnTypes reads the extra columns of the outbox table (default
// outbox_event; a name or schema and name) with their types, NOT NULL and
// defaults, for [WithColumnTypes]. Read them again (build a new Publisher)
// after changing the table's columns.
func ColumnTypes(ctx context.Context, q Querier, table ...string) ([]Column, error) {
	if len(table) == 0 {
		table = []string{DefaultTable}
	}
	name := pgx.Identifier(table).Sanitize()
	var raw []byte
	if err := q.QueryRow(ctx, columnTypesSQL, name, relayColumns).Scan(&raw); err != nil {
		return nil, fmt.Errorf("outbox: read the column types of %s: %w", name, err)
	}
	var list []catalogColumn
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("outbox: read the column types of %s: %w", name, err)
	}
	cols := make([]Column, len(list))
	for i, c := range list {
		cols[i] = Column{name: c.Name, oid: c.OID, mod: c.Mod, notNull: c.NotNull, typ: c.Type, base: c.Base,
			def: c.Default, lengthFunc: c.LengthFunc, lengthArray: c.Array}
	}
	return cols, nil
}

// checkTyped reports the columns declared by name that message mode has
// no type for, and columns not read by ColumnTypes.
func (p *Publisher) checkTyped() error {
	var errs []error
	for _, c := range p.typed {
		if c.name == "" || c.typ == "" {
			errs = append(errs, errors.New("a Column not read by ColumnTypes: build columns with ColumnTypes"))
			break
		}
	}
	if p.prefix == "" {
		return errors.Join(errs...)
	}
	var untyped []string
	for name := range p.extra {
		if !slices.ContainsFunc(p.typed, func(c Column) bool { return c.name == name }) {
			untyped = append(untyped, strconv.Quote(name))
		}
	}
	if len(untyped) > 0 {
		slices.Sort(untyped)
		errs = append(errs, fmt.Errorf("message mode needs the types of extra columns %s: declare them with WithColumnTypes(ColumnTypes(…)) rather than WithColumns",
			strings.Join(untyped, ", ")))
	}
	return errors.Join(errs...)
}

// checkMessageColumns applies, in message mode, what PostgreSQL's INSERT
// would check and a message cannot: a NOT NULL column gets a value (set,
// or its default), and a value is one message mode writes as an INSERT
// does.
func (p *Publisher) checkMessageColumns(cols map[string]any) error {
	for _, c := range p.typed {
		v, set := cols[c.name]
		switch {
		case c.notNull && set && isNull(v):
			return fmt.Errorf("%w: %q is NOT NULL and the event sets it to NULL", ErrNotNull, c.name)
		case c.notNull && !set && c.def == "":
			return fmt.Errorf("%w: %q is NOT NULL, has no default and the event leaves it out", ErrNotNull, c.name)
		case set && c.lengthArray && c.lengthFunc != "" && c.mod >= 0 && !isNull(v):
			return fmt.Errorf("%w: %q is %s: message mode cannot check the length of its elements as an INSERT does "+
				"(use an array of an unbounded type, e.g. text[], or table mode)", ErrUnknownColumn, c.name, c.typ)
		}
	}
	return nil
}

// isNull reports whether pgx sends v as NULL: nil, a nil pointer, slice
// or map, or a driver.Valuer whose value is nil (sql.NullString,
// pgtype.Text and the like when not Valid).
func isNull(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
		if rv.IsNil() {
			return true
		}
	}
	if dv, ok := v.(driver.Valuer); ok {
		x, err := dv.Value()
		return err == nil && x == nil
	}
	return false
}

// valueSQL is the expression of column c's value in the emit statement:
// expr (a parameter or the default) in the column's type, with an
// INSERT's length check where a cast would cut instead.
func (c Column) valueSQL(expr string) string {
	if c.lengthFunc != "" && c.mod >= 0 && !c.lengthArray {
		return c.lengthFunc + "((" + expr + ")::" + c.base + ", " + strconv.Itoa(int(c.mod)) + ", false)"
	}
	return "(" + expr + ")::" + c.typ
}
