package replication

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/retry"
)

// Outbox is a stream's outbox table as the catalog describes it: where it
// lives, which column is the event's identity, and how the relay's fields
// map onto its columns.
type Outbox struct {
	Stream         uint16 // index in the relay's streams
	Name           string // the stream's name
	Schema, Table  string
	Key            string // the identity column (the primary key unless mapped)
	KeyType        string // as format_type spells it, e.g. "bigint"
	KeyOID         uint32
	byColumn       map[string]field   // outbox column -> relay field (skipped ones too)
	columns        [fieldExtra]string // relay field -> outbox column
	environment    *string            // constant when the table has no environment column
	metadata       *int64             // constant metadata_version
	eventTimeOrder string             // the backfill's ORDER BY
	extra          []catalogColumn    // the columns carried beyond the relay's fields
}

// Qualified is the table's name for SQL, quoted.
func (o *Outbox) Qualified() string { return pgx.Identifier{o.Schema, o.Table}.Sanitize() }

// String names the table for messages (schema.table).
func (o *Outbox) String() string { return o.Schema + "." + o.Table }

// ExtraColumns names the columns the stream carries beyond the relay's
// fields (those a ClickHouse table may require).
func (o *Outbox) ExtraColumns() []string {
	names := make([]string, 0, len(o.extra))
	for _, c := range o.extra {
		names = append(names, c.name)
	}
	return names
}

// KeyIsID says the identity column is a uuid: the event's ID is the key.
func (o *Outbox) KeyIsID() bool { return o.KeyOID == oidUUID }

// identityNamespace seeds the event identities derived from a non-uuid key
// (a name-based uuid, version 5, over the table's name and the key).
var identityNamespace = uuid.MustParse("7f3d1c52-4b8e-4f0a-9c61-2d5e8b9a0c13")

// Identity is the event identity of the row whose key spells key in
// table schema.name: the same on every replay, and different for the same
// key in another table, so streams never collide in one ClickHouse table.
// It is a name-based uuid (version 5, RFC 9562) over schema + "." + table
// + NUL + key.
func Identity(schema, table, key string) [16]byte {
	var buf []byte
	return appendIdentity(&buf, schema, table, key)
}

// appendIdentity is Identity with *buf as scratch (kept by the decoder:
// no allocation per event).
func appendIdentity(buf *[]byte, schema, table, key string) [16]byte {
	b := append((*buf)[:0], identityNamespace[:]...)
	b = append(append(append(append(append(b, schema...), '.'), table...), 0), key...)
	*buf = b
	sum := sha1.Sum(b)
	var id [16]byte
	copy(id[:], sum[:16])
	id[6] = id[6]&0x0f | 0x50 // version 5
	id[8] = id[8]&0x3f | 0x80 // RFC 9562 variant
	return id
}

// keyTypes are the identity column types: a uuid is the identity itself,
// the others are hashed into one (Identity).
var keyTypes = []uint32{oidUUID, oidInt2, oidInt4, oidInt8, oidText, oidVarchar}

// Describe reads each stream's outbox table from the catalog and checks
// the stream against it: the table exists, its identity column is one
// column of a usable type, every mapped column exists with a type the
// relay reads, and constants stand only for columns the table lacks.
// Every problem comes back at once, as a permanent error.
func Describe(ctx context.Context, db DB, streams []config.Stream) ([]Outbox, error) {
	var out []Outbox
	var errs []error
	for i, s := range streams {
		o, problems, err := describe(ctx, db, s)
		if err != nil {
			return nil, err
		}
		o.Stream = uint16(i)
		errs = append(errs, problems...)
		out = append(out, o)
	}
	if len(errs) > 0 {
		return nil, retry.Permanent(errors.Join(errs...))
	}
	return out, nil
}

type catalogColumn struct {
	name    string
	oid     uint32
	typ     string
	notNull bool
}

func describe(ctx context.Context, db DB, s config.Stream) (Outbox, []error, error) {
	o := Outbox{Name: s.Name}
	var relid uint32
	// The name as written (config quotes nothing away: case counts); an
	// unqualified one is found on the search_path.
	err := db.QueryRow(ctx, `SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass($1)`, s.OutboxRegclass()).Scan(&relid, &o.Schema, &o.Table)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, []error{fmt.Errorf("stream %q: outbox table %q does not exist (run `relay migrate` for the default table, or check the name)", s.Name, s.Outbox)}, nil
	}
	if err != nil {
		return o, nil, classify(fmt.Errorf("stream %q: read outbox table %q: %w", s.Name, s.Outbox, err))
	}
	rows, err := db.Query(ctx, `SELECT a.attname::text, a.atttypid, format_type(a.atttypid, a.atttypmod), a.attnotnull
		FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, relid)
	if err != nil {
		return o, nil, classify(fmt.Errorf("stream %q: read the columns of %s: %w", s.Name, o.String(), err))
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalogColumn, error) {
		var c catalogColumn
		return c, r.Scan(&c.name, &c.oid, &c.typ, &c.notNull)
	})
	if err != nil {
		return o, nil, classify(fmt.Errorf("stream %q: read the columns of %s: %w", s.Name, o.String(), err))
	}
	var pk []string
	if err := db.QueryRow(ctx, `SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1 AND i.indisprimary`, relid).Scan(&pk); err != nil {
		return o, nil, classify(fmt.Errorf("stream %q: read the primary key of %s: %w", s.Name, o.String(), err))
	}
	problems := o.resolve(s, cols, pk)
	return o, problems, nil
}

// resolve maps the stream's fields onto the table's columns.
func (o *Outbox) resolve(s config.Stream, cols []catalogColumn, pk []string) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("stream %q (%s): "+format, append([]any{s.Name, o.String()}, args...)...))
	}
	byName := map[string]catalogColumn{}
	for _, c := range cols {
		byName[c.name] = c
	}
	o.byColumn = map[string]field{}
	for _, name := range s.Ignore {
		if _, ok := byName[name]; !ok {
			bad("ignore names column %q, which the table does not have", name)
		}
		o.byColumn[name] = fieldSkip
	}
	// The identity column: mapped, else the primary key, else "id".
	key, mapped := s.Columns[config.FieldID]
	switch {
	case mapped:
	case len(pk) == 1:
		key = pk[0]
	case len(pk) > 1:
		bad("its primary key has %d columns (%v): map the id field onto one unique column (columns: {id: <column>})", len(pk), pk)
		key = config.FieldID
	default:
		key = config.FieldID
	}
	for _, f := range []field{fieldID, fieldType, fieldOccurredAt, fieldEnvironment, fieldContext, fieldMetadataVersion} {
		name := s.Column(fieldName(f))
		if f == fieldID {
			name = key
		}
		c, ok := byName[name]
		constant, hasConstant := s.Constants[fieldName(f)]
		switch {
		case ok && hasConstant:
			bad("a constant is given for %s, and the table has a column %q: drop the constant, or ignore the column", fieldName(f), name)
		case !ok && hasConstant:
			if f == fieldEnvironment {
				o.environment = &constant
			} else if n, err := strconv.ParseInt(constant, 10, 64); err == nil {
				o.metadata = &n
			}
			continue
		case !ok && f == fieldID && !mapped && len(pk) == 0:
			bad("it has no primary key and no column id: map the id field onto a unique column (columns: {id: <column>})")
			continue
		case !ok && (f == fieldOccurredAt || f == fieldMetadataVersion) && s.Columns[fieldName(f)] == "":
			continue // optional, and not named by the config
		case !ok:
			bad("%s is read from column %q, which the table does not have", fieldName(f), name)
			continue
		case slices.Contains(s.Ignore, name):
			bad("column %q holds %s and is ignored", name, fieldName(f))
			continue
		}
		if f == fieldID {
			if !slices.Contains(keyTypes, c.oid) {
				bad("its identity column %q is %s: the relay takes uuid, smallint, integer, bigint, text or varchar", name, c.typ)
			}
			o.Key, o.KeyType, o.KeyOID = name, c.typ, c.oid
		} else if !typeOK(f, c.oid) {
			bad("%s is read from column %q of type %s: the relay reads it as %s", fieldName(f), name, c.typ, wantType(f))
		}
		o.byColumn[name] = f
		o.columns[f] = name
	}
	for _, c := range cols {
		if _, ok := o.byColumn[c.name]; !ok {
			o.extra = append(o.extra, c)
		}
	}
	o.eventTimeOrder = pgx.Identifier{o.Key}.Sanitize()
	for col, f := range o.byColumn {
		if f == fieldOccurredAt {
			o.eventTimeOrder = pgx.Identifier{col}.Sanitize() + ", " + o.eventTimeOrder
		}
	}
	return errs
}

// column is the outbox column that holds f.
func (o *Outbox) column(f field) string {
	if c := o.columns[f]; c != "" {
		return c
	}
	return fieldName(f)
}

// SharedTables checks the streams that write one ClickHouse table: an
// extra column they both carry must have one type, or the table could
// hold only one stream's values. outboxes are Describe's, in stream order.
func SharedTables(streams []config.Stream, outboxes []Outbox) error {
	var errs []error
	for i := range streams {
		for j := i + 1; j < len(streams); j++ {
			if streams[i].ClickHouseTable != streams[j].ClickHouseTable {
				continue
			}
			for _, a := range outboxes[i].extra {
				for _, b := range outboxes[j].extra {
					if a.name == b.name && a.typ != b.typ {
						errs = append(errs, fmt.Errorf("streams %q and %q both write ClickHouse table %s, and their column %q differs: %s in %s, %s in %s: "+
							"give one stream its own table, retype the column, or ignore it in one stream",
							streams[i].Name, streams[j].Name, streams[i].ClickHouseTable, a.name, a.typ, outboxes[i].String(), b.typ, outboxes[j].String()))
					}
				}
			}
		}
	}
	if len(errs) > 0 {
		return retry.Permanent(errors.Join(errs...))
	}
	return nil
}

// fieldFor is where column name of this table lands in an event.
func (o *Outbox) fieldFor(name string) field {
	if f, ok := o.byColumn[name]; ok {
		return f
	}
	return fieldExtra
}
