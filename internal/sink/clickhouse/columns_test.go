package clickhouse

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/migrate"
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

func TestFiller(t *testing.T) {
	tests := []struct {
		name, typ string
		want      any // the values for testEvents(); nil when unsupported
	}{
		{"event_id", "UUID", []uuid.UUID{id1, id2}},
		{"event_id", "String", []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-0000-0000-000000000002"}},
		{"event_type", "String", []string{"order.created", "user.deleted"}},
		{"environment", "String", []string{"prod", ""}},
		{"event_context", "String", [][]byte{[]byte(`{"a":1}`), []byte(`{}`)}},
		{"event_date_time", "DateTime64(6, 'UTC')", []time.Time{at1, at2}},
		{"event_date_time", "DateTime64(6)", []time.Time{at1, at2}},
		{"event_date_time", "DateTime('UTC')", []time.Time{at1.Truncate(time.Second), at2.Truncate(time.Second)}},
		{"event_date_time", "DateTime", []time.Time{at1.Truncate(time.Second), at2.Truncate(time.Second)}},
		{"event_date_time_us", "UInt32", []uint32{123456, 999999}},
		{"metadata_version", "UInt64", []uint64{1, 7}},
		{"metadata_version", "Int64", []int64{1, 7}},
		{"commit_lsn", "UInt64", []uint64{100, 1 << 40}},

		// Not supported: the sink leaves them to a DEFAULT or refuses the table.
		{"relayed_at", "DateTime('UTC')", nil},
		{"event_id", "FixedString(16)", nil},
		{"event_type", "Int32", nil},
		{"event_type", "Nullable(String)", nil},
		{"event_date_time", "String", nil},
		{"event_date_time", "Date", nil},
		{"event_date_time_us", "UInt64", nil},
		{"metadata_version", "UInt32", nil},
		{"commit_lsn", "Int64", nil},
		{"Event_Id", "UUID", nil},
		{"", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name+" "+tt.typ, func(t *testing.T) {
			fill, ok := filler(tt.name, tt.typ)
			if tt.want == nil {
				if ok || fill != nil {
					t.Fatalf("filler(%q, %q) supported, want unsupported", tt.name, tt.typ)
				}
				return
			}
			if !ok || fill == nil {
				t.Fatalf("filler(%q, %q) unsupported", tt.name, tt.typ)
			}
			got := fill(testEvents())
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("values = %#v\nwant %#v", got, tt.want)
			}
			// An empty batch gives an empty column of the same type.
			empty := reflect.ValueOf(fill(nil))
			if empty.Type() != reflect.TypeOf(tt.want) || empty.Len() != 0 {
				t.Errorf("empty batch gives %#v, want an empty %T", fill(nil), tt.want)
			}
		})
	}
}

// DateTime and event_date_time_us together keep every microsecond, in UTC.
func TestFillerSplitTimeRoundTrips(t *testing.T) {
	secs, _ := filler("event_date_time", "DateTime('UTC')")
	micros, _ := filler("event_date_time_us", "UInt32")
	evs := testEvents()
	s := secs(evs).([]time.Time)
	us := micros(evs).([]uint32)
	for i, e := range evs {
		got := s[i].Add(time.Duration(us[i]) * time.Microsecond)
		if !got.Equal(e.OccurredAt) {
			t.Errorf("event %d: %s + %dus = %s, want %s", i, s[i], us[i], got, e.OccurredAt)
		}
		if s[i].Nanosecond() != 0 {
			t.Errorf("event %d: DateTime value %s has a fraction", i, s[i])
		}
	}
}

// The event_log table the migrations create must be fillable by the sink
// for both kinds of server: each column has a value or a DEFAULT.
func TestFillerCoversMigratedTable(t *testing.T) {
	for _, caps := range []migrate.Capabilities{{DateTime64: true}, {DateTime64: false}} {
		stmts, err := migrate.Render("clickhouse/0001_event_log.sql", caps)
		if err != nil {
			t.Fatal(err)
		}
		body := stmts[0][strings.Index(stmts[0], "(\n")+2 : strings.Index(stmts[0], "\n)")]
		filled := 0
		for _, line := range strings.Split(body, "\n") {
			f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), ","))
			name, typ := f[0], f[1]
			if _, ok := filler(name, typ); ok {
				filled++
				continue
			}
			if !strings.Contains(line, " DEFAULT ") {
				t.Errorf("%+v: column %s %s has neither a filler nor a DEFAULT", caps, name, typ)
			}
		}
		if filled < 7 {
			t.Errorf("%+v: only %d columns filled by the relay", caps, filled)
		}
	}
}
