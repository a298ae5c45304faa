// Package outboxtable reads an outbox table's shape from PostgreSQL's
// catalog and checks that a stream (config.Stream) can use it: the table
// exists, its primary key is one column of a type the relay derives an
// event identity from, and every column the stream takes a relay field from
// exists. `relay migrate` checks before it publishes the tables, `relay run`
// before it streams. The problems of every stream come back at once, as one
// permanent error (only an operator can fix them), each naming the stream,
// the table and the column.
//
// The relay never creates or alters an outbox table here; `relay migrate`
// creates the default outbox_event when it is missing (package migrate).
package outboxtable

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/pgerr"
	"github.com/outbox-relay/relay/internal/retry"
)

// Querier is what Read needs; *pgx.Conn, *pgxpool.Pool and pgx.Tx have it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Table is an outbox table as the catalog has it.
type Table struct {
	// Schema and Name are the table's, as resolved by PostgreSQL (the
	// search path applied to an unqualified name).
	Schema, Name string
	// Kind is pg_class.relkind: 'r' a table, 'p' a partitioned table.
	Kind byte
	// Key lists the primary key's columns in key order; empty without one.
	Key []string
	// Columns are the table's columns in attribute order.
	Columns []Column
}

// Column is one column of a Table.
type Column struct {
	Name string
	// Type is the column's type as PostgreSQL prints it (format_type).
	Type string
	// Base names the type, or a domain's base type (pg_type.typname:
	// uuid, int8, varchar, ...).
	Base string
}

// KeyTypes are the primary key types the relay takes an event identity
// from (pg_type.typname): a uuid is the identity, the others are hashed
// with the table's name.
var KeyTypes = []string{"uuid", "int8", "int4", "int2", "text", "varchar"}

// keyTypesText names KeyTypes for people.
const keyTypesText = "uuid, bigint, integer, smallint, text or varchar"

// ErrNotFound is returned by Read for a table that does not exist.
var ErrNotFound = errors.New("does not exist")

// Identifier is a stream's outbox table name ("schema.table", or "table"
// found on the search path) as an identifier: each part quoted as the
// configuration spells it, so case is kept (config checks the parts).
func Identifier(outbox string) pgx.Identifier {
	if schema, table, ok := strings.Cut(outbox, "."); ok {
		return pgx.Identifier{schema, table}
	}
	return pgx.Identifier{outbox}
}

// Qualified is the table's schema-qualified, quoted name.
func (t *Table) Qualified() string {
	return pgx.Identifier{t.Schema, t.Name}.Sanitize()
}

// String is schema.table, unquoted, for messages.
func (t *Table) String() string { return t.Schema + "." + t.Name }

// Column returns the column called name.
func (t *Table) Column(name string) (Column, bool) {
	i := slices.IndexFunc(t.Columns, func(c Column) bool { return c.Name == name })
	if i < 0 {
		return Column{}, false
	}
	return t.Columns[i], true
}

const readSQL = `
SELECT n.nspname, c.relname, c.relkind::text, a.attname, format_type(a.atttypid, a.atttypmod),
       COALESCE(bt.typname, t.typname)::text,
       array_position(i.indkey::int2[], a.attnum) AS key_pos
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE c.oid = to_regclass($1)
ORDER BY a.attnum`

// Read reads the table called outbox (see Identifier); ErrNotFound when
// there is none.
func Read(ctx context.Context, q Querier, outbox string) (Table, error) {
	rows, err := q.Query(ctx, readSQL, Identifier(outbox).Sanitize())
	if err != nil {
		return Table{}, pgerr.Classify(fmt.Errorf("read outbox table %s: %w", outbox, err))
	}
	defer rows.Close()
	var t Table
	type keyCol struct {
		pos  int
		name string
	}
	var keys []keyCol
	for rows.Next() {
		var kind string
		var c Column
		var pos *int // the column's subscript in the primary key; NULL outside it
		if err := rows.Scan(&t.Schema, &t.Name, &kind, &c.Name, &c.Type, &c.Base, &pos); err != nil {
			return Table{}, fmt.Errorf("read outbox table %s: %w", outbox, err)
		}
		t.Kind = kind[0]
		t.Columns = append(t.Columns, c)
		if pos != nil {
			keys = append(keys, keyCol{*pos, c.Name})
		}
	}
	if err := rows.Err(); err != nil {
		return Table{}, pgerr.Classify(fmt.Errorf("read outbox table %s: %w", outbox, err))
	}
	if t.Name == "" {
		return Table{}, fmt.Errorf("outbox table %s %w", outbox, ErrNotFound)
	}
	slices.SortFunc(keys, func(a, b keyCol) int { return a.pos - b.pos })
	for _, k := range keys {
		t.Key = append(t.Key, k.name)
	}
	return t, nil
}

// Check reads every stream's outbox table and checks it (see the package
// documentation). It returns the tables in stream order, or a permanent
// error listing every problem; an error reading the catalog is returned as
// it is (classified by pgerr).
func Check(ctx context.Context, q Querier, streams []config.Stream) ([]Table, error) {
	tables := make([]Table, len(streams))
	var problems []error
	for i, s := range streams {
		t, err := Read(ctx, q, s.Outbox)
		switch {
		case errors.Is(err, ErrNotFound):
			problems = append(problems, fmt.Errorf("stream %q: outbox table %s does not exist (create it, or correct the stream's outbox)", s.Name, s.Outbox))
			continue
		case err != nil:
			return nil, err
		}
		tables[i] = t
		problems = append(problems, CheckStream(s, t)...)
	}
	if len(problems) > 0 {
		return nil, retry.Permanent(errors.Join(problems...))
	}
	return tables, nil
}

// CheckStream lists what keeps stream s from using its outbox table t.
func CheckStream(s config.Stream, t Table) []error {
	var p []error
	add := func(format string, args ...any) {
		p = append(p, fmt.Errorf("stream %q: "+format, append([]any{s.Name}, args...)...))
	}
	if t.Kind != 'r' && t.Kind != 'p' {
		add("%s is not a table (relkind %q): a publication carries tables only", t.String(), t.Kind)
	}
	switch {
	case len(t.Key) == 0:
		add("outbox table %s has no primary key: the relay needs a single-column primary key of type %s", t.String(), keyTypesText)
	case len(t.Key) > 1:
		add("outbox table %s has a composite primary key (%s): the relay needs a single-column primary key of type %s",
			t.String(), strings.Join(t.Key, ", "), keyTypesText)
	default:
		if c, _ := t.Column(t.Key[0]); !slices.Contains(KeyTypes, c.Base) {
			add("outbox table %s: primary key %s is %s: the relay needs a single-column primary key of type %s",
				t.String(), c.Name, c.Type, keyTypesText)
		}
		if id, ok := s.Columns[config.FieldID]; ok && id != t.Key[0] {
			add("field %s maps onto column %q, but the primary key of %s is %q: the relay identifies and deletes rows by the primary key; map id onto it or leave id out",
				config.FieldID, id, t.String(), t.Key[0])
		}
	}
	for _, f := range []string{config.FieldEventType, config.FieldEventDateTime, config.FieldEventContext, config.FieldEnvironment, config.FieldMetadataVersion} {
		p = append(p, checkField(s, t, f)...)
	}
	return p
}

// checkField finds the column of field f in t, or its constant.
func checkField(s config.Stream, t Table, f string) []error {
	col := s.Column(f)
	if _, ok := t.Column(col); ok {
		return nil
	}
	if _, mapped := s.Columns[f]; mapped {
		return []error{fmt.Errorf("stream %q: field %s maps onto column %q, which outbox table %s does not have", s.Name, f, col, t.String())}
	}
	optional := f == config.FieldEnvironment || f == config.FieldMetadataVersion
	if _, ok := s.Constants[f]; ok && optional {
		return nil
	}
	hint := "map it onto a column (columns: in the config file, RELAY_OUTBOX_COLUMNS)"
	if optional {
		hint += " or give it a constant (constants:, RELAY_OUTBOX_CONSTANTS)"
	}
	return []error{fmt.Errorf("stream %q: outbox table %s has no column %q for field %s: %s", s.Name, t.String(), col, f, hint)}
}
