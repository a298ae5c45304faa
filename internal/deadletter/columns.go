package deadletter

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outbox-relay/relay/internal/event"
)

// extraText spells an event's extra column values as the JSON object
// outbox_dead_letter.columns keeps: each value in PostgreSQL's text form
// (what its input function reads back exactly), null for NULL. It returns
// nil for an event without extra columns.
//
// Values arrive as pgoutput sent them, mostly in binary; pgx's codecs
// decode them and spell them as text, so a replay's cast from text
// restores the same value.
func extraText(m *pgtype.Map, ev event.Event) ([]byte, error) {
	if ev.Columns == nil || len(ev.Extra) == 0 {
		return nil, nil
	}
	obj := make(map[string]*string, len(ev.Columns.List))
	err := event.Values(ev.Extra, func(i int, kind byte, val []byte) error {
		if i >= len(ev.Columns.List) {
			return fmt.Errorf("value %d has no column", i)
		}
		c := ev.Columns.List[i]
		switch kind {
		case event.KindNull:
			obj[c.Name] = nil
		case event.KindText:
			s := string(val)
			obj[c.Name] = &s
		default:
			s, err := binaryToText(m, c.TypeOID, val)
			if err != nil {
				return fmt.Errorf("column %q: %w", c.Name, err)
			}
			obj[c.Name] = &s
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("keep the extra columns of event %x: %w", ev.ID, err)
	}
	return json.Marshal(obj)
}

// binaryToText re-spells a value of type oid from PostgreSQL's binary
// format in its text format. JSON (and arrays of it) is kept as the text
// it was: decoding it into Go values would lose what float64 cannot hold
// (1e400) and the spelling of json.
func binaryToText(m *pgtype.Map, oid uint32, val []byte) (string, error) {
	t, ok := m.TypeForOID(oid)
	if !ok {
		return "", fmt.Errorf("type oid %d has no known binary format", oid)
	}
	var v any
	var err error
	switch {
	case oid == pgtype.JSONOID || oid == pgtype.JSONBOID:
		var raw string
		err = m.Scan(oid, pgtype.BinaryFormatCode, val, &raw)
		v = raw
	case oid == pgtype.JSONArrayOID || oid == pgtype.JSONBArrayOID:
		var raw pgtype.Array[*string]
		err = m.Scan(oid, pgtype.BinaryFormatCode, val, &raw)
		v = raw
	case strings.HasPrefix(t.Name, "_"): // an array: pgtype.Array keeps its dimensions
		var a pgtype.Array[any]
		err = m.Scan(oid, pgtype.BinaryFormatCode, val, &a)
		v = a
	default:
		v, err = t.Codec.DecodeValue(m, oid, pgtype.BinaryFormatCode, val)
	}
	if err != nil {
		return "", fmt.Errorf("decode %s: %w", t.Name, err)
	}
	text, err := m.Encode(oid, pgtype.TextFormatCode, v, nil)
	if err != nil {
		return "", fmt.Errorf("spell %s as text: %w", t.Name, err)
	}
	return string(text), nil
}
