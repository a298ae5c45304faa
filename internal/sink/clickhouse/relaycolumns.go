package clickhouse

import (
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/event"
)

// relayColumns are the event_log columns the relay fills itself: an extra
// column may not take one of their names.
var relayColumns = map[string]bool{
	"event_id": true, "event_type": true, "event_date_time": true, "event_date_time_us": true,
	"environment": true, "event_context": true, "metadata_version": true, "commit_lsn": true, "relayed_at": true,
}

// relayColumn is a column the relay fills itself (one relayColumns names)
// and its values for the batch being written. The values are kept from batch to batch (reset, not
// reallocated), so the column's buffer grows to the largest batch once and
// a batch costs one copy of its bytes.
type relayColumn struct {
	name string
	typ  string // the type the values are in, as the server spells it
	// nullable: the table's column is Nullable(typ); the relay sends it
	// so, with no NULLs (every server reads that as it is).
	nullable bool
	// converted: the table's column wraps typ (LowCardinality, JSON) and
	// the server converts the values (see sentType).
	converted bool
	data      proto.ColInput
	fill      func(evs []event.Event) // replaces the values with evs'
}

// input is the column as the encoder takes it, typed as the server spells
// the type (ch-go would spell DateTime64's arguments its own way).
func (c *relayColumn) input() proto.InputColumn {
	if c.nullable {
		return proto.InputColumn{Name: c.name, Data: typed{ColInput: c.data, t: proto.ColumnType("Nullable(" + c.typ + ")"), nulls: true}}
	}
	return proto.InputColumn{Name: c.name, Data: typed{ColInput: c.data, t: proto.ColumnType(c.typ)}}
}

// typed is a column sent under the type the server announces; nulls: a
// Nullable one, whose null map (all zeros) the encoder writes first.
type typed struct {
	proto.ColInput
	t     proto.ColumnType
	nulls bool
}

func (c typed) Type() proto.ColumnType { return c.t }

// EncodeColumn writes the null map of a Nullable column, then the values.
func (c typed) EncodeColumn(b *proto.Buffer) {
	c.encodeNulls(b)
	c.ColInput.EncodeColumn(b)
}

// WriteColumn is EncodeColumn for a proto.Writer.
func (c typed) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

// encodeNulls writes a Nullable column's null map: no value is NULL.
func (c typed) encodeNulls(b *proto.Buffer) {
	if c.nulls {
		b.Buf = append(b.Buf, make([]byte, c.Rows())...)
	}
}

// newColumn returns how to fill a column the relay knows; false for any
// other (left to its DEFAULT, or the table is refused). A Nullable column
// is filled as its inner type; one in a type that wraps the one the relay
// writes (see sentType) is sent in the relay's type, for the server to
// convert.
func newColumn(name, typ string) (*relayColumn, bool) {
	nullable := false
	if inner := unwrap(typ, "Nullable"); inner != typ {
		nullable, typ = true, inner
	}
	sent := sentType(name, typ)
	c := &relayColumn{name: name, typ: sent, nullable: nullable, converted: sent != typ}
	if c.converted {
		// The server converts the whole column, Nullable included.
		c.nullable = false
	}
	base := sent
	if i := strings.IndexByte(sent, '('); i >= 0 {
		base = sent[:i]
	}
	typ = sent
	switch {
	case name == "event_id" && base == "UUID":
		var col proto.ColUUID
		c.data, c.fill = &col, func(evs []event.Event) {
			col.Reset()
			for i := range evs {
				col.Append(uuid.UUID(evs[i].ID))
			}
		}
	case name == "event_id" && base == "String":
		c.data, c.fill = strColumn(func(e *event.Event) string { return uuid.UUID(e.ID).String() }, nil)
	case name == "event_type" && base == "String":
		c.data, c.fill = strColumn(func(e *event.Event) string { return e.Type }, nil)
	case name == "environment" && base == "String":
		c.data, c.fill = strColumn(func(e *event.Event) string { return e.Environment }, nil)
	case name == "event_context" && base == "String":
		c.data, c.fill = strColumn(nil, func(e *event.Event) []byte { return e.Context })
	case name == "event_date_time" && base == "DateTime64":
		var col proto.ColDateTime64
		if err := col.Infer(proto.ColumnType(typ)); err != nil {
			return nil, false
		}
		c.data, c.fill = &col, func(evs []event.Event) {
			col.Data = col.Data[:0]
			for i := range evs {
				col.Append(evs[i].OccurredAt)
			}
		}
	case name == "event_date_time" && base == "DateTime":
		var col proto.ColDateTime
		c.data, c.fill = &col, func(evs []event.Event) {
			col.Data = col.Data[:0]
			for i := range evs {
				// Seconds; the microseconds go to event_date_time_us.
				col.AppendRaw(proto.DateTime(evs[i].OccurredAt.Unix()))
			}
		}
	case name == "event_date_time_us" && base == "UInt32":
		var col proto.ColUInt32
		c.data, c.fill = &col, func(evs []event.Event) {
			col = col[:0]
			for i := range evs {
				col = append(col, uint32(evs[i].OccurredAt.Nanosecond()/int(time.Microsecond)))
			}
		}
	case name == "metadata_version" && base == "UInt64":
		var col proto.ColUInt64
		c.data, c.fill = &col, func(evs []event.Event) {
			col = col[:0]
			for i := range evs {
				col = append(col, uint64(evs[i].MetadataVersion))
			}
		}
	case name == "metadata_version" && base == "Int32":
		var col proto.ColInt32
		c.data, c.fill = &col, func(evs []event.Event) {
			col = col[:0]
			for i := range evs {
				col = append(col, int32(evs[i].MetadataVersion)) // in range: see check
			}
		}
	case name == "metadata_version" && base == "UInt32":
		var col proto.ColUInt32
		c.data, c.fill = &col, func(evs []event.Event) {
			col = col[:0]
			for i := range evs {
				col = append(col, uint32(evs[i].MetadataVersion)) // in range: see check
			}
		}
	case name == "metadata_version" && base == "Int64":
		var col proto.ColInt64
		c.data, c.fill = &col, func(evs []event.Event) {
			col = col[:0]
			for i := range evs {
				col = append(col, evs[i].MetadataVersion)
			}
		}
	case name == "commit_lsn" && base == "UInt64":
		var col proto.ColUInt64
		c.data, c.fill = &col, func(evs []event.Event) {
			col = col[:0]
			for i := range evs {
				col = append(col, evs[i].CommitLSN)
			}
		}
	default:
		return nil, false
	}
	return c, true
}

// sentType is the type the relay sends into a column of type typ: typ
// itself, or for LowCardinality(T), Nullable(T) and (event_context) JSON
// the T (String) the server converts from when it reads the block (see
// serverCasts). Tables made by hand on current servers use them, and a
// column the relay did not recognise would be left to its default.
func sentType(name, typ string) string {
	for {
		t := unwrap(unwrap(typ, "LowCardinality"), "Nullable")
		if t == typ {
			break
		}
		typ = t
	}
	if name == "event_context" && (typ == "JSON" || strings.HasPrefix(typ, "JSON(") || typ == "Object('json')") {
		return "String"
	}
	return typ
}

// serverCasts reports whether a server that converts (convertsNative)
// takes a column the relay sends as sent into its column name of type
// have.
func serverCasts(name, have, sent string) bool {
	return have == sent || sentType(name, have) == sent
}

// convertsNative reports whether the server converts a column of an
// INSERT's block into the table's type (its Native reader's
// input_format_native_allow_types_conversion, 23.3+, on by default).
// 18.16 fails such an INSERT with "Bad cast" (code 368), even into
// LowCardinality.
func convertsNative(v driver.ServerVersion) bool {
	return v.Version.Major > 23 || v.Version.Major == 23 && v.Version.Minor >= 3
}

// strColumn is a String column read straight from the batch's events when
// the block is encoded: the bytes are copied once, into the block. One of
// str and bytes gives an event's value.
func strColumn(str func(*event.Event) string, bytes func(*event.Event) []byte) (proto.ColInput, func([]event.Event)) {
	col := &eventStrings{str: str, bytes: bytes}
	return col, func(evs []event.Event) { col.evs = evs }
}

type eventStrings struct {
	evs   []event.Event
	str   func(*event.Event) string
	bytes func(*event.Event) []byte
}

func (c *eventStrings) Type() proto.ColumnType { return proto.ColumnTypeString }
func (c *eventStrings) Rows() int              { return len(c.evs) }

// EncodeColumn writes each value as the String column format has it: its
// length as a varint, then its bytes.
func (c *eventStrings) EncodeColumn(b *proto.Buffer) {
	for i := range c.evs {
		if c.bytes != nil {
			v := c.bytes(&c.evs[i])
			b.PutUVarInt(uint64(len(v)))
			b.Buf = append(b.Buf, v...)
		} else {
			b.PutString(c.str(&c.evs[i]))
		}
	}
}

func (c *eventStrings) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

// stream is EncodeColumn for the inserter, which sends a block in pieces.
func (c *eventStrings) stream(in *inserter) error {
	for i := range c.evs {
		var err error
		if c.bytes != nil {
			err = in.value(c.bytes(&c.evs[i]))
		} else {
			in.buf.PutString(c.str(&c.evs[i]))
			if len(in.buf.Buf) >= chunk {
				err = in.spill()
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}
