package config

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of a stream's names.
const (
	// MaxClickHouseTableLen bounds CLICKHOUSE_TABLE and a template as
	// written (a routed value is checked when it arrives).
	MaxClickHouseTableLen = 200
	// MaxMaxTables bounds a template's max_tables.
	MaxMaxTables = 10000
	// maxPGName is PostgreSQL's NAMEDATALEN-1: longer names are truncated.
	maxPGName = 63
)

var (
	streamName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	chLiteral  = regexp.MustCompile(`^[A-Za-z0-9_]*$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Fields are the relay's fields, in the order messages list them.
func Fields() []string {
	return []string{FieldID, FieldEventType, FieldEventDateTime, FieldEnvironment, FieldEventContext, FieldMetadataVersion}
}

// RoutingFields are the fields a ClickHouse table template may name.
func RoutingFields() []string { return []string{FieldEventType, FieldEnvironment} }

// constantFields may take a constant (the outbox table may lack them).
func constantFields() []string { return []string{FieldEnvironment, FieldMetadataVersion} }

// origin says where a stream's settings came from, so that a message
// points at them: lines of the config file, or the settings
// (RELAY_OUTBOX_TABLE, ...) that gave a key.
type origin struct {
	file  string
	line  int               // the stream's item in the file
	lines map[string]int    // key, or key/entry, -> line
	env   map[string]string // key -> the setting that gave it
	// failed keys (or key/entry) were reported as unreadable already: no
	// second message about the value they lack.
	failed map[string]bool
}

// located is a stream and where it came from.
type located struct {
	Stream
	origin
}

// at names key (and one entry of it, when entry is not empty) for a message.
func (o origin) at(key, entry string) string {
	if setting, ok := o.env[key]; ok {
		if entry != "" {
			return setting + " " + entry
		}
		return setting
	}
	line := o.lines[key]
	if l, ok := o.lines[key+"/"+entry]; ok && entry != "" {
		line = l
	}
	if line == 0 {
		line = o.line
	}
	if entry != "" {
		key += "." + entry
	}
	return fmt.Sprintf("%s:%d: %s", o.file, line, key)
}

// missing is the message for a required key that is absent or empty.
func (o origin) missing(key string) error {
	if setting, ok := o.env[key]; ok {
		return fmt.Errorf("%s is required", setting)
	}
	line := o.lines[key]
	if line == 0 {
		line = o.line
	}
	return fmt.Errorf("%s:%d: stream: %s is required", o.file, line, key)
}

// where names the stream in a message about two streams.
func (l *located) where() string {
	if l.file == "" {
		return fmt.Sprintf("stream %q", l.Name)
	}
	return fmt.Sprintf("stream %q (%s:%d)", l.Name, l.file, l.line)
}

// check reports every problem of one stream and sets MaxTables' default.
func (l *located) check() []error {
	var p []error
	add := func(key, entry, format string, args ...any) {
		if !l.failed[key] && !l.failed[key+"/"+entry] {
			p = append(p, fmt.Errorf("%s: %s", l.at(key, entry), fmt.Sprintf(format, args...)))
		}
	}
	// bad is add for a value: KEY "value": problem.
	bad := func(key, value string, err error) {
		if !l.failed[key] {
			p = append(p, fmt.Errorf("%s %q: %w", l.at(key, ""), value, err))
		}
	}
	missing := func(key string) {
		if !l.failed[key] {
			p = append(p, l.missing(key))
		}
	}
	switch {
	case l.Name == "":
		missing("name")
	case !streamName.MatchString(l.Name):
		bad("name", l.Name, errors.New("use 1-63 lowercase letters, digits or underscores (it labels metrics and dead letters)"))
	}
	if l.Outbox == "" {
		missing("outbox")
	} else if err := checkOutbox(l.Outbox); err != nil {
		bad("outbox", l.Outbox, err)
	}
	template := false
	if l.ClickHouseTable == "" {
		missing("clickhouse_table")
	} else {
		var err error
		if template, err = checkClickHouseTable(l.ClickHouseTable); err != nil {
			bad("clickhouse_table", l.ClickHouseTable, err)
		}
	}
	switch {
	case l.MaxTables != 0 && !template:
		add("max_tables", "", "only for a template clickhouse_table (such as events_{event_type})")
	case l.MaxTables == 0:
		l.MaxTables = DefaultMaxTables
	case l.MaxTables < 1 || l.MaxTables > MaxMaxTables:
		add("max_tables", "", "%d is not between 1 and %d", l.MaxTables, MaxMaxTables)
	}
	l.checkColumns(add)
	return p
}

// checkColumns checks columns, constants and ignore together: each outbox
// column feeds one field at most, and an ignored column feeds none.
func (l *located) checkColumns(add func(key, entry, format string, args ...any)) {
	for _, f := range slices.Sorted(maps.Keys(l.Columns)) {
		col := l.Columns[f]
		if !slices.Contains(Fields(), f) {
			add("columns", f, "unknown field %q (fields: %s)", f, strings.Join(Fields(), ", "))
		} else if err := checkPGName(col); err != nil {
			add("columns", f, "column %q: %v", col, err)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(l.Constants)) {
		v := l.Constants[f]
		switch {
		case !slices.Contains(constantFields(), f):
			add("constants", f, "only %s take a constant", strings.Join(constantFields(), " and "))
		case hasKey(l.Columns, f):
			add("constants", f, "%s has both a column (columns) and a constant: give one", f)
		case f == FieldMetadataVersion:
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				add("constants", f, "%q is not a whole number", v)
			}
		}
	}
	readBy := map[string]string{} // column -> field
	for _, f := range Fields() {
		if hasKey(l.Constants, f) || (f == FieldID && !hasKey(l.Columns, f)) {
			continue // the id's column defaults to the primary key, whatever its name
		}
		col := l.Column(f)
		if other, dup := readBy[col]; dup {
			add("columns", f, "column %q already holds %s: one column feeds one field", col, other)
		}
		readBy[col] = f
	}
	seen := map[string]bool{}
	for _, col := range l.Ignore {
		switch err := checkPGName(col); {
		case err != nil:
			add("ignore", col, "column %q: %v", col, err)
		case seen[col]:
			add("ignore", col, "%q listed twice", col)
		case readBy[col] != "":
			add("ignore", col, "column %q holds %s: it cannot be ignored", col, readBy[col])
		}
		seen[col] = true
	}
}

// checkStreams checks each stream and then the streams together: names
// and outbox tables are unique. (Streams sharing a ClickHouse table are
// checked against the catalog at start: replication.SharedTables.)
func checkStreams(ls []located) []error {
	var p []error
	for i := range ls {
		p = append(p, ls[i].check()...)
	}
	names, outboxes := map[string]int{}, map[string]int{}
	for i := range ls {
		l := &ls[i]
		if j, dup := names[l.Name]; dup && l.Name != "" {
			p = append(p, fmt.Errorf("%s and %s have the same name", ls[j].where(), l.where()))
		} else {
			names[l.Name] = i
		}
		if j, dup := outboxes[qualified(l.Outbox)]; dup && l.Outbox != "" {
			p = append(p, fmt.Errorf("%s and %s read the same outbox table %s: one stream per outbox table", ls[j].where(), l.where(), qualified(l.Outbox)))
		} else {
			outboxes[qualified(l.Outbox)] = i
		}
	}
	return p
}

// qualified is an outbox table with the schema PostgreSQL's default
// search_path gives an unqualified name, for comparing two streams'.
func qualified(table string) string {
	if strings.Contains(table, ".") {
		return table
	}
	return "public." + table
}

// checkOutbox checks a table name, optionally schema-qualified, as the relay
// quotes it (so case is kept).
func checkOutbox(table string) error {
	parts := strings.Split(table, ".")
	if len(parts) > 2 {
		return errors.New("more than one dot: write table or schema.table")
	}
	for _, part := range parts {
		if err := checkPGName(part); err != nil {
			return err
		}
	}
	return nil
}

// checkPGName checks one PostgreSQL identifier as the relay quotes it:
// anything but a double quote or a control character (NUL among them),
// and short enough not to be truncated.
func checkPGName(s string) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case len(s) > maxPGName:
		return fmt.Errorf("longer than %d bytes (PostgreSQL would truncate it)", maxPGName)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case strings.ContainsRune(s, '"'):
		return errors.New("contains a double quote")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("contains a control character")
	case strings.TrimSpace(s) != s:
		return errors.New("starts or ends with a space")
	}
	return nil
}

// checkClickHouseTable checks a table name or a template naming one routing
// field in braces, and says which it is.
func checkClickHouseTable(t string) (template bool, err error) {
	if len(t) > MaxClickHouseTableLen {
		return false, fmt.Errorf("longer than %d bytes", MaxClickHouseTableLen)
	}
	open, end := strings.IndexByte(t, '{'), strings.IndexByte(t, '}')
	if open < 0 && end < 0 {
		if !chLiteral.MatchString(t) {
			return false, errors.New("use letters, digits and underscores (or a template such as events_{event_type})")
		}
		return false, nil
	}
	if open < 0 || end < open || strings.Count(t, "{") != 1 || strings.Count(t, "}") != 1 {
		return true, errors.New("a template names exactly one field in braces, such as events_{event_type}")
	}
	if field := t[open+1 : end]; !slices.Contains(RoutingFields(), field) {
		return true, fmt.Errorf("a template routes by %s, not %q", strings.Join(RoutingFields(), " or "), field)
	}
	if !chLiteral.MatchString(t[:open]) || !chLiteral.MatchString(t[end+1:]) {
		return true, errors.New("around the braces use letters, digits and underscores")
	}
	return true, nil
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}
