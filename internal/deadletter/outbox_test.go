package deadletter

import (
	"slices"
	"strings"
	"testing"

	"github.com/outbox-relay/relay/internal/config"
)

func col(name, typ string) catalogColumn {
	return catalogColumn{outboxColumn: outboxColumn{name: name, typ: typ}, uuid: typ == "uuid"}
}

// resolve finds the key, the fields' columns and the extra columns of an
// outbox table the way the relay reads it.
func TestResolveTarget(t *testing.T) {
	relay := []catalogColumn{col("id", "uuid"), col("event_type", "text"), col("event_date_time", "timestamp with time zone"),
		col("environment", "text"), col("event_context", "jsonb"), col("metadata_version", "bigint"), col("user_id", "uuid")}
	identity := col("pk", "bigint")
	identity.always = true
	generated := col("day", "date")
	generated.generated = true
	django := []catalogColumn{identity, col("kind", "character varying(50)"), col("created_at", "timestamp without time zone"),
		col("event_context", "jsonb"), col("processed", "boolean"), generated, col("tenant", "integer")}
	tests := []struct {
		name       string
		stream     config.Stream
		cols       []catalogColumn
		pk         []string
		wantKey    string
		keyUUID    bool
		overriding bool
		wantFields []string // field=column
		wantExtra  []string
		wantErr    string
	}{
		{name: "the relay's own table", stream: config.Stream{Name: "default"}, cols: relay, pk: []string{"id"},
			wantKey: "id", keyUUID: true,
			wantFields: []string{"event_type=event_type", "event_date_time=event_date_time", "environment=environment",
				"event_context=event_context", "metadata_version=metadata_version"},
			wantExtra: []string{"user_id"}},
		{name: "an application's table: mapped, constants, ignored, generated", stream: config.Stream{Name: "app",
			Columns:   map[string]string{config.FieldEventType: "kind", config.FieldEventDateTime: "created_at"},
			Constants: map[string]string{config.FieldEnvironment: "prod", config.FieldMetadataVersion: "1"},
			Ignore:    []string{"processed"}},
			cols: django, pk: []string{"pk"}, wantKey: "pk", overriding: true,
			wantFields: []string{"event_type=kind", "event_date_time=created_at", "event_context=event_context"},
			wantExtra:  []string{"tenant"}},
		{name: "the id field mapped off the primary key", stream: config.Stream{Name: "app",
			Columns: map[string]string{config.FieldID: "user_id"}}, cols: relay, pk: []string{"id"},
			wantKey: "user_id", keyUUID: true,
			wantFields: []string{"event_type=event_type", "event_date_time=event_date_time", "environment=environment",
				"event_context=event_context", "metadata_version=metadata_version"},
			wantExtra: []string{"id"}},
		{name: "no column for a required field", stream: config.Stream{Name: "app"}, cols: django, pk: []string{"pk"},
			wantErr: `no column "event_type"`},
		{name: "no key column", stream: config.Stream{Name: "app"}, cols: relay[1:], wantErr: `no key column "id"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := &target{stream: tt.stream}
			err := tg.resolve(tt.cols, tt.pk)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolve: %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var fields, extra []string
			for _, f := range tg.fields {
				fields = append(fields, f.field+"="+f.column)
			}
			for _, c := range tg.extra {
				extra = append(extra, c.name)
			}
			if tg.key.name != tt.wantKey || tg.keyUUID != tt.keyUUID || tg.overriding != tt.overriding ||
				!slices.Equal(fields, tt.wantFields) || !slices.Equal(extra, tt.wantExtra) {
				t.Errorf("key %s (uuid %t, overriding %t), fields %q, extra %q; want %s (%t, %t), %q, %q",
					tg.key.name, tg.keyUUID, tg.overriding, fields, extra, tt.wantKey, tt.keyUUID, tt.overriding, tt.wantFields, tt.wantExtra)
			}
		})
	}
}
