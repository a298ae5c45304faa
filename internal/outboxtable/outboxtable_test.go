package outboxtable

import (
	"strings"
	"testing"

	"github.com/outbox-relay/relay/internal/config"
)

// django is the original system's outbox table as Read reports it.
func django() Table {
	return Table{Schema: "public", Name: "core_outboxevent", Kind: 'r', Key: []string{"id"}, Columns: []Column{
		{"id", "bigint", "int8"}, {"event_type", "character varying(255)", "varchar"},
		{"event_date_time", "timestamp with time zone", "timestamptz"}, {"environment", "character varying(255)", "varchar"},
		{"event_context", "jsonb", "jsonb"}, {"metadata_version", "integer", "int4"},
		{"created_at", "timestamp with time zone", "timestamptz"}, {"processed", "boolean", "bool"},
	}}
}

func TestCheckStream(t *testing.T) {
	stream := func(mod func(*config.Stream)) config.Stream {
		s := config.Stream{Name: "app", Outbox: "public.core_outboxevent", ClickHouseTable: "event_log", Ignore: []string{"processed", "created_at"}}
		if mod != nil {
			mod(&s)
		}
		return s
	}
	table := func(mod func(*Table)) Table {
		tb := django()
		if mod != nil {
			mod(&tb)
		}
		return tb
	}
	without := func(col string) func(*Table) {
		return func(tb *Table) {
			for i, c := range tb.Columns {
				if c.Name == col {
					tb.Columns = append(tb.Columns[:i:i], tb.Columns[i+1:]...)
					return
				}
			}
		}
	}
	tests := []struct {
		name   string
		stream config.Stream
		table  Table
		want   []string // one substring per problem, in order
	}{
		{name: "django table as it is", stream: stream(nil), table: table(nil)},
		{name: "uuid key", stream: stream(nil), table: table(func(tb *Table) { tb.Columns[0] = Column{"id", "uuid", "uuid"} })},
		{name: "text key", stream: stream(nil), table: table(func(tb *Table) { tb.Columns[0] = Column{"id", "text", "text"} })},
		{name: "smallint key over a domain", stream: stream(nil), table: table(func(tb *Table) { tb.Columns[0] = Column{"id", "small_id", "int2"} })},
		{name: "no key", stream: stream(nil), table: table(func(tb *Table) { tb.Key = nil }),
			want: []string{`stream "app": outbox table public.core_outboxevent has no primary key`}},
		{name: "composite key", stream: stream(nil), table: table(func(tb *Table) { tb.Key = []string{"id", "event_type"} }),
			want: []string{`stream "app": outbox table public.core_outboxevent has a composite primary key (id, event_type)`}},
		{name: "jsonb key", stream: stream(nil), table: table(func(tb *Table) { tb.Key = []string{"event_context"} }),
			want: []string{`primary key event_context is jsonb: the relay needs a single-column primary key of type uuid, bigint`}},
		{name: "a view", stream: stream(nil), table: table(func(tb *Table) { tb.Kind = 'v' }),
			want: []string{`public.core_outboxevent is not a table`}},
		{name: "mapped column missing",
			stream: stream(func(s *config.Stream) { s.Columns = map[string]string{config.FieldEventDateTime: "occurred"} }),
			table:  table(nil),
			want:   []string{`stream "app": field event_date_time maps onto column "occurred", which outbox table public.core_outboxevent does not have`}},
		{name: "mapped column present",
			stream: stream(func(s *config.Stream) {
				s.Columns = map[string]string{config.FieldEventDateTime: "created_at"}
				s.Ignore = []string{"processed"}
			}),
			table: table(nil)},
		{name: "field column missing", stream: stream(nil), table: table(without("event_type")),
			want: []string{`stream "app": outbox table public.core_outboxevent has no column "event_type" for field event_type: map it onto a column`}},
		{name: "environment missing, no constant", stream: stream(nil), table: table(without("environment")),
			want: []string{`no column "environment" for field environment: map it onto a column (columns: in the config file, RELAY_OUTBOX_COLUMNS) or give it a constant`}},
		{name: "environment and metadata_version as constants",
			stream: stream(func(s *config.Stream) {
				s.Constants = map[string]string{config.FieldEnvironment: "production", config.FieldMetadataVersion: "1"}
			}),
			table: table(func(tb *Table) { without("environment")(tb); without("metadata_version")(tb) })},
		{name: "a constant for a field that cannot take one", stream: stream(func(s *config.Stream) {
			s.Constants = map[string]string{config.FieldEventType: "x"}
		}), table: table(without("event_type")),
			want: []string{`has no column "event_type" for field event_type`}},
		{name: "id mapped onto the key", stream: stream(func(s *config.Stream) { s.Columns = map[string]string{config.FieldID: "id"} }), table: table(nil)},
		{name: "id mapped off the key", stream: stream(func(s *config.Stream) { s.Columns = map[string]string{config.FieldID: "metadata_version"} }),
			table: table(nil),
			want:  []string{`field id maps onto column "metadata_version", but the primary key of public.core_outboxevent is "id"`}},
		{name: "every problem at once", stream: stream(func(s *config.Stream) { s.Columns = map[string]string{config.FieldEventContext: "payload"} }),
			table: table(func(tb *Table) { tb.Key = nil; without("event_type")(tb) }),
			want:  []string{"has no primary key", `no column "event_type"`, `field event_context maps onto column "payload"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckStream(tt.stream, tt.table)
			if len(got) != len(tt.want) {
				t.Fatalf("CheckStream() = %v, want %d problems %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i].Error(), w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
