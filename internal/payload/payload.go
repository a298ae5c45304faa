// Package payload is the wire format of an outbox event carried by a
// logical decoding message (pg_logical_emit_message) instead of a table row.
// The outbox package encodes it; the replication stream decodes it. It is
// one definition of the format for both sides.
//
// Version 1, all integers big-endian:
//
//	offset  size  field
//	0       1     version (1)
//	1       16    id (UUID bytes)
//	17      8     occurred-at, int64 microseconds since 1970-01-01 UTC
//	25      8     metadata version, int64 (>= 1)
//	33      var   event type: uvarint length, then UTF-8 bytes
//	        var   environment: uvarint length, then UTF-8 bytes
//	        var   extra columns: uvarint count, then per column a uvarint
//	              name length, the name, one kind byte (0 NULL, 1 value) and
//	              for a value a uvarint length and the value in PostgreSQL's
//	              text format (what pgoutput sends for a text-format column)
//	        rest  event context: JSON text (UTF-8), to the end of the payload
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
)

// Version is the format version this package writes and reads.
const Version = 1

// fixedHeader is version, id, occurred-at and metadata version.
const fixedHeader = 1 + 16 + 8 + 8

// Errors of Decode; test with errors.Is.
var (
	ErrVersion   = errors.New("unknown outbox message payload version")
	ErrMalformed = errors.New("malformed outbox message payload")
)

// Column is an extra column: Value nil means SQL NULL.
type Column struct {
	Name  string
	Value *string
}

// Fields are the values of one event. From Decode, the byte slices are
// views into the payload: copy what outlives it.
type Fields struct {
	ID               [16]byte
	OccurredAtMicros int64
	MetadataVersion  int64
	Type             []byte
	Environment      []byte
	// extra is the encoded extra-column section (count included); see Extras.
	extra   []byte
	Context []byte
}

// Append encodes f (with extra columns cols) onto dst.
func Append(dst []byte, f Fields, cols []Column) []byte {
	dst = append(dst, Version)
	dst = append(dst, f.ID[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(f.OccurredAtMicros))
	dst = binary.BigEndian.AppendUint64(dst, uint64(f.MetadataVersion))
	dst = appendBytes(dst, f.Type)
	dst = appendBytes(dst, f.Environment)
	dst = binary.AppendUvarint(dst, uint64(len(cols)))
	for _, c := range cols {
		dst = appendBytes(dst, []byte(c.Name))
		if c.Value == nil {
			dst = append(dst, 0)
			continue
		}
		dst = append(dst, 1)
		dst = appendBytes(dst, []byte(*c.Value))
	}
	return append(dst, f.Context...)
}

// Size is the encoded length of f with cols, for sizing a buffer.
func Size(f Fields, cols []Column) int {
	n := fixedHeader + uvarintLen(len(f.Type)) + len(f.Type) + uvarintLen(len(f.Environment)) + len(f.Environment) +
		uvarintLen(len(cols)) + len(f.Context)
	for _, c := range cols {
		n += uvarintLen(len(c.Name)) + len(c.Name) + 1
		if c.Value != nil {
			n += uvarintLen(len(*c.Value)) + len(*c.Value)
		}
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
func Decode(p []byte) (Fields, error) {
	var f Fields
	if len(p) == 0 {
		return f, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if p[0] != Version {
		return f, fmt.Errorf("%w %d (this relay reads version %d)", ErrVersion, p[0], Version)
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
	start := r.off
	n := r.uvarint("extra column count")
	for i := uint64(0); i < n && r.err == nil; i++ {
		r.bytes("extra column name")
		if r.kind() {
			r.bytes("extra column value")
		}
	}
	if r.err != nil {
		return Fields{}, r.err
	}
	f.extra = p[start:r.off]
	f.Context = p[r.off:]
	return f, nil
}

// Extras calls fn for each extra column of a decoded payload (value nil
// for NULL), in order, and stops at its first error.
func (f Fields) Extras(fn func(name, value []byte, null bool) error) error {
	if len(f.extra) == 0 {
		return nil
	}
	r := reader{b: f.extra}
	n := r.uvarint("extra column count")
	for i := uint64(0); i < n && r.err == nil; i++ {
		name := r.bytes("extra column name")
		var value []byte
		isValue := r.kind()
		if isValue {
			value = r.bytes("extra column value")
		}
		if r.err != nil {
			break
		}
		if err := fn(name, value, !isValue); err != nil {
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

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.err = fmt.Errorf("%w: %s at byte %d", ErrMalformed, what, r.off)
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
		r.err = fmt.Errorf("%w: %s of %d bytes overruns the payload at byte %d", ErrMalformed, what, l, r.off)
		return nil
	}
	v := r.b[r.off : r.off+int(l)]
	r.off += int(l)
	return v
}

// kind reads an extra column's kind byte: true for a value, false for NULL.
func (r *reader) kind() bool {
	if r.err != nil {
		return false
	}
	if r.off >= len(r.b) || r.b[r.off] > 1 {
		r.err = fmt.Errorf("%w: extra column kind at byte %d", ErrMalformed, r.off)
		return false
	}
	r.off++
	return r.b[r.off-1] == 1
}
