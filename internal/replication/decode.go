package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

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

// Outbox column names: part of the contract with publishers.
const (
	colID              = "id"
	colEventType       = "event_type"
	colEventDateTime   = "event_date_time"
	colEnvironment     = "environment"
	colEventContext    = "event_context"
	colMetadataVersion = "metadata_version"
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
)

var errMalformed = errors.New("malformed pgoutput message")

// relation is the decoded shape of a published table.
type relation struct {
	name   string
	fields []field
	oids   []uint32
	// last holds the previous event's event_type and environment: they
	// repeat, and reusing the string saves an allocation per event.
	lastType, lastEnv string
}

// newRelation maps a RELATION message onto event fields. Unknown columns
// are skipped, so columns can be added to the outbox table at any time.
func newRelation(m *pglogrepl.RelationMessage) (*relation, error) {
	r := &relation{name: m.Namespace + "." + m.RelationName}
	seen := map[field]bool{}
	for _, c := range m.Columns {
		f := fieldFor(c.Name)
		if f != fieldSkip && !typeOK(f, c.DataType) {
			return nil, fmt.Errorf("relation %s: column %s has unsupported type oid %d", r.name, c.Name, c.DataType)
		}
		seen[f] = true
		r.fields = append(r.fields, f)
		r.oids = append(r.oids, c.DataType)
	}
	for _, need := range []field{fieldID, fieldType, fieldEnvironment, fieldContext} {
		if !seen[need] {
			return nil, fmt.Errorf("relation %s: missing column %s", r.name, fieldName(need))
		}
	}
	return r, nil
}

func fieldFor(name string) field {
	switch name {
	case colID:
		return fieldID
	case colEventType:
		return fieldType
	case colEventDateTime:
		return fieldOccurredAt
	case colEnvironment:
		return fieldEnvironment
	case colEventContext:
		return fieldContext
	case colMetadataVersion:
		return fieldMetadataVersion
	}
	return fieldSkip
}

func fieldName(f field) string {
	return [...]string{"", colID, colEventType, colEventDateTime, colEnvironment, colEventContext, colMetadataVersion}[f]
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
	p := 7
	for i := 0; i < n; i++ {
		if p >= len(src) {
			return errMalformed
		}
		kind := src[p]
		p++
		if kind == 'n' || kind == 'u' {
			if r.fields[i] == fieldID || r.fields[i] == fieldType || r.fields[i] == fieldContext {
				return fmt.Errorf("relation %s: column %s is null", r.name, fieldName(r.fields[i]))
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
		if r.fields[i] == fieldSkip {
			continue
		}
		var err error
		switch kind {
		case 'b':
			switch r.fields[i] {
			case fieldType:
				ev.Type = intern(&r.lastType, val)
			case fieldEnvironment:
				ev.Environment = intern(&r.lastEnv, val)
			default:
				err = setBinary(ev, r.fields[i], r.oids[i], val)
			}
		case 't':
			err = setText(ev, r.fields[i], r.oids[i], val, types)
		default:
			err = errMalformed
		}
		if err != nil {
			return fmt.Errorf("relation %s: column %s: %w", r.name, fieldName(r.fields[i]), err)
		}
	}
	if ev.MetadataVersion == 0 {
		ev.MetadataVersion = 1
	}
	return nil
}

// intern returns *last when v spells it (no allocation: the comparison
// does not convert), else a new string that becomes *last.
func intern(last *string, v []byte) string {
	if string(v) != *last {
		*last = string(v)
	}
	return *last
}

// pgEpoch is PostgreSQL's timestamp origin.
var pgEpochMicros = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

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
		us := int64(binary.BigEndian.Uint64(v))
		ev.OccurredAt = time.UnixMicro(us + pgEpochMicros).UTC()
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
		var t time.Time
		if err := types.Scan(oid, pgtype.TextFormatCode, v, &t); err != nil {
			return err
		}
		ev.OccurredAt = t.UTC()
	case fieldMetadataVersion:
		var n int64
		if err := types.Scan(oid, pgtype.TextFormatCode, v, &n); err != nil {
			return err
		}
		ev.MetadataVersion = n
	}
	return nil
}
