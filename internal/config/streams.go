package config

import (
	"fmt"
	"strings"
)

// A Stream is one outbox table delivered to one ClickHouse table (or, when
// ClickHouseTable is a template, to a routed family of tables). One slot
// and one publication serve every stream of a relay.
type Stream struct {
	// Name labels the stream in metrics, logs, dead letters and status;
	// "default" for the stream of RELAY_OUTBOX_TABLE.
	Name string
	// Outbox is the outbox table, schema-qualified when the config names a
	// schema (e.g. "public.core_outboxevent" or "outbox_event").
	Outbox string
	// Columns maps a relay field (FieldID, FieldEventType, ...) onto the
	// outbox column that holds it; a field not in the map uses its own
	// name. FieldID defaults to the table's primary key.
	Columns map[string]string
	// Constants holds a value for FieldEnvironment or FieldMetadataVersion
	// when the outbox table has no such column.
	Constants map[string]string
	// Ignore lists outbox columns the relay neither carries nor refuses
	// (e.g. a polling worker's processed flag).
	Ignore []string
	// ClickHouseTable is the destination table, or a template naming one
	// relay field in braces (events_{event_type}).
	ClickHouseTable string
	// MaxTables bounds the tables a template may create; an event past the
	// limit is dead-lettered with a message naming it.
	MaxTables int
}

// The relay's fields: what an outbox row carries into ClickHouse.
const (
	FieldID              = "id"
	FieldEventType       = "event_type"
	FieldEventDateTime   = "event_date_time"
	FieldEnvironment     = "environment"
	FieldEventContext    = "event_context"
	FieldMetadataVersion = "metadata_version"
)

// DefaultStreamName names the stream of RELAY_OUTBOX_TABLE.
const DefaultStreamName = "default"

// DefaultMaxTables is a template's table limit unless the config says.
const DefaultMaxTables = 100

// Column is the outbox column that holds field.
func (s *Stream) Column(field string) string {
	if c, ok := s.Columns[field]; ok {
		return c
	}
	return field
}

// Streams are the relay's streams: the config file's, or the one of
// RELAY_OUTBOX_TABLE, CLICKHOUSE_TABLE and RELAY_OUTBOX_COLUMNS. Load
// (Validate) has checked them.
func (c *Config) Streams() []Stream {
	return c.streams
}

// singleStream is the stream of RELAY_OUTBOX_TABLE, CLICKHOUSE_TABLE,
// RELAY_OUTBOX_COLUMNS, RELAY_OUTBOX_CONSTANTS and RELAY_OUTBOX_IGNORE.
func (c *Config) singleStream() (Stream, []error) {
	var p []error
	s := Stream{Name: DefaultStreamName, Outbox: c.OutboxTable, ClickHouseTable: c.ClickHouseTable, MaxTables: DefaultMaxTables}
	var err error
	if s.Columns, err = pairs(c.OutboxColumns); err != nil {
		p = append(p, fmt.Errorf("RELAY_OUTBOX_COLUMNS: %w", err))
	}
	if s.Constants, err = pairs(c.OutboxConstants); err != nil {
		p = append(p, fmt.Errorf("RELAY_OUTBOX_CONSTANTS: %w", err))
	}
	for _, col := range strings.Split(c.OutboxIgnore, ",") {
		if col = strings.TrimSpace(col); col != "" {
			s.Ignore = append(s.Ignore, col)
		}
	}
	return s, p
}

// pairs parses "k=v,k=v".
func pairs(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q is not field=value", kv)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("%s given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

// DefaultStreams is the one stream of the default settings: outbox_event
// into event_log, every column under its own name.
func DefaultStreams() []Stream {
	return []Stream{{Name: DefaultStreamName, Outbox: DefaultOutboxTable, ClickHouseTable: DefaultClickHouseTable, MaxTables: DefaultMaxTables}}
}
