package replication

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outbox-relay/relay/internal/event"
)

// benchOutboxRelation is the outbox table as a RELATION message announces
// it (column order and types of migrations/postgres/00001_outbox_event.sql).
func benchOutboxRelation(b *testing.B) *relation {
	b.Helper()
	cols := []*pglogrepl.RelationMessageColumn{
		{Name: colID, DataType: oidUUID},
		{Name: colEventType, DataType: oidText},
		{Name: colEventDateTime, DataType: oidTimestamptz},
		{Name: colEnvironment, DataType: oidText},
		{Name: colEventContext, DataType: oidJSONB},
		{Name: colMetadataVersion, DataType: oidInt8},
	}
	rel, err := newRelation(&pglogrepl.RelationMessage{RelationID: 16384, Namespace: "public",
		RelationName: "outbox_event", ColumnNum: uint16(len(cols)), Columns: cols}, defaultOutbox(), 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	return rel
}

// benchInsertBody is a binary-format INSERT body (after the 'I' byte) with
// an event_context of size bytes, encoded by hand.
func benchInsertBody(size int) []byte {
	ctx := make([]byte, size)
	for i := range ctx {
		ctx[i] = 'a' + byte(i%26)
	}
	ctx[0], ctx[size-1] = '"', '"'
	ts := binary.BigEndian.AppendUint64(nil, uint64(time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC).UnixMicro()-pgEpochSeconds*1e6))
	vals := [][]byte{
		[]byte("0123456789abcdef"), // uuid, 16 bytes
		[]byte("user_created"),
		ts,
		[]byte("production"),
		append([]byte{1}, ctx...), // jsonb: version byte + text
		binary.BigEndian.AppendUint64(nil, 1),
	}
	body := binary.BigEndian.AppendUint32(nil, 16384)
	body = append(body, 'N')
	body = binary.BigEndian.AppendUint16(body, uint16(len(vals)))
	for _, v := range vals {
		body = append(body, 'b')
		body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
		body = append(body, v...)
	}
	return body
}

// BenchmarkDecodeInsert measures the per-event decode of the hot path:
// pgoutput INSERT body -> event.Event. One op is one event.
func BenchmarkDecodeInsert(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"512B", 512}, {"64KiB", 64 << 10}} {
		b.Run(bc.name, func(b *testing.B) {
			rel := benchOutboxRelation(b)
			body := benchInsertBody(bc.size)
			types := pgtype.NewMap()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			for b.Loop() {
				var ev event.Event
				if err := rel.decodeInsert(body, &ev, types); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&ms1)
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/event")
		})
	}
}

// benchExtraColumns are five extra columns of the outbox table (bigint,
// uuid, numeric(12,2), text, timestamptz) and a row's binary values.
var benchExtraColumns = []struct {
	name string
	oid  uint32
	val  []byte
}{
	{"user_id", oidInt8, binary.BigEndian.AppendUint64(nil, 4242)},
	{"tenant_id", oidUUID, []byte("fedcba9876543210")},
	{"amount", 1700, []byte{0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 13, 136}}, // 12.3456 → numeric 12.35 digits
	{"request_id", oidText, []byte("req-6f1c2a9e-5b7d-4e1a")},
	{"created_at", oidTimestamptz, binary.BigEndian.AppendUint64(nil, 789000000000000)},
}

// BenchmarkDecodeInsertExtraColumns is BenchmarkDecodeInsert's 512 B event
// with none and with five extra columns: the cost the extra columns add to
// the stream's decoding. One op is one event.
func BenchmarkDecodeInsertExtraColumns(b *testing.B) {
	for _, extra := range []int{0, 5} {
		b.Run(fmt.Sprintf("extra%d", extra), func(b *testing.B) {
			cols := []*pglogrepl.RelationMessageColumn{
				{Name: colID, DataType: oidUUID}, {Name: colEventType, DataType: oidText},
				{Name: colEventDateTime, DataType: oidTimestamptz}, {Name: colEnvironment, DataType: oidText},
				{Name: colEventContext, DataType: oidJSONB}, {Name: colMetadataVersion, DataType: oidInt8},
			}
			body := benchInsertBody(512)
			for _, c := range benchExtraColumns[:extra] {
				cols = append(cols, &pglogrepl.RelationMessageColumn{Name: c.name, DataType: c.oid, TypeModifier: -1})
				body = append(body, 'b')
				body = binary.BigEndian.AppendUint32(body, uint32(len(c.val)))
				body = append(body, c.val...)
			}
			binary.BigEndian.PutUint16(body[5:], uint16(len(cols)))
			rel, err := newRelation(&pglogrepl.RelationMessage{RelationID: 16384, Namespace: "public",
				RelationName: "outbox_event", ColumnNum: uint16(len(cols)), Columns: cols}, defaultOutbox(), 1, nil)
			if err != nil {
				b.Fatal(err)
			}
			types := pgtype.NewMap()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var ev event.Event
				if err := rel.decodeInsert(body, &ev, types); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
