package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Columns is the shape of an outbox table's extra columns (those beyond the
// relay's own) as one pgoutput Relation message announced them.
type Columns struct {
	// Version counts the shapes the stream has seen (for logs and status).
	Version int
	List    []Column
	// Key spells the shape (names and types): equal for equal shapes, so a
	// sink can reuse what it worked out for an earlier Relation message.
	Key string
}

// Column is one extra column: its PostgreSQL name, type and type modifier
// (e.g. numeric's precision and scale), and whether it is NOT NULL (read
// from the catalog when its Relation message arrived).
type Column struct {
	Name    string
	TypeOID uint32
	TypeMod int32
	NotNull bool
	// TypeName is the type as the catalog spells it (format_type), where
	// the reader had the catalog at hand; only messages use it, and only
	// for types the relay cannot map (e.g. a database's own enum).
	TypeName string
}

// NewColumns builds a shape and its Key.
func NewColumns(version int, list []Column) *Columns {
	var b strings.Builder
	for _, c := range list {
		fmt.Fprintf(&b, "%q %d %d %t;", c.Name, c.TypeOID, c.TypeMod, c.NotNull)
	}
	return &Columns{Version: version, List: list, Key: b.String()}
}

// Value kinds in Extra, as in pgoutput's TupleData.
const (
	KindNull   = 'n'
	KindBinary = 'b'
	KindText   = 't'
)

var errBadExtra = errors.New("malformed extra column values")

// Values calls fn with each extra column's index, kind and value (nil for
// NULL), in the order of Columns.List. val points into extra.
func Values(extra []byte, fn func(i int, kind byte, val []byte) error) error {
	for i, p := 0, 0; p < len(extra); i++ {
		kind := extra[p]
		p++
		if kind == KindNull {
			if err := fn(i, kind, nil); err != nil {
				return err
			}
			continue
		}
		if p+4 > len(extra) {
			return errBadExtra
		}
		l := int(binary.BigEndian.Uint32(extra[p:]))
		p += 4
		if l < 0 || p+l > len(extra) {
			return errBadExtra
		}
		if err := fn(i, kind, extra[p:p+l]); err != nil {
			return err
		}
		p += l
	}
	return nil
}

// AppendValue appends one value to extra in the encoding Values reads.
func AppendValue(extra []byte, kind byte, val []byte) []byte {
	extra = append(extra, kind)
	if kind == KindNull {
		return extra
	}
	extra = binary.BigEndian.AppendUint32(extra, uint32(len(val)))
	return append(extra, val...)
}
