package replication

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outbox-relay/relay/internal/event"
)

// pgoutput wire encoding, written out by hand so the tests do not depend on
// the code under test to build their input.

type relCol struct {
	name string
	oid  uint32
}

// encodeRelation is the body of a RELATION message (after the 'R' byte).
func encodeRelation(relID uint32, namespace, name string, cols ...relCol) []byte {
	b := binary.BigEndian.AppendUint32(nil, relID)
	b = append(append(b, namespace...), 0)
	b = append(append(b, name...), 0)
	b = append(b, 'd') // replica identity: default
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		b = append(b, 0) // flags
		b = append(append(b, c.name...), 0)
		b = binary.BigEndian.AppendUint32(b, c.oid)
		b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF) // typmod -1
	}
	return b
}

// tupleCol is one column of a TupleData: kind 'b', 't', 'n' or 'u' (any
// other kind is encoded like 'b' and 't', to test that it is rejected).
type tupleCol struct {
	kind byte
	val  []byte
}

func bin(v []byte) tupleCol          { return tupleCol{'b', v} }
func txt(v string) tupleCol          { return tupleCol{'t', []byte(v)} }
func null() tupleCol                 { return tupleCol{kind: 'n'} }
func unchangedToast() tupleCol       { return tupleCol{kind: 'u'} }
func kind(k byte, v string) tupleCol { return tupleCol{k, []byte(v)} }

// encodeInsert is the body of an INSERT message (after the 'I' byte):
// Int32 relation id, 'N', Int16 column count, then per column the kind and,
// for 'b' and 't', Int32 length and the bytes.
func encodeInsert(relID uint32, cols ...tupleCol) []byte {
	b := binary.BigEndian.AppendUint32(nil, relID)
	b = append(b, 'N')
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		b = append(b, c.kind)
		if c.kind != 'n' && c.kind != 'u' {
			b = binary.BigEndian.AppendUint32(b, uint32(len(c.val)))
			b = append(b, c.val...)
		}
	}
	return b
}

func binUUID(u [16]byte) []byte { return u[:] }

// binTimestamp is timestamp[tz] binary: int64 microseconds since 2000-01-01 UTC.
func binTimestamp(t time.Time) []byte {
	us := t.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds()
	return binary.BigEndian.AppendUint64(nil, uint64(us))
}

// binJSONB is jsonb binary: version byte 1, then the JSON text.
func binJSONB(s string) []byte { return append([]byte{1}, s...) }

func binInt8(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
func binInt4(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
func binInt2(v int16) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }

const testRelID = 16384

var (
	testID   = [16]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}
	testIDs  = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
	testTime = time.Date(2024, 3, 5, 12, 34, 56, 123456000, time.UTC)
)

// outboxCols is the outbox_event table as created by the Postgres migration.
func outboxCols() []relCol {
	return []relCol{
		{"id", oidUUID},
		{"event_type", oidText},
		{"event_date_time", oidTimestamptz},
		{"environment", oidText},
		{"event_context", oidJSONB},
		{"metadata_version", oidInt8},
	}
}

// mustRelation decodes an encoded RELATION message with pglogrepl and maps it.
func mustRelation(t testing.TB, cols ...relCol) *relation {
	t.Helper()
	var m pglogrepl.RelationMessage
	if err := m.Decode(encodeRelation(testRelID, "public", "outbox_event", cols...)); err != nil {
		t.Fatalf("decode relation: %v", err)
	}
	r, err := newRelation(&m, defaultOutbox(), 1, nil)
	if err != nil {
		t.Fatalf("newRelation: %v", err)
	}
	return r
}

func TestNewRelation(t *testing.T) {
	tests := []struct {
		name       string
		cols       []relCol
		wantFields []field
		wantErr    string
	}{
		{
			name:       "outbox table",
			cols:       outboxCols(),
			wantFields: []field{fieldID, fieldType, fieldOccurredAt, fieldEnvironment, fieldContext, fieldMetadataVersion},
		},
		{
			name: "any column order, other columns of any type are extra columns",
			cols: []relCol{
				{"tenant_id", 1700}, // numeric
				{"event_context", oidJSON},
				{"environment", oidVarchar},
				{"created_at", 1082}, // date
				{"id", oidUUID},
				{"event_type", oidVarchar},
			},
			wantFields: []field{fieldExtra, fieldContext, fieldEnvironment, fieldExtra, fieldID, fieldType},
		},
		{
			name: "text event_context, timestamp without time zone, int4 metadata_version",
			cols: []relCol{
				{"id", oidUUID}, {"event_type", oidText}, {"event_date_time", oidTimestamp},
				{"environment", oidText}, {"event_context", oidText}, {"metadata_version", oidInt4},
			},
			wantFields: []field{fieldID, fieldType, fieldOccurredAt, fieldEnvironment, fieldContext, fieldMetadataVersion},
		},
		{
			name:       "metadata_version may be absent",
			cols:       []relCol{{"id", oidUUID}, {"event_type", oidText}, {"environment", oidText}, {"event_context", oidJSONB}},
			wantFields: []field{fieldID, fieldType, fieldEnvironment, fieldContext},
		},
		{
			name:    "missing id",
			cols:    []relCol{{"event_type", oidText}, {"environment", oidText}, {"event_context", oidJSONB}},
			wantErr: "public.outbox_event has no column id",
		},
		{
			name:    "missing event_type",
			cols:    []relCol{{"id", oidUUID}, {"environment", oidText}, {"event_context", oidJSONB}},
			wantErr: "has no column event_type",
		},
		{
			name:    "missing environment",
			cols:    []relCol{{"id", oidUUID}, {"event_type", oidText}, {"event_context", oidJSONB}},
			wantErr: "has no column environment",
		},
		{
			name:    "missing event_context",
			cols:    []relCol{{"id", oidUUID}, {"event_type", oidText}, {"environment", oidText}},
			wantErr: "has no column event_context",
		},
		{
			name:    "no columns",
			wantErr: "has no column",
		},
		{
			name:    "id as text",
			cols:    []relCol{{"id", oidText}, {"event_type", oidText}, {"environment", oidText}, {"event_context", oidJSONB}},
			wantErr: "column id changed its type to text (oid 25)",
		},
		{
			name:    "event_type as int4",
			cols:    []relCol{{"id", oidUUID}, {"event_type", oidInt4}, {"environment", oidText}, {"event_context", oidJSONB}},
			wantErr: "column event_type changed its type to integer (oid 23)",
		},
		{
			name:    "event_date_time as date",
			cols:    []relCol{{"id", oidUUID}, {"event_type", oidText}, {"event_date_time", 1082}, {"environment", oidText}, {"event_context", oidJSONB}},
			wantErr: "column event_date_time changed its type to another type (oid 1082)",
		},
		{
			name:    "event_context as bytea",
			cols:    []relCol{{"id", oidUUID}, {"event_type", oidText}, {"environment", oidText}, {"event_context", 17}},
			wantErr: "column event_context changed its type to another type (oid 17)",
		},
		{
			name:    "metadata_version as numeric",
			cols:    []relCol{{"id", oidUUID}, {"event_type", oidText}, {"environment", oidText}, {"event_context", oidJSONB}, {"metadata_version", 1700}},
			wantErr: "column metadata_version changed its type to another type (oid 1700)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m pglogrepl.RelationMessage
			if err := m.Decode(encodeRelation(testRelID, "public", "outbox_event", tt.cols...)); err != nil {
				t.Fatalf("decode relation: %v", err)
			}
			r, err := newRelation(&m, defaultOutbox(), 1, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("newRelation() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("newRelation() error = %v", err)
			}
			if r.name != "public.outbox_event" {
				t.Errorf("name = %q, want public.outbox_event", r.name)
			}
			if len(r.fields) != len(tt.wantFields) || len(r.oids) != len(tt.cols) {
				t.Fatalf("fields = %v, oids = %v, want fields %v and %d oids", r.fields, r.oids, tt.wantFields, len(tt.cols))
			}
			for i := range tt.wantFields {
				if r.fields[i] != tt.wantFields[i] || r.oids[i] != tt.cols[i].oid {
					t.Errorf("column %d: field %v oid %d, want %v oid %d", i, r.fields[i], r.oids[i], tt.wantFields[i], tt.cols[i].oid)
				}
			}
		})
	}
}

// validBinary is a binary-format INSERT of the full outbox row.
func validBinary() []byte {
	return encodeInsert(testRelID,
		bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
		bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin(binInt8(3)))
}

// validText is the same row in text format.
func validText() []byte {
	return encodeInsert(testRelID,
		txt(testIDs), txt("order.created"), txt("2024-03-05 14:34:56.123456+02"),
		txt("prod"), txt(`{"a":1}`), txt("3"))
}

func wantEvent() event.Event {
	return event.Event{
		ID: testID, Type: "order.created", OccurredAt: testTime,
		Environment: "prod", Context: []byte(`{"a":1}`), MetadataVersion: 3,
	}
}

func TestDecodeInsert(t *testing.T) {
	withCtx := func(f func(*event.Event)) event.Event {
		e := wantEvent()
		f(&e)
		return e
	}
	// The outbox relation with one column's type replaced.
	colsWith := func(name string, oid uint32) []relCol {
		cols := outboxCols()
		for i := range cols {
			if cols[i].name == name {
				cols[i].oid = oid
			}
		}
		return cols
	}
	before2000 := time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	tests := []struct {
		name    string
		cols    []relCol
		msg     []byte
		want    event.Event
		wantErr string
	}{
		{
			name: "binary row",
			cols: outboxCols(),
			msg:  validBinary(),
			want: wantEvent(),
		},
		{
			name: "text row",
			cols: outboxCols(),
			msg:  validText(),
			want: wantEvent(),
		},
		{
			name: "binary timestamp before 2000 (negative microseconds)",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(before2000)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin(binInt8(3))),
			want: withCtx(func(e *event.Event) { e.OccurredAt = before2000 }),
		},
		{
			name: "binary timestamp without time zone",
			cols: colsWith("event_date_time", oidTimestamp),
			msg:  validBinary(),
			want: wantEvent(),
		},
		{
			name: "text timestamp without time zone is taken as UTC",
			cols: colsWith("event_date_time", oidTimestamp),
			msg: encodeInsert(testRelID, txt(testIDs), txt("order.created"), txt("2024-03-05 12:34:56.123456"),
				txt("prod"), txt(`{"a":1}`), txt("3")),
			want: wantEvent(),
		},
		{
			name: "binary json (no version byte)",
			cols: colsWith("event_context", oidJSON),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin([]byte(`{"a":1}`)), bin(binInt8(3))),
			want: wantEvent(),
		},
		{
			name: "binary text event_context",
			cols: colsWith("event_context", oidText),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin([]byte(`{"a":1}`)), bin(binInt8(3))),
			want: wantEvent(),
		},
		{
			name: "binary int4 metadata_version",
			cols: colsWith("metadata_version", oidInt4),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin(binInt4(7))),
			want: withCtx(func(e *event.Event) { e.MetadataVersion = 7 }),
		},
		{
			name: "binary int2 metadata_version",
			cols: colsWith("metadata_version", oidInt2),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin(binInt2(9))),
			want: withCtx(func(e *event.Event) { e.MetadataVersion = 9 }),
		},
		{
			name: "binary int8 metadata_version above 32 bits",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin(binInt8(1<<40))),
			want: withCtx(func(e *event.Event) { e.MetadataVersion = 1 << 40 }),
		},
		{
			name: "text int4 metadata_version",
			cols: colsWith("metadata_version", oidInt4),
			msg: encodeInsert(testRelID, txt(testIDs), txt("order.created"), txt("2024-03-05 12:34:56.123456Z"),
				txt("prod"), txt(`{"a":1}`), txt("12")),
			want: withCtx(func(e *event.Event) { e.MetadataVersion = 12 }),
		},
		{
			name: "null metadata_version defaults to 1",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), null()),
			want: withCtx(func(e *event.Event) { e.MetadataVersion = 1 }),
		},
		{
			name: "absent metadata_version defaults to 1",
			cols: outboxCols()[:5],
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`))),
			want: withCtx(func(e *event.Event) { e.MetadataVersion = 1 }),
		},
		{
			name: "mixed binary and text columns",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), txt("order.created"), bin(binTimestamp(testTime)),
				txt("prod"), bin(binJSONB(`{"a":1}`)), txt("3")),
			want: wantEvent(),
		},
		{
			name: "unknown columns skipped whatever their content",
			cols: append([]relCol{{"tenant", 1700}, {"note", oidText}, {"blob", 17}}, append(outboxCols(), relCol{"trace", oidJSONB})...),
			msg: encodeInsert(testRelID,
				bin([]byte{0, 1, 2}), null(), txt("not a uuid, not a time"),
				bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin(binInt8(3)),
				bin([]byte{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9})),
			want: wantEvent(),
		},
		{
			name: "empty event_type and environment are kept empty",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin(nil), bin(binTimestamp(testTime)),
				bin(nil), bin(binJSONB(`{}`)), bin(binInt8(3))),
			want: withCtx(func(e *event.Event) { e.Type, e.Environment, e.Context = "", "", []byte(`{}`) }),
		},

		// Errors.
		{
			name: "null id",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, null(), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin(binInt8(3))),
			wantErr: "column id is null",
		},
		{
			name: "null event_type",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), null(), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin(binInt8(3))),
			wantErr: "column event_type is null",
		},
		{
			name: "null event_context",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), null(), bin(binInt8(3))),
			wantErr: "column event_context is null",
		},
		{
			name: "unchanged toast in event_context",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), unchangedToast(), bin(binInt8(3))),
			wantErr: "column event_context is null",
		},
		{
			name:    "fewer columns than the relation",
			cols:    outboxCols(),
			msg:     encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created"))),
			wantErr: "insert has 2 columns, relation 6",
		},
		{
			name: "more columns than the relation",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin(binInt8(3)), null()),
			wantErr: "insert has 7 columns, relation 6",
		},
		{
			name:    "not a new tuple",
			cols:    outboxCols(),
			msg:     append(append(binary.BigEndian.AppendUint32(nil, testRelID), 'K'), validBinary()[5:]...),
			wantErr: errMalformed.Error(),
		},
		{
			name:    "empty",
			cols:    outboxCols(),
			msg:     nil,
			wantErr: errMalformed.Error(),
		},
		{
			name: "length beyond the message",
			cols: outboxCols(),
			msg: func() []byte {
				m := validBinary() // ends with 'b', Int32 8, 8 bytes of metadata_version
				binary.BigEndian.PutUint32(m[len(m)-12:], 0xFFFFFFFF)
				return m
			}(),
			wantErr: errMalformed.Error(),
		},
		{
			name: "binary uuid of 15 bytes",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(testID[:15]), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin(binInt8(3))),
			wantErr: "column id: " + errMalformed.Error(),
		},
		{
			name: "binary timestamp of 4 bytes",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binInt4(1)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin(binInt8(3))),
			wantErr: "column event_date_time: " + errMalformed.Error(),
		},
		{
			name: "binary jsonb of an unknown version",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(append([]byte{2}, `{"a":1}`...)), bin(binInt8(3))),
			wantErr: "column event_context: unknown jsonb binary version",
		},
		{
			name: "binary jsonb without its version byte",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(nil), bin(binInt8(3))),
			wantErr: "column event_context: unknown jsonb binary version",
		},
		{
			name: "binary metadata_version of 3 bytes",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
				bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin([]byte{0, 0, 3})),
			wantErr: "column metadata_version: " + errMalformed.Error(),
		},
		{
			name: "text id not a uuid",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, txt("not-a-uuid"), txt("order.created"), txt("2024-03-05 12:34:56Z"),
				txt("prod"), txt(`{}`), txt("3")),
			wantErr: "column id:",
		},
		{
			name: "text timestamp not a time",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, txt(testIDs), txt("order.created"), txt("yesterday-ish"),
				txt("prod"), txt(`{}`), txt("3")),
			wantErr: "column event_date_time:",
		},
		{
			name: "text metadata_version not a number",
			cols: outboxCols(),
			msg: encodeInsert(testRelID, txt(testIDs), txt("order.created"), txt("2024-03-05 12:34:56Z"),
				txt("prod"), txt(`{}`), txt("three")),
			wantErr: "column metadata_version:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRelation(t, tt.cols...)
			var got event.Event
			err := r.decodeInsert(tt.msg, &got, pgtype.NewMap())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decodeInsert() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeInsert() error = %v", err)
			}
			assertEvent(t, got, tt.want)
		})
	}
}

func assertEvent(t *testing.T, got, want event.Event) {
	t.Helper()
	if got.ID != want.ID {
		t.Errorf("ID = %x, want %x", got.ID, want.ID)
	}
	if got.Type != want.Type {
		t.Errorf("Type = %q, want %q", got.Type, want.Type)
	}
	if got.Environment != want.Environment {
		t.Errorf("Environment = %q, want %q", got.Environment, want.Environment)
	}
	if !bytes.Equal(got.Context, want.Context) {
		t.Errorf("Context = %q, want %q", got.Context, want.Context)
	}
	if got.MetadataVersion != want.MetadataVersion {
		t.Errorf("MetadataVersion = %d, want %d", got.MetadataVersion, want.MetadataVersion)
	}
	// Microseconds survive and the result is in UTC, not just the same instant.
	if !got.OccurredAt.Equal(want.OccurredAt) || got.OccurredAt.Nanosecond() != want.OccurredAt.Nanosecond() {
		t.Errorf("OccurredAt = %s, want %s", got.OccurredAt.Format(time.RFC3339Nano), want.OccurredAt.Format(time.RFC3339Nano))
	}
	if got.OccurredAt.Location() != time.UTC {
		t.Errorf("OccurredAt location = %v, want UTC", got.OccurredAt.Location())
	}
}

// TestDecodeInsertTruncated cuts valid messages at every byte: each prefix
// must be an error, never a panic or a silently short event.
func TestDecodeInsertTruncated(t *testing.T) {
	for name, full := range map[string][]byte{"binary": validBinary(), "text": validText()} {
		r := mustRelation(t, outboxCols()...)
		for n := range len(full) {
			var ev event.Event
			if err := r.decodeInsert(full[:n], &ev, pgtype.NewMap()); err == nil {
				t.Errorf("%s message cut to %d of %d bytes: decodeInsert() = nil, want an error", name, n, len(full))
			}
		}
	}
}

// The event owns its bytes: the caller reuses the network buffer.
func TestDecodeInsertCopiesOutOfSource(t *testing.T) {
	r := mustRelation(t, outboxCols()...)
	for name, msg := range map[string][]byte{"binary": validBinary(), "text": validText()} {
		var ev event.Event
		if err := r.decodeInsert(msg, &ev, pgtype.NewMap()); err != nil {
			t.Fatalf("%s: decodeInsert() error = %v", name, err)
		}
		for i := range msg {
			msg[i] = 'X'
		}
		assertEvent(t, ev, wantEvent())
	}
}

// pgoutput defines only the kinds 'n', 'u', 't' and 'b'.
func TestDecodeInsertUnknownKind(t *testing.T) {
	r := mustRelation(t, outboxCols()...)
	msg := encodeInsert(testRelID, txt(testIDs), kind('x', "order.created"), txt("2024-03-05 12:34:56Z"),
		txt("prod"), txt(`{}`), txt("3"))
	var ev event.Event
	if err := r.decodeInsert(msg, &ev, pgtype.NewMap()); err == nil {
		t.Errorf("decodeInsert() with column kind 'x' = nil (event_type %q), want an error", ev.Type)
	}
}

// FuzzDecodeInsert: whatever the bytes, decodeInsert returns (an error or
// an event) and never panics.
func FuzzDecodeInsert(f *testing.F) {
	f.Add(validBinary())
	f.Add(validText())
	f.Add(validBinary()[:20])
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0x40, 0, 'N', 0, 6})
	f.Add([]byte{0, 0, 0x40, 0, 'N', 0, 6, 'b', 0xFF, 0xFF, 0xFF, 0xFF})
	f.Add([]byte{0, 0, 0x40, 0, 'N', 0, 6, 'b', 0x7F, 0xFF, 0xFF, 0xFF})
	f.Add(encodeInsert(testRelID, null(), null(), null(), null(), null(), null()))
	f.Add(encodeInsert(testRelID, bin(binUUID(testID)), bin([]byte("t")), bin(binInt8(-1<<63)),
		bin([]byte("e")), bin(binJSONB("")), bin(binInt8(1<<63-1))))
	f.Add(encodeInsert(testRelID, txt(testIDs), txt("t"), txt("infinity"), txt("e"), txt("{}"), txt("99999999999999999999")))
	r := mustRelation(f, outboxCols()...)
	types := pgtype.NewMap()
	f.Fuzz(func(t *testing.T, msg []byte) {
		var ev event.Event
		if err := r.decodeInsert(msg, &ev, types); err != nil {
			return
		}
		if ev.OccurredAt.Location() != time.UTC {
			t.Errorf("decoded event_date_time %v is not in UTC", ev.OccurredAt)
		}
	})
}

// edgeRows are outbox rows with values at the edges of their types, as
// pgoutput or a query sends them.
func edgeRows() []struct {
	name string
	cols []tupleCol
	want func(*event.Event)
} {
	row := func(when, version tupleCol) []tupleCol {
		return []tupleCol{bin(binUUID(testID)), bin([]byte("order.created")), when, bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), version}
	}
	maxPG := time.Date(294276, 12, 31, 23, 59, 59, 999999000, time.UTC)
	minPG := time.Date(-4713, 11, 24, 0, 0, 0, 0, time.UTC) // 4714-11-24 BC
	at := func(t time.Time) func(*event.Event) { return func(e *event.Event) { e.OccurredAt = t } }
	version := func(v int64) func(*event.Event) { return func(e *event.Event) { e.MetadataVersion = v } }
	return []struct {
		name string
		cols []tupleCol
		want func(*event.Event)
	}{
		{"binary infinity", row(bin(binInt8(1<<63-1)), bin(binInt8(3))), at(event.Infinity)},
		{"binary -infinity", row(bin(binInt8(-1<<63)), bin(binInt8(3))), at(event.NegInfinity)},
		{"text infinity", row(txt("infinity"), bin(binInt8(3))), at(event.Infinity)},
		{"text -infinity", row(txt("-infinity"), bin(binInt8(3))), at(event.NegInfinity)},
		{"binary latest timestamp PostgreSQL stores", row(bin(binInt8(9223371331199999999)), bin(binInt8(3))), at(maxPG)},
		{"binary earliest timestamp PostgreSQL stores", row(bin(binInt8(-211813488000000000)), bin(binInt8(3))), at(minPG)},
		{"binary timestamp before 2000 with microseconds", row(bin(binInt8(-1)), bin(binInt8(3))),
			at(time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC))},
		{"binary metadata_version 0", row(bin(binTimestamp(testTime)), bin(binInt8(0))), version(0)},
		{"text metadata_version 0", row(bin(binTimestamp(testTime)), txt("0")), version(0)},
		{"binary metadata_version -1", row(bin(binTimestamp(testTime)), bin(binInt8(-1))), version(-1)},
		{"binary smallest metadata_version", row(bin(binTimestamp(testTime)), bin(binInt8(-1<<63))), version(-1 << 63)},
		{"binary largest metadata_version", row(bin(binTimestamp(testTime)), bin(binInt8(1<<63-1))), version(1<<63 - 1)},
		{"null metadata_version", row(bin(binTimestamp(testTime)), null()), version(1)},
	}
}

// Edge values decode to what PostgreSQL holds: infinities as such, no
// timestamp wrapped, metadata_version as written (0 stays 0; only NULL is
// the default 1). Whether the sink can store them is the sink's call.
func TestDecodeEdgeValues(t *testing.T) {
	r := mustRelation(t, outboxCols()...)
	for _, tc := range edgeRows() {
		t.Run(tc.name, func(t *testing.T) {
			var got event.Event
			if err := r.decodeInsert(encodeInsert(testRelID, tc.cols...), &got, pgtype.NewMap()); err != nil {
				t.Fatalf("decodeInsert() error = %v", err)
			}
			want := wantEvent()
			tc.want(&want)
			assertEvent(t, got, want)
		})
	}
}

// The backfill's rows decode exactly as the stream's INSERTs: same events,
// same errors.
func TestDecodeRowMatchesInsert(t *testing.T) {
	r := mustRelation(t, outboxCols()...)
	type rowCase struct {
		name string
		cols []tupleCol
	}
	cases := []rowCase{
		{"text row", []tupleCol{txt(testIDs), txt("order.created"), txt("2024-03-05 12:34:56.123456Z"), txt("prod"), txt(`{"a":1}`), txt("3")}},
		{"null id", []tupleCol{null(), bin([]byte("t")), bin(binTimestamp(testTime)), bin([]byte("e")), bin(binJSONB("{}")), bin(binInt8(1))}},
		{"null context", []tupleCol{bin(binUUID(testID)), bin([]byte("t")), bin(binTimestamp(testTime)), bin([]byte("e")), null(), bin(binInt8(1))}},
		{"bad jsonb version", []tupleCol{bin(binUUID(testID)), bin([]byte("t")), bin(binTimestamp(testTime)), bin([]byte("e")), bin([]byte{2, '{', '}'}), bin(binInt8(1))}},
		{"short uuid", []tupleCol{bin([]byte{1, 2}), bin([]byte("t")), bin(binTimestamp(testTime)), bin([]byte("e")), bin(binJSONB("{}")), bin(binInt8(1))}},
	}
	for _, e := range edgeRows() {
		cases = append(cases, rowCase{e.name, e.cols})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var fromInsert, fromRow event.Event
			insertErr := r.decodeInsert(encodeInsert(testRelID, tc.cols...), &fromInsert, pgtype.NewMap())
			vals, formats := make([][]byte, len(tc.cols)), make([]int16, len(tc.cols))
			for i, c := range tc.cols {
				if c.kind != 'n' {
					vals[i] = append([]byte{}, c.val...)
				}
				if c.kind == 'b' {
					formats[i] = pgtype.BinaryFormatCode
				}
			}
			rowErr := r.decodeRow(vals, formats, &fromRow, pgtype.NewMap())
			if (insertErr == nil) != (rowErr == nil) {
				t.Fatalf("decodeInsert() error = %v, decodeRow() error = %v", insertErr, rowErr)
			}
			if insertErr == nil {
				assertEvent(t, fromRow, fromInsert)
			}
		})
	}
}
