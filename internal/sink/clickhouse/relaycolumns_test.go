package clickhouse

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/event"
)

var (
	id1 = uuid.MustParse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
	id2 = uuid.MustParse("00000000-0000-0000-0000-000000000002")
	at1 = time.Date(2024, 3, 5, 12, 34, 56, 123456000, time.UTC)
	at2 = time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

func testEvents() []event.Event {
	return []event.Event{
		{ID: id1, Type: "order.created", OccurredAt: at1, Environment: "prod", Context: []byte(`{"a":1}`), MetadataVersion: 1, CommitLSN: 100},
		{ID: id2, Type: "user.deleted", OccurredAt: at2, Environment: "", Context: []byte(`{}`), MetadataVersion: 7, CommitLSN: 1 << 40},
	}
}

func TestColumn(t *testing.T) {
	tests := []struct {
		name, typ string
		want      any // the values for testEvents(); nil when unsupported
	}{
		{"event_id", "UUID", []uuid.UUID{id1, id2}},
		{"event_id", "String", []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-0000-0000-000000000002"}},
		{"event_type", "String", []string{"order.created", "user.deleted"}},
		{"environment", "String", []string{"prod", ""}},
		{"event_context", "String", []string{`{"a":1}`, `{}`}},
		{"event_date_time", "DateTime64(6, 'UTC')", []time.Time{at1, at2}},
		{"event_date_time", "DateTime64(6)", []time.Time{at1, at2}},
		{"event_date_time", "DateTime64(3, 'UTC')", []time.Time{at1.Truncate(time.Millisecond), at2.Truncate(time.Millisecond)}},
		{"event_date_time", "DateTime('UTC')", []time.Time{at1.Truncate(time.Second), at2.Truncate(time.Second)}},
		{"event_date_time", "DateTime", []time.Time{at1.Truncate(time.Second), at2.Truncate(time.Second)}},
		{"event_date_time_us", "UInt32", []uint32{123456, 999999}},
		{"metadata_version", "UInt64", []uint64{1, 7}},
		{"metadata_version", "Int64", []int64{1, 7}},
		{"metadata_version", "Int32", []int32{1, 7}},
		{"metadata_version", "UInt32", []uint32{1, 7}},
		{"event_date_time", "DateTime64(6, 'Europe/Berlin')", []time.Time{at1, at2}},
		{"event_date_time", "DateTime('Asia/Tokyo')", []time.Time{at1.Truncate(time.Second), at2.Truncate(time.Second)}},
		{"metadata_version", "Nullable(Int32)", []int32{1, 7}},
		{"commit_lsn", "UInt64", []uint64{100, 1 << 40}},

		// Types that wrap the relay's: Nullable sent as it is (no NULL),
		// the others as the relay's type, converted by the server (see
		// sentType).
		{"event_type", "Nullable(String)", []string{"order.created", "user.deleted"}},
		{"event_type", "LowCardinality(String)", []string{"order.created", "user.deleted"}},
		{"environment", "LowCardinality(Nullable(String))", []string{"prod", ""}},
		{"event_context", "JSON", []string{`{"a":1}`, `{}`}},
		{"event_context", "Object('json')", []string{`{"a":1}`, `{}`}},
		{"event_id", "Nullable(UUID)", []uuid.UUID{id1, id2}},
		{"event_date_time", "Nullable(DateTime64(6, 'UTC'))", []time.Time{at1, at2}},
		{"metadata_version", "Nullable(UInt64)", []uint64{1, 7}},

		// Not supported: the sink leaves them to a DEFAULT or refuses the table.
		{"relayed_at", "DateTime('UTC')", nil},
		{"event_id", "FixedString(16)", nil},
		{"event_type", "Int32", nil},
		{"event_type", "JSON", nil},
		{"event_date_time", "String", nil},
		{"event_date_time", "Date", nil},
		{"event_date_time", "DateTime64(x)", nil},
		{"event_date_time_us", "UInt64", nil},
		{"commit_lsn", "Int64", nil},
		{"metadata_version", "Int16", nil},
		{"metadata_version", "Nullable(String)", nil},
		{"Event_Id", "UUID", nil},
		{"", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name+" "+tt.typ, func(t *testing.T) {
			c, ok := newColumn(tt.name, tt.typ)
			if tt.want == nil {
				if ok || c != nil {
					t.Fatalf("newColumn(%q, %q) supported, want unsupported", tt.name, tt.typ)
				}
				return
			}
			if !ok || c == nil {
				t.Fatalf("newColumn(%q, %q) unsupported", tt.name, tt.typ)
			}
			if got := c.input().Data.Type(); !serverCasts(tt.name, tt.typ, string(got)) {
				t.Errorf("type sent = %q, which the server does not convert into %q", got, tt.typ)
			}
			// Twice: the second batch must not see the first one's values.
			for range 2 {
				c.fill(testEvents())
				if got := decoded(t, c); !reflect.DeepEqual(got, tt.want) {
					t.Errorf("values = %#v\nwant %#v", got, tt.want)
				}
			}
			c.fill(nil)
			if n := c.data.Rows(); n != 0 {
				t.Errorf("after an empty batch: %d rows, want 0", n)
			}
		})
	}
}

// decoded encodes the column as it goes on the wire and decodes it back
// with ch-go's own column types.
func decoded(t *testing.T, c *relayColumn) any {
	t.Helper()
	var b proto.Buffer
	in := c.input()
	in.Data.EncodeColumn(&b)
	n := in.Data.Rows()
	if c.nullable {
		// The null map: no value is NULL.
		if len(b.Buf) < n || !bytes.Equal(b.Buf[:n], make([]byte, n)) {
			t.Fatalf("null map of %s = %v, want %d zeros", c.name, b.Buf[:min(n, len(b.Buf))], n)
		}
		b.Buf = b.Buf[n:]
	}
	r := proto.NewReader(bytes.NewReader(b.Buf))
	var out any
	var err error
	switch c.data.(type) {
	case *proto.ColUUID:
		var col proto.ColUUID
		err = col.DecodeColumn(r, n)
		out = []uuid.UUID(col)
	case *eventStrings:
		var col proto.ColStr
		err = col.DecodeColumn(r, n)
		var vs []string
		for i := range n {
			vs = append(vs, col.Row(i))
		}
		out = vs
	case *proto.ColDateTime64:
		col := proto.ColDateTime64{}
		if ierr := col.Infer(proto.ColumnType(c.typ)); ierr != nil {
			t.Fatal(ierr)
		}
		err = col.DecodeColumn(r, n)
		var vs []time.Time
		for i := range n {
			vs = append(vs, col.Row(i).UTC())
		}
		out = vs
	case *proto.ColDateTime:
		var col proto.ColDateTime
		err = col.DecodeColumn(r, n)
		var vs []time.Time
		for i := range n {
			vs = append(vs, col.Row(i).UTC())
		}
		out = vs
	case *proto.ColUInt32:
		var col proto.ColUInt32
		err = col.DecodeColumn(r, n)
		out = []uint32(col)
	case *proto.ColUInt64:
		var col proto.ColUInt64
		err = col.DecodeColumn(r, n)
		out = []uint64(col)
	case *proto.ColInt64:
		var col proto.ColInt64
		err = col.DecodeColumn(r, n)
		out = []int64(col)
	case *proto.ColInt32:
		var col proto.ColInt32
		err = col.DecodeColumn(r, n)
		out = []int32(col)
	default:
		t.Fatalf("no decoder for %T", c.data)
	}
	if err != nil {
		t.Fatalf("decode %s: %v", c.name, err)
	}
	return out
}

// DateTime and event_date_time_us together keep every microsecond, in UTC.
func TestColumnSplitTimeRoundTrips(t *testing.T) {
	secs, _ := newColumn("event_date_time", "DateTime('UTC')")
	micros, _ := newColumn("event_date_time_us", "UInt32")
	evs := testEvents()
	secs.fill(evs)
	micros.fill(evs)
	s := decoded(t, secs).([]time.Time)
	us := decoded(t, micros).([]uint32)
	for i, e := range evs {
		got := s[i].Add(time.Duration(us[i]) * time.Microsecond)
		if !got.Equal(e.OccurredAt) {
			t.Errorf("event %d: %s + %dus = %s, want %s", i, s[i], us[i], got, e.OccurredAt)
		}
	}
}
