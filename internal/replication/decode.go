package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/event"
)

// Type OIDs the fast binary path understands.
const (
	oidInt2        = 21
	oidInt4        = 23
	oidInt8        = 20
	oidText        = 25
	oidVarchar     = 1043
	oidJSON        = 114
	oidJSONB       = 3802
	oidUUID        = 2950
	oidTimestamp   = 1114
	oidTimestamptz = 1184
)

// The relay's fields, by the names of the default outbox table's columns
// (a stream's column map may read them from other columns).
const (
	colID              = config.FieldID
	colEventType       = config.FieldEventType
	colEventDateTime   = config.FieldEventDateTime
	colEnvironment     = config.FieldEnvironment
	colEventContext    = config.FieldEventContext
	colMetadataVersion = config.FieldMetadataVersion
)

// field is where a relation column lands in an event.
type field int

const (
	fieldSkip field = iota
	fieldID
	fieldType
	fieldOccurredAt
	fieldEnvironment
	fieldContext
	fieldMetadataVersion
	// fieldExtra is a column beyond the relay's own: carried to the sink
	// as is (event.Event.Extra).
	fieldExtra
)

var errMalformed = errors.New("malformed pgoutput message")

// relation is the decoded shape of a published table.
type relation struct {
	name   string
	outbox *Outbox
	fields []field
	oids   []uint32
	// columns is the shape of the extra columns; nil when there are none.
	columns *event.Columns
	// extraSize is about how many bytes the extra values of an event take.
	extraSize int
	// idBuf is scratch for deriving identities (setKey).
	idBuf []byte
	// last holds the previous event's event_type and environment: they
	// repeat, and reusing the string saves an allocation per event.
	lastType, lastEnv string
}

// newRelation maps a RELATION message onto event fields. Columns beyond
// the relay's own become the event's extra columns (version is their
// shape's number; notNull names the NOT NULL ones), so columns can be
// added to the outbox table at any time.
func newRelation(m *pglogrepl.RelationMessage, o *Outbox, version int, notNull map[string]bool) (*relation, error) {
	r := &relation{name: m.Namespace + "." + m.RelationName, outbox: o}
	seen := map[field]bool{}
	var extra []event.Column
	for _, c := range m.Columns {
		f := o.fieldFor(c.Name)
		if f == fieldID && keyClass(c.DataType) != keyClass(o.KeyOID) || f != fieldExtra && f != fieldID && !typeOK(f, c.DataType) {
			want := wantType(f)
			if f == fieldID {
				want = o.KeyType
			}
			return nil, fmt.Errorf("%w: relation %s: the relay's column %s changed its type to %s (oid %d); the relay reads it as %s. "+
				"Change it back (ALTER TABLE %s ALTER COLUMN %s TYPE %s); %s",
				event.ErrSchema, r.name, c.Name, typeName(c.DataType), c.DataType, want, m.RelationName, c.Name, want, replayAdvice)
		}
		seen[f] = true
		r.fields = append(r.fields, f)
		r.oids = append(r.oids, c.DataType)
		if f == fieldExtra {
			extra = append(extra, event.Column{Name: c.Name, TypeOID: c.DataType, TypeMod: c.TypeModifier, NotNull: notNull[c.Name]})
		}
	}
	for _, need := range []field{fieldID, fieldType, fieldEnvironment, fieldContext} {
		if !seen[need] && !(need == fieldEnvironment && o.environment != nil) {
			col := o.column(need)
			return nil, fmt.Errorf("%w: relation %s has no column %s (dropped or renamed?): the relay reads %s from it. "+
				"Restore it (ALTER TABLE %s RENAME COLUMN <new name> TO %s, or ADD COLUMN %s %s); %s",
				event.ErrSchema, r.name, col, fieldName(need), m.RelationName, col, col, wantType(need), replayAdvice)
		}
	}
	if len(extra) > 0 {
		r.columns = event.NewColumns(version, extra)
	}
	return r, nil
}

// replayAdvice ends a refusal of a change to a relay column. The WAL keeps
// the rows written since in the changed shape, so restoring the column is
// not enough: the slot is recreated, and the relay delivers the rows still
// in the table (exactly the undelivered ones) from its snapshot.
const replayAdvice = "then, as the rows written since are recorded in the WAL in the changed shape, " +
	"drop the relay's slot (SELECT pg_drop_replication_slot('<RELAY_SLOT>')) and restart the relay: it recreates the slot " +
	"and delivers every row still in the outbox table. Nothing from this change on was acknowledged or deleted"

// messageModeSlotDrop qualifies replayAdvice in message mode: the slot
// also holds messages, which no table keeps.
const messageModeSlotDrop = "Message mode is on: the slot also holds the outbox messages published since this change, " +
	"which are in no table: dropping the slot loses those (relay status then reports that events may have been lost); " +
	"drop it only once that loss is accepted"

// extraNames lists the columns of m that are not the relay's own.
func extraNames(m *pglogrepl.RelationMessage, o *Outbox) []string {
	var names []string
	for _, c := range m.Columns {
		if o.fieldFor(c.Name) == fieldExtra {
			names = append(names, c.Name)
		}
	}
	return names
}

// keyClass groups the identity column's types by how an identity is made
// of them: a change within a class keeps every identity (and the delete's
// cast), a change across classes would not.
func keyClass(oid uint32) int {
	switch oid {
	case oidUUID:
		return 1
	case oidInt2, oidInt4, oidInt8:
		return 2
	case oidText, oidVarchar:
		return 3
	}
	return 0
}

// wantType is the type the migration gives a relay column.
func wantType(f field) string {
	return [...]string{"", "uuid", "text", "timestamptz", "text", "jsonb", "bigint", ""}[f]
}

// typeName names the built-in types a relay column may be changed to.
func typeName(oid uint32) string {
	switch oid {
	case oidInt2:
		return "smallint"
	case oidInt4:
		return "integer"
	case oidInt8:
		return "bigint"
	case oidText:
		return "text"
	case oidVarchar:
		return "varchar"
	case oidJSON:
		return "json"
	case oidJSONB:
		return "jsonb"
	case oidUUID:
		return "uuid"
	case oidTimestamp:
		return "timestamp"
	case oidTimestamptz:
		return "timestamptz"
	}
	return "another type"
}

func fieldName(f field) string {
	return [...]string{"", colID, colEventType, colEventDateTime, colEnvironment, colEventContext, colMetadataVersion, "extra column"}[f]
}

func typeOK(f field, oid uint32) bool {
	switch f {
	case fieldID:
		return oid == oidUUID
	case fieldType, fieldEnvironment:
		return oid == oidText || oid == oidVarchar
	case fieldOccurredAt:
		return oid == oidTimestamptz || oid == oidTimestamp
	case fieldContext:
		return oid == oidJSONB || oid == oidJSON || oid == oidText
	case fieldMetadataVersion:
		return oid == oidInt8 || oid == oidInt4 || oid == oidInt2
	}
	return true
}

// defaultMetadataVersion is metadata_version when the column is absent or
// NULL (the outbox table's DEFAULT).
const defaultMetadataVersion = 1

// decodeInsert parses the body of an INSERT message (after the 'I' byte)
// straight into ev without allocating per column. Only the columns the event
// needs are copied out of src, which the caller may reuse afterwards.
func (r *relation) decodeInsert(src []byte, ev *event.Event, types *pgtype.Map) error {
	// Int32 relation id, Byte1 'N', Int16 column count.
	if len(src) < 7 || src[4] != 'N' {
		return errMalformed
	}
	n := int(binary.BigEndian.Uint16(src[5:]))
	if n != len(r.fields) {
		return fmt.Errorf("relation %s: insert has %d columns, relation %d", r.name, n, len(r.fields))
	}
	r.defaults(ev)
	p := 7
	for i := 0; i < n; i++ {
		if p >= len(src) {
			return errMalformed
		}
		kind := src[p]
		p++
		if kind == 'n' || kind == 'u' {
			if err := r.null(ev, i); err != nil {
				return err
			}
			continue
		}
		if p+4 > len(src) {
			return errMalformed
		}
		l := int(binary.BigEndian.Uint32(src[p:]))
		p += 4
		if p+l > len(src) {
			return errMalformed
		}
		val := src[p : p+l]
		p += l
		if err := r.set(ev, i, kind, val, types); err != nil {
			return err
		}
	}
	return nil
}

// decodeRow fills ev from a row of the outbox table read by a query (the
// backfill), with the stream's decoding: vals are the row's raw values (nil
// for NULL) in the result formats of the columns.
func (r *relation) decodeRow(vals [][]byte, formats []int16, ev *event.Event, types *pgtype.Map) error {
	if len(vals) != len(r.fields) || len(formats) != len(r.fields) {
		return fmt.Errorf("relation %s: row has %d columns, relation %d", r.name, len(vals), len(r.fields))
	}
	r.defaults(ev)
	for i, val := range vals {
		if val == nil {
			if err := r.null(ev, i); err != nil {
				return err
			}
			continue
		}
		kind := byte('t')
		if formats[i] == pgtype.BinaryFormatCode {
			kind = 'b'
		}
		if err := r.set(ev, i, kind, val, types); err != nil {
			return err
		}
	}
	return nil
}

// defaults sets what an event has before its columns are read: its
// stream, shape, and the stream's constants.
func (r *relation) defaults(ev *event.Event) {
	o := r.outbox
	ev.Stream, ev.Columns, ev.MetadataVersion = o.Stream, r.columns, defaultMetadataVersion
	if o.metadata != nil {
		ev.MetadataVersion = *o.metadata
	}
	if o.environment != nil {
		ev.Environment = *o.environment
	}
}

// null checks that column i may be NULL (and records a NULL extra column).
func (r *relation) null(ev *event.Event, i int) error {
	switch f := r.fields[i]; f {
	case fieldID, fieldType, fieldContext:
		return fmt.Errorf("relation %s: column %s is null", r.name, fieldName(f))
	case fieldExtra:
		ev.Extra = r.appendExtra(ev.Extra, event.KindNull, nil)
	}
	return nil
}

// set stores column i's value, in the binary ('b') or text ('t') format,
// in ev.
func (r *relation) set(ev *event.Event, i int, kind byte, val []byte, types *pgtype.Map) error {
	var err error
	switch f := r.fields[i]; {
	case f == fieldSkip:
	case f == fieldExtra && (kind == 'b' || kind == 't'):
		ev.Extra = r.appendExtra(ev.Extra, kind, val)
	case kind == 'b' && f == fieldType:
		ev.Type = intern(&r.lastType, val)
	case kind == 'b' && f == fieldEnvironment:
		ev.Environment = intern(&r.lastEnv, val)
	case f == fieldID && r.oids[i] != oidUUID:
		err = r.setKey(ev, kind, r.oids[i], val)
	case kind == 'b':
		err = setBinary(ev, f, r.oids[i], val)
	case kind == 't':
		err = setText(ev, f, r.oids[i], val, types)
	default:
		err = errMalformed
	}
	if err != nil {
		return fmt.Errorf("relation %s: column %s: %w", r.name, fieldName(r.fields[i]), err)
	}
	return nil
}

// setKey stores a non-uuid identity column: its text as the event's Key,
// and the identity derived from it and the table as its ID.
func (r *relation) setKey(ev *event.Event, kind byte, oid uint32, val []byte) error {
	if kind == 't' || oid == oidText || oid == oidVarchar {
		ev.Key = string(val)
	} else {
		var n int64
		switch len(val) {
		case 8:
			n = int64(binary.BigEndian.Uint64(val))
		case 4:
			n = int64(int32(binary.BigEndian.Uint32(val)))
		case 2:
			n = int64(int16(binary.BigEndian.Uint16(val)))
		default:
			return errMalformed
		}
		ev.Key = strconv.FormatInt(n, 10)
	}
	ev.ID = appendIdentity(&r.idBuf, r.outbox.Schema, r.outbox.Table, ev.Key)
	return nil
}

// appendExtra appends an extra column's value to extra. The first one
// sizes extra for all of them from the last event's (they are alike): one
// allocation per event.
func (r *relation) appendExtra(extra []byte, kind byte, val []byte) []byte {
	if extra == nil {
		extra = make([]byte, 0, max(r.extraSize, 5+len(val)))
	}
	extra = event.AppendValue(extra, kind, val)
	r.extraSize = max(r.extraSize/2, len(extra)) // follows the sizes down, slowly
	return extra
}

// intern returns *last when v spells it (no allocation: the comparison
// does not convert), else a new string that becomes *last.
func intern(last *string, v []byte) string {
	if string(v) != *last {
		*last = string(v)
	}
	return *last
}

// pgEpochSeconds is PostgreSQL's timestamp origin, 2000-01-01, in Unix seconds.
const pgEpochSeconds = 946684800

// pgTime converts microseconds since PostgreSQL's origin. 'infinity' and
// '-infinity' become event.Infinity and event.NegInfinity; no value wraps
// (adding the origin in microseconds would, near 'infinity').
func pgTime(us int64) time.Time {
	switch us {
	case math.MaxInt64:
		return event.Infinity
	case math.MinInt64:
		return event.NegInfinity
	}
	return time.Unix(us/1e6+pgEpochSeconds, us%1e6*1e3).UTC()
}

func setBinary(ev *event.Event, f field, oid uint32, v []byte) error {
	switch f {
	case fieldID:
		if len(v) != 16 {
			return errMalformed
		}
		copy(ev.ID[:], v)
	case fieldType:
		ev.Type = string(v)
	case fieldEnvironment:
		ev.Environment = string(v)
	case fieldOccurredAt:
		if len(v) != 8 {
			return errMalformed
		}
		ev.OccurredAt = pgTime(int64(binary.BigEndian.Uint64(v)))
	case fieldContext:
		if oid == oidJSONB {
			// jsonb's binary form is a version byte followed by the text.
			if len(v) < 1 || v[0] != 1 {
				return fmt.Errorf("unknown jsonb binary version")
			}
			v = v[1:]
		}
		ev.Context = append([]byte(nil), v...)
	case fieldMetadataVersion:
		switch len(v) {
		case 8:
			ev.MetadataVersion = int64(binary.BigEndian.Uint64(v))
		case 4:
			ev.MetadataVersion = int64(int32(binary.BigEndian.Uint32(v)))
		case 2:
			ev.MetadataVersion = int64(int16(binary.BigEndian.Uint16(v)))
		default:
			return errMalformed
		}
	}
	return nil
}

// setText handles text-format values (servers or types without the binary
// option). It is not the hot path, so pgtype does the parsing.
func setText(ev *event.Event, f field, oid uint32, v []byte, types *pgtype.Map) error {
	switch f {
	case fieldType:
		ev.Type = string(v)
	case fieldEnvironment:
		ev.Environment = string(v)
	case fieldContext:
		ev.Context = append([]byte(nil), v...)
	case fieldID:
		var u pgtype.UUID
		if err := types.Scan(oid, pgtype.TextFormatCode, v, &u); err != nil {
			return err
		}
		ev.ID = u.Bytes
	case fieldOccurredAt:
		var t pgtype.Timestamptz
		if oid == oidTimestamp {
			var ts pgtype.Timestamp
			if err := types.Scan(oid, pgtype.TextFormatCode, v, &ts); err != nil {
				return err
			}
			t = pgtype.Timestamptz(ts)
		} else if err := types.Scan(oid, pgtype.TextFormatCode, v, &t); err != nil {
			return err
		}
		switch t.InfinityModifier {
		case pgtype.Infinity:
			ev.OccurredAt = event.Infinity
		case pgtype.NegativeInfinity:
			ev.OccurredAt = event.NegInfinity
		default:
			ev.OccurredAt = t.Time.UTC()
		}
	case fieldMetadataVersion:
		var n int64
		if err := types.Scan(oid, pgtype.TextFormatCode, v, &n); err != nil {
			return err
		}
		ev.MetadataVersion = n
	}
	return nil
}
