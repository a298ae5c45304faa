package config

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
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

// Streams are the relay's streams: the config file's (RELAY_CONFIG), or
// the one of RELAY_OUTBOX_TABLE, CLICKHOUSE_TABLE, RELAY_OUTBOX_COLUMNS,
// RELAY_OUTBOX_CONSTANTS and RELAY_OUTBOX_IGNORE. Validate has checked them
// (with NeedPostgres or NeedStream); MaxTables is set.
func (c *Config) Streams() []Stream {
	return c.streams
}

// StreamFlags are the flags of the settings that make the streams: every
// command that reads the outbox registers them.
func StreamFlags() []string {
	return []string{"config", "outbox-table", "clickhouse-table", "outbox-columns", "outbox-constants", "outbox-ignore"}
}

// A streamSetting is one of the settings of the single stream, which also
// override a config file's only stream.
type streamSetting struct {
	key, env, flag string // key: the config file's
	value, def     string
}

func (c *Config) streamSettings() []streamSetting {
	return []streamSetting{
		{"outbox", "RELAY_OUTBOX_TABLE", "outbox-table", c.OutboxTable, DefaultOutboxTable},
		{"clickhouse_table", "CLICKHOUSE_TABLE", "clickhouse-table", c.ClickHouseTable, DefaultClickHouseTable},
		{"columns", "RELAY_OUTBOX_COLUMNS", "outbox-columns", c.OutboxColumns, ""},
		{"constants", "RELAY_OUTBOX_CONSTANTS", "outbox-constants", c.OutboxConstants, ""},
		{"ignore", "RELAY_OUTBOX_IGNORE", "outbox-ignore", c.OutboxIgnore, ""},
	}
}

// given says the setting was set, not left at its default: on the command
// line or in the environment (as Resolve recorded), or to another value.
func (c *Config) given(s streamSetting) bool {
	return s.value != "" && (c.explicit[s.env] || s.value != s.def)
}

// buildStreams makes and checks the streams (Validate).
func (c *Config) buildStreams() ([]Stream, []error) {
	var ls []located
	var p []error
	if c.ConfigFile == "" {
		ls = []located{{Stream: Stream{Name: DefaultStreamName}, origin: origin{env: map[string]string{}}}}
		p = c.applySettings(&ls[0], false)
	} else {
		f := c.file
		if f == nil || f.path != c.ConfigFile {
			f = readStreamFile(c.ConfigFile, nil) // not through Resolve: no environment to expand from
		}
		p = append(p, f.problems...)
		for _, fs := range f.streams {
			ls = append(ls, located{Stream: fs.Stream, origin: origin{file: f.path, line: fs.line, lines: fs.lines, failed: fs.failed, env: map[string]string{}}})
		}
		p = append(p, c.override(ls)...)
	}
	p = append(p, checkStreams(ls)...)
	out := make([]Stream, len(ls))
	for i := range ls {
		out[i] = ls[i].Stream
	}
	return out, p
}

// override applies the settings given explicitly to the file's only
// stream; with several streams they are ambiguous, so an error.
func (c *Config) override(ls []located) []error {
	switch len(ls) {
	case 0:
		return nil // the file's problem says why
	case 1:
		return c.applySettings(&ls[0], true)
	}
	var p []error
	for _, s := range c.streamSettings() {
		if c.given(s) {
			p = append(p, fmt.Errorf("%s (--%s) is set, but %s has %d streams: set %s in the file, per stream",
				s.env, s.flag, c.ConfigFile, len(ls), s.key))
		}
	}
	return p
}

// applySettings sets l from the single-stream settings: all of them, or
// (onlyGiven, over a file's stream) those given explicitly.
func (c *Config) applySettings(l *located, onlyGiven bool) []error {
	var p []error
	for _, s := range c.streamSettings() {
		if onlyGiven && !c.given(s) {
			continue
		}
		l.env[s.key] = s.env
		delete(l.failed, s.key) // the setting replaces what the file could not give
		var err error
		switch s.key {
		case "outbox":
			l.Outbox = s.value
		case "clickhouse_table":
			l.ClickHouseTable = s.value
		case "columns":
			l.Columns, err = pairs(s.value)
		case "constants":
			l.Constants, err = pairs(s.value)
		case "ignore":
			l.Ignore = list(s.value)
		}
		if err != nil {
			p = append(p, fmt.Errorf("%s: %w", s.env, err))
		}
	}
	return p
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

// list parses "a,b".
func list(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// OutboxRegclass is Outbox as SQL spells the name the configuration
// means: each part quoted (case counts), for to_regclass($1); an
// unqualified name is found on the search_path.
func (s *Stream) OutboxRegclass() string {
	return pgx.Identifier(strings.Split(s.Outbox, ".")).Sanitize()
}

// Template splits a template ClickHouse table (events_{event_type}) around
// its field: prefix, field, suffix; ok is false for a plain table.
func (s *Stream) Template() (prefix, field, suffix string, ok bool) {
	t := s.ClickHouseTable
	open := strings.IndexByte(t, '{')
	end := strings.IndexByte(t, '}')
	if open < 0 || end < open {
		return "", "", "", false
	}
	return t[:open], t[open+1 : end], t[end+1:], true
}

// Routed says the stream's ClickHouse table is a template.
func (s *Stream) Routed() bool {
	_, _, _, ok := s.Template()
	return ok
}

// RoutesTo says table is one the stream's template could have made (a
// value between its prefix and suffix).
func (s *Stream) RoutesTo(table string) bool {
	prefix, _, suffix, ok := s.Template()
	return ok && len(table) > len(prefix)+len(suffix) && strings.HasPrefix(table, prefix) && strings.HasSuffix(table, suffix)
}
