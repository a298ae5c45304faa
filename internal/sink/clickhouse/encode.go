package clickhouse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/event"
)

// extraColumn is an event_log column filled from an extra column of the
// outbox table: its values for the batch being written, encoded from
// PostgreSQL's binary format (pgoutput's) into the ClickHouse column type.
type extraColumn struct {
	name string
	typ  string // as the server spells it
	enc  encoder
}

// encoder appends one row's value: kind and val as in event.Values (val nil
// for NULL). A value the type cannot hold is an error naming why.
type encoder interface {
	proto.ColInput
	add(kind byte, val []byte) error
	Reset()
}

func (c *extraColumn) input() proto.InputColumn {
	return proto.InputColumn{Name: c.name, Data: typed{ColInput: c.enc, t: proto.ColumnType(c.typ)}}
}

// newEncoder builds the encoder writing PostgreSQL type oid (an array type
// or a scalar) into ClickHouse type chType. The caller has checked that
// chType is what the mapping gives oid (up to nullability and Bool/UInt8).
func newEncoder(oid uint32, chType string, caps Caps) (encoder, error) {
	t := squash(chType)
	if el, ok := arrayOf[oid]; ok {
		inner := unwrap(t, "Array")
		if inner == t {
			return nil, fmt.Errorf("array type into %s", chType)
		}
		nullable := unwrap(inner, "Nullable") != inner
		return build(el, unwrap(inner, "Nullable"), nullable, true, caps)
	}
	base := unwrap(t, "Nullable")
	return build(oid, base, base != t, false, caps)
}

// conv turns one binary value into a column's element type.
type conv[T any] func(kind byte, v []byte) (T, error)

// scalar is a plain or Nullable column of T.
type scalar[T any] struct {
	proto.ColumnOf[T]
	nulls    *proto.ColNullable[T]
	conv     conv[T]
	nullable bool
}

func newScalar[T any](col proto.ColumnOf[T], c conv[T], nullable bool) encoder {
	s := &scalar[T]{ColumnOf: col, conv: c, nullable: nullable}
	if nullable {
		s.nulls = proto.NewColNullable(col)
	}
	return s
}

func (s *scalar[T]) add(kind byte, v []byte) error {
	if v == nil && kind == event.KindNull {
		if s.nullable {
			s.nulls.Append(proto.Null[T]())
		} else {
			var zero T
			s.Append(zero)
		}
		return nil
	}
	x, err := s.conv(kind, v)
	if err != nil {
		return err
	}
	if s.nullable {
		s.nulls.Append(proto.NewNullable(x))
	} else {
		s.Append(x)
	}
	return nil
}

func (s *scalar[T]) Rows() int {
	if s.nullable {
		return s.nulls.Rows()
	}
	return s.ColumnOf.Rows()
}

func (s *scalar[T]) EncodeColumn(b *proto.Buffer) {
	if s.nullable {
		s.nulls.EncodeColumn(b)
		return
	}
	s.ColumnOf.EncodeColumn(b)
}

func (s *scalar[T]) WriteColumn(w *proto.Writer) { w.ChainBuffer(s.EncodeColumn) }

func (s *scalar[T]) Reset() {
	if s.nullable {
		s.nulls.Reset()
		return
	}
	s.ColumnOf.Reset()
}

// array is an Array(T) or Array(Nullable(T)) column filled from
// PostgreSQL's one-dimensional arrays; a NULL array is written empty.
type array[T any] struct {
	plain    *proto.ColArr[T]
	nulls    *proto.ColArr[proto.Nullable[T]]
	conv     conv[T]
	nullable bool
	row      []T
	nrow     []proto.Nullable[T]
}

func newArray[T any](col proto.ColumnOf[T], c conv[T], nullable bool) encoder {
	a := &array[T]{conv: c, nullable: nullable}
	if nullable {
		a.nulls = proto.NewArray[proto.Nullable[T]](proto.NewColNullable(col))
	} else {
		a.plain = proto.NewArray(col)
	}
	return a
}

func (a *array[T]) add(kind byte, v []byte) error {
	a.row, a.nrow = a.row[:0], a.nrow[:0]
	if kind != event.KindNull {
		if kind != event.KindBinary {
			return errors.New("array value not in binary format")
		}
		err := pgArray(v, func(el []byte) error {
			if el == nil {
				var zero T
				a.row, a.nrow = append(a.row, zero), append(a.nrow, proto.Null[T]())
				return nil
			}
			x, err := a.conv(event.KindBinary, el)
			if err != nil {
				return err
			}
			a.row, a.nrow = append(a.row, x), append(a.nrow, proto.NewNullable(x))
			return nil
		})
		if err != nil {
			return err
		}
	}
	if a.nullable {
		a.nulls.Append(a.nrow)
	} else {
		a.plain.Append(a.row)
	}
	return nil
}

func (a *array[T]) col() proto.ColInput {
	if a.nullable {
		return a.nulls
	}
	return a.plain
}

func (a *array[T]) Type() proto.ColumnType       { return a.col().Type() }
func (a *array[T]) Rows() int                    { return a.col().Rows() }
func (a *array[T]) EncodeColumn(b *proto.Buffer) { a.col().EncodeColumn(b) }
func (a *array[T]) WriteColumn(w *proto.Writer)  { w.ChainBuffer(a.EncodeColumn) }
func (a *array[T]) Reset() {
	if a.nullable {
		a.nulls.Reset()
	} else {
		a.plain.Reset()
	}
}

// pgArray walks a binary one-dimensional array, calling fn with each
// element (nil for NULL).
func pgArray(v []byte, fn func(el []byte) error) error {
	if len(v) < 12 {
		return errors.New("malformed array")
	}
	ndim := int32(binary.BigEndian.Uint32(v))
	switch {
	case ndim == 0:
		return nil
	case ndim != 1:
		return fmt.Errorf("a %d-dimensional array: only one-dimensional arrays are carried", ndim)
	}
	if len(v) < 20 {
		return errors.New("malformed array")
	}
	n := int(int32(binary.BigEndian.Uint32(v[12:])))
	p := 20
	for range n {
		if p+4 > len(v) {
			return errors.New("malformed array")
		}
		l := int(int32(binary.BigEndian.Uint32(v[p:])))
		p += 4
		if l < 0 {
			if err := fn(nil); err != nil {
				return err
			}
			continue
		}
		if p+l > len(v) {
			return errors.New("malformed array")
		}
		if err := fn(v[p : p+l]); err != nil {
			return err
		}
		p += l
	}
	return nil
}

// build picks the column and conversion for a PostgreSQL element type and
// a ClickHouse base type, of a plain or Nullable column or an array.
func build(oid uint32, base string, nullable, arr bool, caps Caps) (encoder, error) {
	mk := func(e encoder) (encoder, error) { return e, nil }
	switch {
	case oid == oidInt2 && base == "Int16":
		return mk(pick[int16](new(proto.ColInt16), fixed(2, func(b []byte) int16 { return int16(binary.BigEndian.Uint16(b)) }), nullable, arr))
	case oid == oidInt4 && base == "Int32":
		return mk(pick[int32](new(proto.ColInt32), fixed(4, func(b []byte) int32 { return int32(binary.BigEndian.Uint32(b)) }), nullable, arr))
	case oid == oidInt8 && base == "Int64":
		return mk(pick[int64](new(proto.ColInt64), fixed(8, func(b []byte) int64 { return int64(binary.BigEndian.Uint64(b)) }), nullable, arr))
	case oid == oidFloat4 && base == "Float32":
		return mk(pick[float32](new(proto.ColFloat32), fixed(4, func(b []byte) float32 { return math.Float32frombits(binary.BigEndian.Uint32(b)) }), nullable, arr))
	case oid == oidFloat8 && base == "Float64":
		return mk(pick[float64](new(proto.ColFloat64), fixed(8, func(b []byte) float64 { return math.Float64frombits(binary.BigEndian.Uint64(b)) }), nullable, arr))
	case oid == oidBool && base == "UInt8":
		return mk(pick[uint8](new(proto.ColUInt8), fixed(1, func(b []byte) uint8 { return b[0] }), nullable, arr))
	case oid == oidBool && base == "Bool":
		return mk(pick[bool](new(proto.ColBool), fixed(1, func(b []byte) bool { return b[0] != 0 }), nullable, arr))
	case oid == oidUUID && base == "UUID":
		return mk(pick[uuid.UUID](new(proto.ColUUID), fixed(16, func(b []byte) uuid.UUID { return uuid.UUID(b) }), nullable, arr))
	case oid == oidDate && base == "Date":
		return mk(pick[time.Time](new(proto.ColDate), binaryOnly(dateValue(caps.DateMax())), nullable, arr))
	case (oid == oidTimestamp || oid == oidTimestamptz) && strings.HasPrefix(base, "DateTime64(6"):
		col := new(proto.ColDateTime64).WithPrecision(proto.PrecisionMicro)
		return mk(pick[time.Time](col, binaryOnly(timestampValue), nullable, arr))
	case (oid == oidTimestamp || oid == oidTimestamptz) && base == "String":
		return mk(pick[[]byte](new(colBytes), binaryOnly(scratch(appendTimestampText)), nullable, arr))
	case oid == oidNumeric && base == "String":
		return mk(pick[[]byte](new(colBytes), binaryOnly(scratch(appendNumeric)), nullable, arr))
	case oid == oidNumeric && strings.HasPrefix(base, "Decimal("):
		return decimal(base, nullable, arr)
	case oid == oidText || oid == oidVarchar || oid == oidBpchar || oid == oidJSON:
		if base == "String" {
			return mk(pick[[]byte](new(colBytes), func(_ byte, b []byte) ([]byte, error) { return b, nil }, nullable, arr))
		}
	case oid == oidJSONB && base == "String":
		return mk(pick[[]byte](new(colBytes), jsonbText, nullable, arr))
	}
	return nil, fmt.Errorf("no encoding of %s into %s", pgTypeNames[oid], base)
}

func pick[T any](col proto.ColumnOf[T], c conv[T], nullable, arr bool) encoder {
	if arr {
		return newArray(col, c, nullable)
	}
	return newScalar(col, c, nullable)
}

// fixed is a conversion of a fixed-width binary value.
func fixed[T any](width int, f func([]byte) T) conv[T] {
	return binaryOnly(func(b []byte) (T, error) {
		if len(b) != width {
			var zero T
			return zero, fmt.Errorf("value of %d bytes, want %d", len(b), width)
		}
		return f(b), nil
	})
}

func binaryOnly[T any](f func([]byte) (T, error)) conv[T] {
	return func(kind byte, b []byte) (T, error) {
		if kind != event.KindBinary {
			var zero T
			return zero, errors.New("value not in binary format")
		}
		return f(b)
	}
}

func jsonbText(kind byte, b []byte) ([]byte, error) {
	if kind == event.KindText {
		return b, nil
	}
	if len(b) < 1 || b[0] != 1 {
		return nil, errors.New("unknown jsonb binary version")
	}
	return b[1:], nil
}

// pgEpoch is PostgreSQL's date and timestamp origin, 2000-01-01 UTC.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Ranges of the ClickHouse types: a value outside is rejected rather than
// wrapped. Date starts in 1970 (see Caps.DateMax for its end);
// DateTime64(6) is the range every server from 20.1 on keeps (newer ones
// reach further back and on).
var (
	dateLo           = time.Unix(0, 0).UTC()
	dt64Lo, dt64Hi   = time.Date(1925, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2262, 4, 11, 0, 0, 0, 0, time.UTC)
	pgInfinityMicros = int64(math.MaxInt64)
)

// dateValue converts a date, rejecting one beyond hi.
func dateValue(hi time.Time) func(b []byte) (time.Time, error) {
	return func(b []byte) (time.Time, error) {
		if len(b) != 4 {
			return time.Time{}, errors.New("malformed date")
		}
		days := int32(binary.BigEndian.Uint32(b))
		if days == math.MaxInt32 || days == math.MinInt32 {
			return time.Time{}, errors.New("date ±infinity does not fit ClickHouse's Date")
		}
		t := pgEpoch.AddDate(0, 0, int(days))
		if t.Before(dateLo) || t.After(hi) {
			return time.Time{}, fmt.Errorf("date %s is outside %s..%s, the range of this server's Date", t.Format(time.DateOnly), dateLo.Format(time.DateOnly), hi.Format(time.DateOnly))
		}
		return t, nil
	}
}

func pgMicros(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, errors.New("malformed timestamp")
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

func timestampValue(b []byte) (time.Time, error) {
	us, err := pgMicros(b)
	if err != nil {
		return time.Time{}, err
	}
	if us == pgInfinityMicros || us == math.MinInt64 {
		return time.Time{}, errors.New("timestamp ±infinity does not fit ClickHouse's DateTime64")
	}
	t := pgTime(us)
	if t.Before(dt64Lo) || !t.Before(dt64Hi) {
		return time.Time{}, fmt.Errorf("timestamp %s is outside %s..%s, the range the relay writes to DateTime64(6)",
			t.Format(time.RFC3339Nano), dt64Lo.Format(time.DateOnly), dt64Hi.Format(time.DateOnly))
	}
	return t, nil
}

// pgTime is a PostgreSQL timestamp (microseconds since pgEpoch) in UTC;
// time.Unix covers its whole range, which a time.Duration does not.
func pgTime(us int64) time.Time {
	sec, frac := us/1e6, us%1e6
	if frac < 0 {
		sec, frac = sec-1, frac+1e6
	}
	return time.Unix(pgEpoch.Unix()+sec, frac*1e3).UTC()
}

// scratch makes an appending conversion reuse one buffer: the String
// column copies each value, so no value needs its own.
func scratch(f func(dst, b []byte) ([]byte, error)) func([]byte) ([]byte, error) {
	var buf []byte
	return func(b []byte) ([]byte, error) {
		var err error
		buf, err = f(buf[:0], b)
		return buf, err
	}
}

// appendTimestampText spells a timestamp as ClickHouse parses it, in UTC
// with microseconds (servers without DateTime64).
func appendTimestampText(dst, b []byte) ([]byte, error) {
	us, err := pgMicros(b)
	if err != nil {
		return nil, err
	}
	switch us {
	case pgInfinityMicros:
		return append(dst, "infinity"...), nil
	case math.MinInt64:
		return append(dst, "-infinity"...), nil
	}
	return pgTime(us).AppendFormat(dst, "2006-01-02 15:04:05.000000"), nil
}

// colBytes is a String column appended from byte slices (the values are
// copied into the column, no string is made per value).
type colBytes struct{ proto.ColStr }

func (c *colBytes) Append(v []byte) { c.AppendBytes(v) }
func (c *colBytes) AppendArr(v [][]byte) {
	for _, x := range v {
		c.AppendBytes(x)
	}
}
func (c *colBytes) Row(i int) []byte { return []byte(c.ColStr.Row(i)) }
