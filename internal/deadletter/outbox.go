package deadletter

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/config"
)

// target is a stream's outbox table as a replay writes into it, read from
// the catalog the way the relay reads it (internal/replication Describe):
// the name resolved by to_regclass, the key the mapped id column or else
// the one-column primary key.
type target struct {
	stream config.Stream
	table  string // quoted, schema-qualified, for SQL
	name   string // schema.table, for messages
	key    outboxColumn
	// keyUUID: the key is a uuid, the event's id itself; otherwise the
	// dead letter's outbox_key is cast back to the key's type.
	keyUUID bool
	// overriding: the key (or an extra column) is GENERATED ALWAYS AS
	// IDENTITY, which takes an explicit value only with OVERRIDING SYSTEM
	// VALUE.
	overriding bool
	fields     []fieldColumn  // the relay's fields the table has a column for
	extra      []outboxColumn // the table's other columns, which a dead letter keeps in columns
}

// outboxColumn is a column of an outbox table as a replay needs it: the
// type to cast a kept text value to, and the default for a dead letter
// that has no value for it (stored before the column was added).
type outboxColumn struct {
	name, typ string
	def       *string
}

// fieldColumn is the column that holds one of the relay's fields.
type fieldColumn struct {
	field, column, typ string
}

// replayFields are the relay's fields a dead letter keeps in a column of
// its own (the id is the key).
var replayFields = []string{config.FieldEventType, config.FieldEventDateTime, config.FieldEnvironment,
	config.FieldEventContext, config.FieldMetadataVersion}

// requiredFields must have a column: a dead letter cannot be put back
// without them. environment and metadata_version may be constants.
var requiredFields = []string{config.FieldEventType, config.FieldEventDateTime, config.FieldEventContext}

// catalogColumn is one column of the outbox table as the catalog has it.
type catalogColumn struct {
	outboxColumn
	uuid      bool
	always    bool // GENERATED ALWAYS AS IDENTITY
	generated bool // a generated column: never inserted
}

// describeTarget reads s's outbox table.
func describeTarget(ctx context.Context, tx pgx.Tx, s config.Stream) (*target, error) {
	t := &target{stream: s}
	var relid uint32
	var schema, table string
	err := tx.QueryRow(ctx, `SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass($1)`, s.OutboxRegclass()).Scan(&relid, &schema, &table)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("stream %q: outbox table %q does not exist", s.Name, s.Outbox)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %q: read outbox table %q: %w", s.Name, s.Outbox, err)
	}
	t.table, t.name = pgx.Identifier{schema, table}.Sanitize(), schema+"."+table
	cols, pk, err := readColumns(ctx, tx, relid)
	if err != nil {
		return nil, fmt.Errorf("stream %q: read the columns of %s: %w", s.Name, t.name, err)
	}
	if err := t.resolve(cols, pk); err != nil {
		return nil, fmt.Errorf("stream %q: %s: %w", s.Name, t.name, err)
	}
	return t, nil
}

// readColumns reads the table's columns and its primary key's.
func readColumns(ctx context.Context, tx pgx.Tx, relid uint32) ([]catalogColumn, []string, error) {
	rows, err := tx.Query(ctx, `SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid),
			a.atttypid = 'uuid'::regtype, a.attidentity = 'a', a.attgenerated <> ''
		FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, relid)
	if err != nil {
		return nil, nil, err
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalogColumn, error) {
		var c catalogColumn
		return c, r.Scan(&c.name, &c.typ, &c.def, &c.uuid, &c.always, &c.generated)
	})
	if err != nil {
		return nil, nil, err
	}
	var pk []string
	err = tx.QueryRow(ctx, `SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1 AND i.indisprimary`, relid).Scan(&pk)
	return cols, pk, err
}

// resolve finds the key, the fields' columns and the extra columns.
func (t *target) resolve(cols []catalogColumn, pk []string) error {
	s := t.stream
	byName := make(map[string]catalogColumn, len(cols))
	for _, c := range cols {
		byName[c.name] = c
	}
	// The identity column: mapped, else the primary key, else "id".
	keyName, mapped := s.Columns[config.FieldID]
	if !mapped {
		keyName = config.FieldID
		if len(pk) == 1 {
			keyName = pk[0]
		}
	}
	key, ok := byName[keyName]
	if !ok {
		return fmt.Errorf("no key column %q", keyName)
	}
	t.key, t.keyUUID, t.overriding = key.outboxColumn, key.uuid, key.always
	ignored := map[string]bool{}
	for _, c := range s.Ignore {
		ignored[c] = true
	}
	// Every field's column is the relay's, written or not: never an extra.
	taken := map[string]bool{keyName: true}
	for _, f := range replayFields {
		col := s.Column(f)
		c, has := byName[col]
		_, constant := s.Constants[f]
		switch {
		case !has && slices.Contains(requiredFields, f):
			return fmt.Errorf("no column %q for the field %s", col, f)
		case has && !constant && !ignored[col] && !taken[col] && !c.generated:
			t.fields = append(t.fields, fieldColumn{field: f, column: col, typ: c.typ})
		}
		taken[col] = true
	}
	for c := range ignored {
		taken[c] = true
	}
	for _, c := range cols {
		if !taken[c.name] && !c.generated {
			t.extra = append(t.extra, c.outboxColumn)
			t.overriding = t.overriding || c.always
		}
	}
	return nil
}
