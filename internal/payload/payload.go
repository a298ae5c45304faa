// Package payload is the wire format of an outbox event carried by a
// logical decoding message (pg_logical_emit_message) instead of a table row.
// The outbox package encodes it; the replication stream decodes it. It is
// one definition of the format for both sides.
//
// All integers are big-endian. Both versions start alike:
//
//	offset  size  field
//	0       1     version (1 or 2)
//	1       16    id (UUID bytes)
//	17      8     occurred-at, int64 microseconds since 1970-01-01 UTC
//	25      8     metadata version, int64 (>= 1)
//	33      var   event type: uvarint length, then UTF-8 bytes
//	        var   environment: uvarint length, then UTF-8 bytes
//
// Version 1 (an event without extra columns) goes on with
//
//	var   uvarint count of untyped extra columns: 0 as written.
//	      (Reserved, never written with columns: per column a
//	      uvarint name length, the name, one kind byte, 0 NULL or
//	      1 value, and for a value a uvarint length and the text.
//	      A reader skips them.)
//	rest  event context: JSON text (UTF-8), to the end
//
// Version 2 (an event with extra columns) goes on with
//
//	var   columns: uvarint count n >= 1, then per column a uvarint
//	      name length, the name (UTF-8), uint32 type OID, int32
//	      type modifier (-1 for none) and one flags byte (bit 0:
//	      NOT NULL; other bits 0)
//	var   values: PostgreSQL's binary record, as record_send
//	      writes ROW(v1, …, vn): int32 n, then per column int32
//	      type OID (equal to the column's), int32 length (-1 for
//	      NULL) and the value in its type's binary send format
//	rest  event context: JSON text (UTF-8), to the end
//
// The columns say what pgoutput's Relation message says of a table's
// columns (name, type OID, modifier) plus the catalog's NOT NULL, and each
// value is what pgoutput sends for that column of a table row with the
// binary option (the type's send function): the relay maps and converts
// both with the code that carries a table row's extra columns. A writer
// writes version 1 for an event without extra columns, so a relay that
// reads only version 1 keeps reading such events.
//
// The context comes last and unframed, so decoding costs the same for a
// 100-byte and a 5 MiB context: the header is read, the context is sliced.
// A decoder rejects any other version with ErrVersion; a later version may
// add fields, never reinterpret these.
package payload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Format versions.
const (
	// Version1 is an event without extra columns.
	Version1 = 1
	// Version2 is an event with typed extra columns.
	Version2 = 2
	// Version is the newest version this package writes and reads.
	Version = Version2
)

// fixedHeader is version, id, occurred-at and metadata version.
const fixedHeader = 1 + 16 + 8 + 8

// columnFixed is a version 2 column's type OID, type modifier and flags.
const columnFixed = 4 + 4 + 1

// flagNotNull marks a NOT NULL column.
const flagNotNull = 1

// Errors of Decode; test with errors.Is.
var (
	ErrVersion   = errors.New("unknown outbox message payload version")
	ErrMalformed = errors.New("malformed outbox message payload")
)

// Column is an extra column of a version 2 payload: the outbox table
// column's name, type OID, type modifier and NOT NULL, and for Append its
// value in the type's binary send format (nil for NULL).
type Column struct {
	Name    string
	TypeOID uint32
	TypeMod int32
	NotNull bool
	Value   []byte
}

// Fields are the values of one event. From Decode, the byte slices are
// views into the payload: copy what outlives it.
type Fields struct {
	ID               [16]byte
	OccurredAtMicros int64
	MetadataVersion  int64
	Type             []byte
	Environment      []byte
	// shape and values are a version 2 payload's columns and values
	// sections, as encoded (see Shape, Columns and Values).
	shape, values []byte
	Context       []byte
}

// Append encodes f with extra columns cols onto dst: version 1 without
// columns, version 2 with them.
func Append(dst []byte, f Fields, cols []Column) []byte {
	if len(cols) == 0 {
		return append(AppendHead(dst, f, nil), f.Context...)
	}
	dst = appendFixed(dst, Version2, f)
	dst = AppendShape(dst, cols)
	dst = AppendValues(dst, cols)
	return append(dst, f.Context...)
}

// AppendHead encodes f up to where the values (version 2) or the context
// begin: version 1 when shape is empty, else version 2 with shape (from
// AppendShape). A writer that has PostgreSQL encode the values appends
// them, then the context.
func AppendHead(dst []byte, f Fields, shape []byte) []byte {
	if len(shape) == 0 {
		return append(appendFixed(dst, Version1, f), 0)
	}
	return append(appendFixed(dst, Version2, f), shape...)
}

func appendFixed(dst []byte, version byte, f Fields) []byte {
	dst = append(dst, version)
	dst = append(dst, f.ID[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(f.OccurredAtMicros))
	dst = binary.BigEndian.AppendUint64(dst, uint64(f.MetadataVersion))
	dst = appendBytes(dst, f.Type)
	return appendBytes(dst, f.Environment)
}

// AppendShape encodes the columns section of cols (their values aside).
func AppendShape(dst []byte, cols []Column) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(cols)))
	for _, c := range cols {
		dst = appendBytes(dst, []byte(c.Name))
		dst = binary.BigEndian.AppendUint32(dst, c.TypeOID)
		dst = binary.BigEndian.AppendUint32(dst, uint32(c.TypeMod))
		var flags byte
		if c.NotNull {
			flags = flagNotNull
		}
		dst = append(dst, flags)
	}
	return dst
}

// AppendValues encodes the values of cols as record_send does.
func AppendValues(dst []byte, cols []Column) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(cols)))
	for _, c := range cols {
		dst = binary.BigEndian.AppendUint32(dst, c.TypeOID)
		if c.Value == nil {
			dst = binary.BigEndian.AppendUint32(dst, ^uint32(0)) // -1
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(c.Value)))
		dst = append(dst, c.Value...)
	}
	return dst
}

// Size is the encoded length of f with cols, for sizing a buffer.
func Size(f Fields, cols []Column) int {
	n := fixedHeader + uvarintLen(len(f.Type)) + len(f.Type) + uvarintLen(len(f.Environment)) + len(f.Environment) + len(f.Context)
	if len(cols) == 0 {
		return n + 1
	}
	n += uvarintLen(len(cols)) + 4
	for _, c := range cols {
		n += uvarintLen(len(c.Name)) + len(c.Name) + columnFixed + 8 + len(c.Value)
	}
	return n
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// Decode reads p without copying: the slices of the result point into p.
// It checks the whole framing (a version 2 payload's values against its
// columns included), so what it accepts, the methods of Fields read.
func Decode(p []byte) (Fields, error) {
	var f Fields
	if len(p) == 0 {
		return f, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if p[0] != Version1 && p[0] != Version2 {
		return f, fmt.Errorf("%w %d (this relay reads versions %d and %d)", ErrVersion, p[0], Version1, Version2)
	}
	if len(p) < fixedHeader {
		return f, fmt.Errorf("%w: %d bytes, header needs %d", ErrMalformed, len(p), fixedHeader)
	}
	copy(f.ID[:], p[1:17])
	f.OccurredAtMicros = int64(binary.BigEndian.Uint64(p[17:]))
	f.MetadataVersion = int64(binary.BigEndian.Uint64(p[25:]))
	r := reader{b: p, off: fixedHeader}
	f.Type = r.bytes("event type")
	f.Environment = r.bytes("environment")
	if p[0] == Version1 {
		r.skipUntyped()
	} else {
		start := r.off
		n := r.shape()
		f.shape = p[start:r.off]
		start = r.off
		r.record(f.shape, n)
		f.values = p[start:r.off]
	}
	if r.err != nil {
		return Fields{}, r.err
	}
	f.Context = p[r.off:]
	return f, nil
}

// Shape is the encoded columns section of a version 2 payload (nil for
// version 1): equal bytes are equal columns, so a reader can key what it
// worked out for them on it.
func (f Fields) Shape() []byte { return f.shape }

// Columns decodes the columns section (Value unset); nil for version 1.
func (f Fields) Columns() []Column {
	if len(f.shape) == 0 {
		return nil
	}
	r := reader{b: f.shape}
	n := r.uvarint("column count")
	cols := make([]Column, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		name := r.bytes("column name")
		oid, mod, flags := r.columnFixed()
		cols = append(cols, Column{Name: string(name), TypeOID: oid, TypeMod: mod, NotNull: flags&flagNotNull != 0})
	}
	return cols
}

// ValuesSize is the encoded length of the values section (0 for version
// 1), for sizing a buffer.
func (f Fields) ValuesSize() int { return len(f.values) }

// Values calls fn with each extra column's index and value (nil and null
// true for NULL), in the columns' order, and stops at fn's first error.
// val points into the payload.
func (f Fields) Values(fn func(i int, val []byte, null bool) error) error {
	if len(f.values) < 4 {
		return nil
	}
	r := reader{b: f.values, off: 4}
	n := int(binary.BigEndian.Uint32(f.values))
	for i := 0; i < n && r.err == nil; i++ {
		r.off += 4 // type OID, checked by Decode
		val, null := r.value()
		if r.err != nil {
			break
		}
		if err := fn(i, val, null); err != nil {
			return err
		}
	}
	return r.err
}

// reader walks the variable part; the first error sticks.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail("%s at byte %d", what, r.off)
		return 0
	}
	r.off += n
	return v
}

func (r *reader) bytes(what string) []byte {
	l := r.uvarint(what)
	if r.err != nil {
		return nil
	}
	if l > uint64(len(r.b)-r.off) {
		r.fail("%s of %d bytes overruns the payload at byte %d", what, l, r.off)
		return nil
	}
	v := r.b[r.off : r.off+int(l)]
	r.off += int(l)
	return v
}

func (r *reader) uint32(what string) uint32 {
	if r.err != nil {
		return 0
	}
	if len(r.b)-r.off < 4 {
		r.fail("%s at byte %d: payload ends", what, r.off)
		return 0
	}
	v := binary.BigEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

// skipUntyped reads past version 1's reserved extra columns.
func (r *reader) skipUntyped() {
	n := r.uvarint("extra column count")
	for i := uint64(0); i < n && r.err == nil; i++ {
		r.bytes("extra column name")
		if r.err != nil {
			return
		}
		if r.off >= len(r.b) || r.b[r.off] > 1 {
			r.fail("extra column kind at byte %d", r.off)
			return
		}
		r.off++
		if r.b[r.off-1] == 1 {
			r.bytes("extra column value")
		}
	}
}

// shape reads a version 2 columns section and returns its count.
func (r *reader) shape() int {
	n := r.uvarint("column count")
	if r.err == nil && (n == 0 || n > uint64(len(r.b)-r.off)/(1+columnFixed)) {
		r.fail("column count %d at byte %d", n, r.off)
		return 0
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		name := r.bytes("column name")
		if r.err == nil && (len(name) == 0 || !utf8.Valid(name)) {
			r.fail("column %d has no valid name", i)
		}
		if _, _, flags := r.columnFixed(); flags&^flagNotNull != 0 {
			r.fail("column %q has unknown flags %#x", name, flags)
		}
	}
	return int(n)
}

func (r *reader) columnFixed() (oid uint32, mod int32, flags byte) {
	oid = r.uint32("column type")
	mod = int32(r.uint32("column type modifier"))
	if r.err != nil {
		return 0, 0, 0
	}
	if r.off >= len(r.b) {
		r.fail("column flags: payload ends")
		return 0, 0, 0
	}
	r.off++
	return oid, mod, r.b[r.off-1]
}

// record reads the values section, checking it against the n columns of
// shape.
func (r *reader) record(shape []byte, n int) {
	if got := r.uint32("value count"); r.err == nil && int(got) != n {
		r.fail("%d values for %d columns", got, n)
	}
	cols := reader{b: shape}
	cols.uvarint("column count")
	for i := 0; i < n && r.err == nil; i++ {
		name := cols.bytes("column name")
		want, _, _ := cols.columnFixed()
		if oid := r.uint32("value type"); r.err == nil && oid != want {
			r.fail("value of column %q has type %d, the column %d", name, oid, want)
		}
		r.value()
	}
}

// value reads an int32 length (-1 for NULL) and that many bytes.
func (r *reader) value() (val []byte, null bool) {
	l := int32(r.uint32("value length"))
	switch {
	case r.err != nil:
		return nil, false
	case l == -1:
		return nil, true
	case l < 0 || int(l) > len(r.b)-r.off:
		r.fail("value of %d bytes at byte %d overruns the payload", l, r.off)
		return nil, false
	}
	val = r.b[r.off : r.off+int(l)]
	r.off += int(l)
	return val, false
}
