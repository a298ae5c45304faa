package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// loadStreams runs Load as relay run does (every flag registered), with
// file (when not empty) as RELAY_CONFIG relay.yaml.
func loadStreams(t *testing.T, file string, environ map[string]string, args ...string) ([]Stream, error) {
	t.Helper()
	env := map[string]string{}
	for k, v := range environ {
		env[k] = v
	}
	if file != "" {
		path := filepath.Join(t.TempDir(), "relay.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		env["RELAY_CONFIG"] = path
	}
	c := Defaults()
	fs := pflag.NewFlagSet("relay", pflag.ContinueOnError)
	RegisterFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	err := Load(fs, &c, env, NeedStream)
	return c.Streams(), err
}

func defaultStream(edit func(*Stream)) Stream {
	s := Stream{Name: DefaultStreamName, Outbox: DefaultOutboxTable, ClickHouseTable: DefaultClickHouseTable,
		Columns: map[string]string{}, Constants: map[string]string{}, MaxTables: DefaultMaxTables}
	if edit != nil {
		edit(&s)
	}
	return s
}

func TestSingleStream(t *testing.T) {
	tests := []struct {
		name         string
		environ      map[string]string
		args         []string
		want         Stream
		wantProblems []string
	}{
		{name: "defaults", want: defaultStream(nil)},
		{
			name: "a Django outbox",
			environ: map[string]string{
				"RELAY_OUTBOX_TABLE": "public.core_outboxevent", "RELAY_OUTBOX_COLUMNS": "event_date_time=created_at, event_context=payload",
				"RELAY_OUTBOX_CONSTANTS": "metadata_version=1", "RELAY_OUTBOX_IGNORE": "processed, updated_at",
			},
			want: defaultStream(func(s *Stream) {
				s.Outbox = "public.core_outboxevent"
				s.Columns = map[string]string{FieldEventDateTime: "created_at", FieldEventContext: "payload"}
				s.Constants = map[string]string{FieldMetadataVersion: "1"}
				s.Ignore = []string{"processed", "updated_at"}
			}),
		},
		{
			name: "flags over the environment", environ: map[string]string{"CLICKHOUSE_TABLE": "from_env"},
			args: []string{"--clickhouse-table=events_{event_type}", "--outbox-table=app.outbox"},
			want: defaultStream(func(s *Stream) { s.ClickHouseTable, s.Outbox = "events_{event_type}", "app.outbox" }),
		},
		{name: "empty outbox table", environ: map[string]string{"RELAY_OUTBOX_TABLE": ""},
			wantProblems: []string{"RELAY_OUTBOX_TABLE is required"}},
		{name: "outbox with two dots", environ: map[string]string{"RELAY_OUTBOX_TABLE": "db.public.outbox"},
			wantProblems: []string{`RELAY_OUTBOX_TABLE "db.public.outbox": more than one dot`}},
		{name: "outbox with a quote", environ: map[string]string{"RELAY_OUTBOX_TABLE": `out"box`},
			wantProblems: []string{"contains a double quote"}},
		{name: "outbox with NUL", environ: map[string]string{"RELAY_OUTBOX_TABLE": "out\x00box"},
			wantProblems: []string{"contains a control character"}},
		{name: "outbox with an empty schema", environ: map[string]string{"RELAY_OUTBOX_TABLE": ".outbox"},
			wantProblems: []string{"empty name"}},
		{name: "outbox name too long", environ: map[string]string{"RELAY_OUTBOX_TABLE": strings.Repeat("o", 64)},
			wantProblems: []string{"longer than 63 bytes"}},
		{name: "unknown field", environ: map[string]string{"RELAY_OUTBOX_COLUMNS": "event_time=created_at"},
			wantProblems: []string{`RELAY_OUTBOX_COLUMNS event_time: unknown field "event_time" (fields: id, event_type`}},
		{name: "not field=column", environ: map[string]string{"RELAY_OUTBOX_COLUMNS": "created_at"},
			wantProblems: []string{`RELAY_OUTBOX_COLUMNS: "created_at" is not field=value`}},
		{name: "a field given twice", environ: map[string]string{"RELAY_OUTBOX_COLUMNS": "id=a,id=b"},
			wantProblems: []string{"RELAY_OUTBOX_COLUMNS: id given twice"}},
		{name: "two fields from one column", environ: map[string]string{"RELAY_OUTBOX_COLUMNS": "event_date_time=ts,event_type=ts"},
			wantProblems: []string{`column "ts" already holds event_type`}},
		{name: "a field mapped onto another's default column", environ: map[string]string{"RELAY_OUTBOX_COLUMNS": "event_type=environment"},
			wantProblems: []string{`RELAY_OUTBOX_COLUMNS environment: column "environment" already holds event_type`}},
		{name: "the id mapped onto a column of the same name", environ: map[string]string{"RELAY_OUTBOX_COLUMNS": "id=event_type"},
			wantProblems: []string{`already holds id`}},
		{name: "a constant frees its column", environ: map[string]string{"RELAY_OUTBOX_COLUMNS": "event_type=environment", "RELAY_OUTBOX_CONSTANTS": "environment=prod"},
			want: defaultStream(func(s *Stream) {
				s.Columns = map[string]string{FieldEventType: "environment"}
				s.Constants = map[string]string{FieldEnvironment: "prod"}
			})},
		{name: "constant for a field that takes none", environ: map[string]string{"RELAY_OUTBOX_CONSTANTS": "event_type=x"},
			wantProblems: []string{"RELAY_OUTBOX_CONSTANTS event_type: only environment and metadata_version take a constant"}},
		{name: "metadata_version not a number", environ: map[string]string{"RELAY_OUTBOX_CONSTANTS": "metadata_version=one"},
			wantProblems: []string{`RELAY_OUTBOX_CONSTANTS metadata_version: "one" is not a whole number`}},
		{name: "both a column and a constant", environ: map[string]string{"RELAY_OUTBOX_COLUMNS": "environment=env", "RELAY_OUTBOX_CONSTANTS": "environment=prod"},
			wantProblems: []string{"environment has both a column (columns) and a constant"}},
		{name: "ignoring a column a field reads", environ: map[string]string{"RELAY_OUTBOX_IGNORE": "event_type"},
			wantProblems: []string{`RELAY_OUTBOX_IGNORE event_type: column "event_type" holds event_type`}},
		{name: "ignoring a column twice", environ: map[string]string{"RELAY_OUTBOX_IGNORE": "processed,processed"},
			wantProblems: []string{`"processed" listed twice`}},
		{name: "ClickHouse table with a dot", environ: map[string]string{"CLICKHOUSE_TABLE": "db.event_log"},
			wantProblems: []string{`CLICKHOUSE_TABLE "db.event_log": use letters, digits and underscores`}},
		{name: "ClickHouse table too long", environ: map[string]string{"CLICKHOUSE_TABLE": strings.Repeat("t", 201)},
			wantProblems: []string{"longer than 200 bytes"}},
		{name: "template by environment", environ: map[string]string{"CLICKHOUSE_TABLE": "{environment}_events"},
			want: defaultStream(func(s *Stream) { s.ClickHouseTable = "{environment}_events" })},
		{name: "template by an unroutable field", environ: map[string]string{"CLICKHOUSE_TABLE": "events_{id}"},
			wantProblems: []string{`a template routes by event_type or environment, not "id"`}},
		{name: "template with two fields", environ: map[string]string{"CLICKHOUSE_TABLE": "{environment}_{event_type}"},
			wantProblems: []string{"exactly one field in braces"}},
		{name: "template unclosed", environ: map[string]string{"CLICKHOUSE_TABLE": "events_{event_type"},
			wantProblems: []string{"exactly one field in braces"}},
		{name: "template with a bad literal", environ: map[string]string{"CLICKHOUSE_TABLE": "ev-ents_{event_type}"},
			wantProblems: []string{"around the braces use letters, digits and underscores"}},
		{
			name:         "every problem at once",
			environ:      map[string]string{"RELAY_OUTBOX_TABLE": `a"b`, "CLICKHOUSE_TABLE": "x{y}", "RELAY_OUTBOX_CONSTANTS": "id=1", "RELAY_OUTBOX_IGNORE": `p"`},
			wantProblems: []string{"RELAY_OUTBOX_TABLE", "CLICKHOUSE_TABLE", "RELAY_OUTBOX_CONSTANTS id", "RELAY_OUTBOX_IGNORE"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadStreams(t, "", tt.environ, tt.args...)
			assertProblems(t, err, tt.wantProblems)
			if tt.wantProblems == nil && !reflect.DeepEqual(got, []Stream{tt.want}) {
				t.Errorf("Streams() = %+v\nwant %+v", got, []Stream{tt.want})
			}
		})
	}
}

// The example, extended with constants, ignore and max_tables.
const exampleFile = `# two outboxes of one application
streams:
  - name: app
    outbox: public.core_outboxevent          # the outbox table
    columns: {event_date_time: created_at}   # relay field: outbox column
    constants:
      metadata_version: 1
    ignore: [processed]
    clickhouse_table: event_log
  - name: billing
    outbox: billing.outbox
    constants: {environment: "${BILLING_ENV}"}
    clickhouse_table: "billing_{event_type}" # routed: one table per value
    max_tables: 20
`

func TestStreamFile(t *testing.T) {
	app := Stream{Name: "app", Outbox: "public.core_outboxevent", Columns: map[string]string{FieldEventDateTime: "created_at"},
		Constants: map[string]string{FieldMetadataVersion: "1"}, Ignore: []string{"processed"}, ClickHouseTable: "event_log", MaxTables: DefaultMaxTables}
	billing := Stream{Name: "billing", Outbox: "billing.outbox", Constants: map[string]string{FieldEnvironment: "prod"},
		ClickHouseTable: "billing_{event_type}", MaxTables: 20}
	const one = "streams:\n  - name: s\n    outbox: o\n    clickhouse_table: t\n"
	tests := []struct {
		name         string
		file         string
		environ      map[string]string
		want         []Stream
		wantProblems []string
	}{
		{name: "the example", file: exampleFile, environ: map[string]string{"BILLING_ENV": "prod"}, want: []Stream{app, billing}},
		{name: "an unset variable", file: exampleFile,
			wantProblems: []string{"relay.yaml:12: constants.environment: environment variable BILLING_ENV is not set"}},
		{name: "one stream, defaults", file: one,
			want: []Stream{{Name: "s", Outbox: "o", ClickHouseTable: "t", MaxTables: DefaultMaxTables}}},
		{name: "$$ escapes a dollar, $ alone stays", file: "streams:\n  - name: s\n    outbox: o$$x$\n    clickhouse_table: t\n",
			want: []Stream{{Name: "s", Outbox: "o$x$", ClickHouseTable: "t", MaxTables: DefaultMaxTables}}},
		{name: "a variable in a table name", file: "streams:\n  - name: s\n    outbox: ${SCHEMA}.outbox\n    clickhouse_table: t_${ENV}\n",
			environ: map[string]string{"SCHEMA": "app", "ENV": "prod"},
			want:    []Stream{{Name: "s", Outbox: "app.outbox", ClickHouseTable: "t_prod", MaxTables: DefaultMaxTables}}},
		{name: "a bad variable reference", file: "streams:\n  - name: s\n    outbox: ${1X}\n    clickhouse_table: t\n",
			wantProblems: []string{"relay.yaml:3: outbox: \"${1X}\": ${1X} is not a variable name"}},
		{name: "an unclosed reference", file: "streams:\n  - name: s\n    outbox: ${X\n    clickhouse_table: t\n",
			wantProblems: []string{"relay.yaml:3: outbox: \"${X\": ${ without a closing }"}},
		{name: "a typo in a stream key", file: "streams:\n  - name: s\n    outbox: o\n    clickhouse_tabel: t\n",
			wantProblems: []string{
				`relay.yaml:4: unknown key "clickhouse_tabel" (known: name, outbox, columns, constants, ignore, clickhouse_table, max_tables)`,
				"relay.yaml:2: stream: clickhouse_table is required",
			}},
		{name: "a typo at the top", file: "stream:\n  - name: s\n",
			wantProblems: []string{`relay.yaml:1: unknown key "stream" (known: streams)`, "relay.yaml:1: no streams: key missing"}},
		{name: "a key twice", file: one + "    outbox: p\n",
			wantProblems: []string{`relay.yaml:5: key "outbox" given twice`}},
		{name: "a YAML syntax error", file: "streams:\n  - name: s\n    outbox: [o\n",
			wantProblems: []string{"relay.yaml:4: did not find expected ',' or ']'"}},
		{name: "bad indentation", file: "streams:\n  - name: s\n   outbox: o\n",
			wantProblems: []string{"relay.yaml:3: "}},
		{name: "an empty file", file: "# nothing\n",
			wantProblems: []string{"relay.yaml: the file is empty"}},
		{name: "two documents", file: one + "---\n" + one,
			wantProblems: []string{"relay.yaml:5: a second YAML document"}},
		{name: "a syntax error in the second document", file: one + "---\nstreams: [\n",
			wantProblems: []string{"relay.yaml:7: "}},
		{name: "an empty list", file: "streams: []\n",
			wantProblems: []string{"relay.yaml:1: streams: the list is empty"}},
		{name: "streams not a list", file: "streams:\n  name: s\n",
			wantProblems: []string{"relay.yaml:2: streams: want a list of streams"}},
		{name: "a stream not a mapping", file: "streams:\n  - s\n",
			wantProblems: []string{"relay.yaml:2: a stream is a mapping"}},
		{name: "a list where a value belongs", file: "streams:\n  - name: [s]\n    outbox: o\n    clickhouse_table: t\n",
			wantProblems: []string{"relay.yaml:2: name: want a single value, not a list"}},
		{name: "columns not a mapping", file: one + "    columns: [a]\n",
			wantProblems: []string{"relay.yaml:5: columns: want a mapping (field: value), not a list"}},
		{name: "ignore not a list", file: one + "    ignore: processed\n",
			wantProblems: []string{"relay.yaml:5: ignore: want a list ([a, b]), not a value"}},
		{name: "an unknown field, at its line", file: one + "    columns:\n      event_date_time: created_at\n      occurred_at: ts\n",
			wantProblems: []string{`relay.yaml:7: columns.occurred_at: unknown field "occurred_at"`}},
		{name: "a missing outbox, at the stream's line", file: "streams:\n  - name: s\n    clickhouse_table: t\n",
			wantProblems: []string{"relay.yaml:2: stream: outbox is required"}},
		{name: "a name with capitals", file: "streams:\n  - name: App\n    outbox: o\n    clickhouse_table: t\n",
			wantProblems: []string{`relay.yaml:2: name "App": use 1-63 lowercase letters`}},
		{name: "max_tables without a template", file: one + "    max_tables: 5\n",
			wantProblems: []string{"relay.yaml:5: max_tables: only for a template"}},
		{name: "max_tables out of range", file: "streams:\n  - name: s\n    outbox: o\n    clickhouse_table: t_{event_type}\n    max_tables: 10001\n",
			wantProblems: []string{"relay.yaml:5: max_tables: 10001 is not between 1 and 10000"}},
		{name: "max_tables not a number", file: "streams:\n  - name: s\n    outbox: o\n    clickhouse_table: t_{event_type}\n    max_tables: many\n",
			wantProblems: []string{"relay.yaml:5: max_tables: want a whole number"}},
		{name: "a bad template, at its line", file: "streams:\n  - name: s\n    outbox: o\n    clickhouse_table: t_{type}\n",
			wantProblems: []string{`relay.yaml:4: clickhouse_table "t_{type}": a template routes by event_type or environment`}},
		{name: "two streams with one name", file: one + "  - name: s\n    outbox: o2\n    clickhouse_table: t2\n",
			wantProblems: []string{`relay.yaml:5) have the same name`}},
		{name: "two streams on one outbox table", file: one + "  - name: s2\n    outbox: public.o\n    clickhouse_table: t2\n",
			wantProblems: []string{`relay.yaml:5) read the same outbox table public.o`}},
		{name: "two streams into one table, same fields", file: one + "  - name: s2\n    outbox: o2\n    columns: {event_type: kind}\n    clickhouse_table: t\n",
			want: []Stream{
				{Name: "s", Outbox: "o", ClickHouseTable: "t", MaxTables: DefaultMaxTables},
				{Name: "s2", Outbox: "o2", Columns: map[string]string{FieldEventType: "kind"}, ClickHouseTable: "t", MaxTables: DefaultMaxTables},
			}},
		// A constant stands in for a column: both streams still fill every
		// field (extra columns' types are checked against the catalog at start).
		{name: "two streams into one table, one with a constant", file: one + "  - name: s2\n    outbox: o2\n    constants: {environment: prod}\n    clickhouse_table: t\n",
			want: []Stream{
				{Name: "s", Outbox: "o", ClickHouseTable: "t", MaxTables: DefaultMaxTables},
				{Name: "s2", Outbox: "o2", Constants: map[string]string{FieldEnvironment: "prod"}, ClickHouseTable: "t", MaxTables: DefaultMaxTables},
			}},
		{name: "two streams into one template", file: "streams:\n  - {name: a, outbox: a, clickhouse_table: \"e_{event_type}\"}\n  - {name: b, outbox: b, constants: {environment: x}, clickhouse_table: \"e_{event_type}\"}\n",
			want: []Stream{
				{Name: "a", Outbox: "a", ClickHouseTable: "e_{event_type}", MaxTables: DefaultMaxTables},
				{Name: "b", Outbox: "b", Constants: map[string]string{FieldEnvironment: "x"}, ClickHouseTable: "e_{event_type}", MaxTables: DefaultMaxTables},
			}},
		{name: "a YAML anchor", file: "x: &cols {event_date_time: created_at}\n",
			wantProblems: []string{`relay.yaml:1: unknown key "x"`, "no streams"}},
		{name: "an alias as a stream's columns", file: "streams:\n  - {name: a, outbox: a, clickhouse_table: t, columns: &c {event_type: kind}}\n  - {name: b, outbox: b, clickhouse_table: u, columns: *c}\n",
			want: []Stream{
				{Name: "a", Outbox: "a", Columns: map[string]string{FieldEventType: "kind"}, ClickHouseTable: "t", MaxTables: DefaultMaxTables},
				{Name: "b", Outbox: "b", Columns: map[string]string{FieldEventType: "kind"}, ClickHouseTable: "u", MaxTables: DefaultMaxTables},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadStreams(t, tt.file, tt.environ)
			assertProblems(t, err, tt.wantProblems)
			if tt.wantProblems == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Streams() = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestStreamFilePrecedence(t *testing.T) {
	const one = "streams:\n  - name: app\n    outbox: core_outboxevent\n    columns: {event_date_time: created_at}\n    clickhouse_table: event_log\n"
	const two = one + "  - name: billing\n    outbox: billing.outbox\n    clickhouse_table: billing\n"
	fromFile := Stream{Name: "app", Outbox: "core_outboxevent", Columns: map[string]string{FieldEventDateTime: "created_at"},
		ClickHouseTable: "event_log", MaxTables: DefaultMaxTables}
	tests := []struct {
		name         string
		file         string
		environ      map[string]string
		args         []string
		want         func(*Stream) // edits fromFile
		wantProblems []string
	}{
		{name: "the file alone", file: one, want: func(*Stream) {}},
		{name: "defaults do not override", file: one, environ: map[string]string{"RELAY_SLOT": "s"}, want: func(*Stream) {}},
		{name: "the environment overrides the only stream", file: one,
			environ: map[string]string{"RELAY_OUTBOX_TABLE": "app.outbox", "RELAY_OUTBOX_CONSTANTS": "metadata_version=2", "RELAY_OUTBOX_IGNORE": "processed"},
			want: func(s *Stream) {
				s.Outbox, s.Constants, s.Ignore = "app.outbox", map[string]string{FieldMetadataVersion: "2"}, []string{"processed"}
			}},
		{name: "a setting given at its default value still overrides", file: one,
			args: []string{"--clickhouse-table=event_log", "--outbox-table=outbox_event"},
			want: func(s *Stream) { s.Outbox = "outbox_event" }},
		{name: "the column map is replaced, not merged", file: one, environ: map[string]string{"RELAY_OUTBOX_COLUMNS": "event_context=payload"},
			want: func(s *Stream) { s.Columns = map[string]string{FieldEventContext: "payload"} }},
		{name: "an override is checked under its own name", file: one, args: []string{"--clickhouse-table=a.b"},
			wantProblems: []string{`CLICKHOUSE_TABLE "a.b": use letters`}},
		{name: "an override replaces a value the file could not give", file: "streams:\n  - name: app\n    outbox: ${NOPE}\n    clickhouse_table: t\n",
			environ:      map[string]string{"RELAY_OUTBOX_TABLE": ""},
			args:         []string{"--outbox-table=o"},
			wantProblems: []string{"relay.yaml:3: outbox: environment variable NOPE is not set"}},
		{name: "an override with several streams", file: two,
			environ: map[string]string{"RELAY_OUTBOX_TABLE": "x", "CLICKHOUSE_TABLE": "event_log"}, args: []string{"--outbox-ignore=p"},
			wantProblems: []string{
				"RELAY_OUTBOX_TABLE (--outbox-table) is set, but",
				"CLICKHOUSE_TABLE (--clickhouse-table) is set, but",
				"relay.yaml has 2 streams: set ignore in the file, per stream",
			}},
		{name: "an empty setting overrides nothing", file: two, environ: map[string]string{"RELAY_OUTBOX_COLUMNS": ""}},
		{name: "a missing file", environ: map[string]string{"RELAY_CONFIG": "/nonexistent/relay.yaml"},
			wantProblems: []string{"/nonexistent/relay.yaml: RELAY_CONFIG (--config): no such file"}},
		{name: "the file by flag", args: []string{"--config=/nonexistent/flag.yaml"}, environ: map[string]string{"RELAY_CONFIG": "/nonexistent/env.yaml"},
			wantProblems: []string{"/nonexistent/flag.yaml: RELAY_CONFIG (--config): no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadStreams(t, tt.file, tt.environ, tt.args...)
			assertProblems(t, err, tt.wantProblems)
			if tt.wantProblems != nil || tt.want == nil {
				return
			}
			want := fromFile
			tt.want(&want)
			if !reflect.DeepEqual(got, []Stream{want}) {
				t.Errorf("Streams() = %+v\nwant %+v", got, []Stream{want})
			}
		})
	}
}

func TestExpand(t *testing.T) {
	environ := map[string]string{"A": "x", "EMPTY": "", "B_2": "y"}
	tests := []struct{ in, want, wantErr string }{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "x"},
		{in: "p_${A}_${B_2}", want: "p_x_y"},
		{in: "${EMPTY}", want: ""},
		{in: "$$", want: "$"},
		{in: "$${A}", want: "${A}"},
		{in: "a$b$", want: "a$b$"},
		{in: "${UNSET}_${ALSO}", wantErr: "environment variable ALSO, UNSET is not set"},
		{in: "${A", wantErr: "without a closing }"},
		{in: "${A-B}", wantErr: "${A-B} is not a variable name"},
		{in: "${}", wantErr: "${} is not a variable name"},
	}
	for _, tt := range tests {
		got, err := expand(tt.in, environ)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("expand(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// The process environment is never read: ${VAR} comes from the map Load
// was given.
func TestStreamFileIgnoresProcessEnvironment(t *testing.T) {
	t.Setenv("RELAY_TEST_ONLY_IN_PROCESS", "x")
	_, err := loadStreams(t, "streams:\n  - {name: a, outbox: \"o_${RELAY_TEST_ONLY_IN_PROCESS}\", clickhouse_table: t}\n", nil)
	assertProblems(t, err, []string{"RELAY_TEST_ONLY_IN_PROCESS is not set"})
}

// Validate without Resolve reads the file itself, with no environment.
func TestValidateReadsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte("streams:\n  - {name: a, outbox: o, clickhouse_table: t}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := validConfig()
	c.ConfigFile = path
	if err := c.Validate(NeedPostgres); err != nil {
		t.Fatal(err)
	}
	if got := c.Streams(); len(got) != 1 || got[0].Name != "a" {
		t.Errorf("Streams() = %+v, want the file's stream a", got)
	}
}

// Streams are made only for the commands that read the outbox.
func TestStreamsOnlyWhenNeeded(t *testing.T) {
	c := validConfig()
	c.ConfigFile = "/nonexistent/relay.yaml"
	if err := c.Validate(NeedClickHouse); err != nil {
		t.Errorf("Validate(NeedClickHouse) = %v, want nil (no streams needed)", err)
	}
	if err := c.Validate(NeedPostgres); err == nil {
		t.Error("Validate(NeedPostgres) = nil, want the missing file")
	}
}

// The README's example is a valid file and means what its comments say.
func TestREADMEStreamsExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n### Streams\n")
	_, block, ok2 := strings.Cut(section, "```yaml\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no yaml block under ### Streams")
	}
	got, err := loadStreams(t, block, map[string]string{"BILLING_SCHEMA": "billing"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Stream{
		{Name: "app", Outbox: "public.core_outboxevent", Columns: map[string]string{FieldEventDateTime: "created_at"},
			Constants: map[string]string{FieldMetadataVersion: "1"}, Ignore: []string{"processed"}, ClickHouseTable: "event_log", MaxTables: DefaultMaxTables},
		{Name: "billing", Outbox: "billing.outbox", Constants: map[string]string{FieldEnvironment: "production"},
			ClickHouseTable: "billing_{event_type}", MaxTables: 20},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Streams() = %+v\nwant %+v", got, want)
	}
}

// A file that gives no streams is its own problem; an override adds none.
func TestOverrideOfAnUnreadableFile(t *testing.T) {
	_, err := loadStreams(t, "streams: [\n", map[string]string{"RELAY_OUTBOX_TABLE": "x"})
	assertProblems(t, err, []string{"relay.yaml:2: "})
}

func TestStreamTemplate(t *testing.T) {
	for table, want := range map[string]bool{"event_log": false, "events_{event_type}": true, "{event_type}": true,
		"events_{": false, "a}b{": false} {
		s := Stream{ClickHouseTable: table}
		if got := s.Routed(); got != want {
			t.Errorf("Stream{ClickHouseTable: %q}.Routed() = %t, want %t", table, got, want)
		}
	}
	s := Stream{ClickHouseTable: "log_{event_type}_v1"}
	if p, f, x, ok := s.Template(); p != "log_" || f != "event_type" || x != "_v1" || !ok {
		t.Errorf("Template() = %q %q %q %t", p, f, x, ok)
	}
	for table, want := range map[string]bool{"log_a_v1": true, "log__v1": false, "log_a_v2": false, "event_log": false} {
		if got := s.RoutesTo(table); got != want {
			t.Errorf("RoutesTo(%q) = %t, want %t", table, got, want)
		}
	}
}
