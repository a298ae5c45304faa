package migrate

import (
	"io/fs"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/outbox-relay/relay/internal/topology"
	"github.com/outbox-relay/relay/migrations"
)

const eventLogMigration = eventTableFile

// column is one "name type" line of a CREATE TABLE.
type column struct{ name, typ string }

var columnLine = regexp.MustCompile(`^\s+(\w+)\s+(.+?),?$`)

// tableColumns parses the column list of a rendered CREATE TABLE.
func tableColumns(t *testing.T, stmt string) []column {
	t.Helper()
	open, end := strings.Index(stmt, "(\n"), strings.Index(stmt, "\n)")
	if open < 0 || end < open {
		t.Fatalf("no column list in %q", stmt)
	}
	var cols []column
	for _, line := range strings.Split(stmt[open+2:end], "\n") {
		m := columnLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unparsable column line %q", line)
		}
		cols = append(cols, column{m[1], m[2]})
	}
	return cols
}

func TestRenderEventLog(t *testing.T) {
	tests := []struct {
		name        string
		caps        Capabilities
		wantColumns []column
	}{
		{
			name: "DateTime64",
			caps: Capabilities{DateTime64: true},
			wantColumns: []column{
				{"event_id", "UUID"},
				{"event_type", "String"},
				{"event_date_time", "DateTime64(6, 'UTC')"},
				{"environment", "String"},
				{"event_context", "String"},
				{"metadata_version", "UInt64"},
				{"commit_lsn", "UInt64"},
				{"relayed_at", "DateTime('UTC') DEFAULT now()"},
			},
		},
		{
			name: "DateTime and microseconds (before 20.1)",
			caps: Capabilities{DateTime64: false},
			wantColumns: []column{
				{"event_id", "UUID"},
				{"event_type", "String"},
				{"event_date_time", "DateTime('UTC')"},
				{"event_date_time_us", "UInt32"},
				{"environment", "String"},
				{"event_context", "String"},
				{"metadata_version", "UInt64"},
				{"commit_lsn", "UInt64"},
				{"relayed_at", "DateTime('UTC') DEFAULT now()"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stmts, err := Render(eventLogMigration, Params{Capabilities: tt.caps, Layout: topology.Layout{Topology: topology.Single}, Table: "event_log"})
			if err != nil {
				t.Fatalf("Render() error = %v", err)
			}
			if len(stmts) != 2 {
				t.Fatalf("Render() = %d statements, want 2:\n%q", len(stmts), stmts)
			}
			table, view := stmts[0], stmts[1]
			if !strings.HasPrefix(table, "CREATE TABLE IF NOT EXISTS event_log (\n") {
				t.Errorf("first statement = %q, want CREATE TABLE IF NOT EXISTS event_log", table)
			}
			for _, clause := range []string{
				"ENGINE = ReplacingMergeTree(commit_lsn)",
				"PARTITION BY toYYYYMM(event_date_time)",
				"ORDER BY (event_type, event_date_time, event_id)",
			} {
				if !strings.Contains(table, "\n"+clause) {
					t.Errorf("CREATE TABLE lacks %q:\n%s", clause, table)
				}
			}
			if got := tableColumns(t, table); !slices.Equal(got, tt.wantColumns) {
				t.Errorf("columns = %v\nwant %v", got, tt.wantColumns)
			}
			if want := "CREATE VIEW IF NOT EXISTS event_log_dedup AS SELECT * FROM event_log FINAL"; view != want {
				t.Errorf("second statement = %q, want %q", view, want)
			}
		})
	}
}

// Every embedded migration renders for every capability into clean
// statements the server accepts one by one through Exec.
func TestRenderAll(t *testing.T) {
	files, err := fs.Glob(migrations.ClickHouse, "clickhouse/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no embedded ClickHouse migrations (err %v)", err)
	}
	for _, name := range files {
		for _, p := range allParams() {
			p.Table = "event_log"
			caps := p.Capabilities
			stmts, err := Render(name, p)
			if err != nil {
				t.Errorf("Render(%s, %+v) error = %v", name, p, err)
				continue
			}
			if len(stmts) == 0 && name == eventLogMigration {
				t.Errorf("Render(%s, %+v) = no statements", name, p)
			}
			for i, s := range stmts {
				switch {
				case s == "" || s != strings.TrimSpace(s):
					t.Errorf("%s statement %d has surrounding space: %q", name, i, s)
				case strings.Contains(s, ";"):
					t.Errorf("%s statement %d holds a ';' (two statements in one Exec): %q", name, i, s)
				case strings.Contains(s, "{{") || strings.Contains(s, "}}"):
					t.Errorf("%s statement %d holds template text: %q", name, i, s)
				case strings.Contains(s, "\n\n"):
					t.Errorf("%s statement %d holds a blank line: %q", name, i, s)
				}
				for _, line := range strings.Split(s, "\n") {
					if strings.HasPrefix(strings.TrimSpace(line), "--") {
						t.Errorf("%s statement %d holds a comment line %q", name, i, line)
					}
				}
				if !caps.DateTime64 && strings.Contains(s, "DateTime64") {
					t.Errorf("%s statement %d uses DateTime64 on a server without it: %q", name, i, s)
				}
			}
		}
	}
}

func TestRenderUnknownFile(t *testing.T) {
	if _, err := Render("clickhouse/9999_missing.sql", Params{}); err == nil {
		t.Error("Render() of a missing file = nil error")
	}
}

// ClickHouse applies files in name order: names must sort in version order
// and versions must be unique, or a migration would be skipped or reapplied.
func TestEmbeddedVersions(t *testing.T) {
	files, err := fs.Glob(migrations.ClickHouse, "clickhouse/[0-9]*.sql")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var last uint32
	for i, name := range files {
		v, err := versionOf(name)
		if err != nil {
			t.Fatalf("versionOf(%s) error = %v", name, err)
		}
		if i > 0 && v <= last {
			t.Errorf("%s has version %d, not above the previous file's %d", name, v, last)
		}
		last = v
	}
}

func TestVersionOf(t *testing.T) {
	tests := []struct {
		path    string
		want    uint32
		wantErr bool
	}{
		{path: "clickhouse/0001_event_log.sql", want: 1},
		{path: "clickhouse/0010_add_index.sql", want: 10},
		{path: "0002_no_dir.sql", want: 2},
		{path: "a/b/0123_deep_name_with_underscores.sql", want: 123},
		{path: "clickhouse/4294967295_max.sql", want: 4294967295},
		{path: "clickhouse/4294967296_too_big.sql", wantErr: true},
		{path: "clickhouse/event_log.sql", wantErr: true},
		{path: "clickhouse/_event_log.sql", wantErr: true},
		{path: "clickhouse/-1_negative.sql", wantErr: true},
		{path: "clickhouse/v1_prefixed.sql", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := versionOf(tt.path)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("versionOf() = %d, want an error", got)
				}
				if !strings.Contains(err.Error(), tt.path) {
					t.Errorf("error %q does not name the file", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("versionOf() = %d, %v, want %d", got, err, tt.want)
			}
		})
	}
}

func TestCapabilitiesOf(t *testing.T) {
	tests := []struct {
		major, minor uint64
		want         bool
	}{
		{18, 16, false},
		{19, 17, false},
		{20, 1, true},
		{20, 3, true},
		{23, 8, true},
		{24, 12, true},
	}
	for _, tt := range tests {
		v := driver.ServerVersion{Version: proto.Version{Major: tt.major, Minor: tt.minor, Patch: 1}}
		if got := CapabilitiesOf(v); got.DateTime64 != tt.want {
			t.Errorf("CapabilitiesOf(%d.%d).DateTime64 = %v, want %v", tt.major, tt.minor, got.DateTime64, tt.want)
		}
	}
	dedup := []struct {
		major, minor uint64
		want         bool
	}{{18, 16, false}, {21, 8, false}, {22, 1, false}, {22, 2, true}, {22, 10, true}, {23, 3, true}, {25, 3, true}}
	for _, tt := range dedup {
		v := driver.ServerVersion{Version: proto.Version{Major: tt.major, Minor: tt.minor}}
		if got := CapabilitiesOf(v); got.NonReplicatedDedup != tt.want {
			t.Errorf("CapabilitiesOf(%d.%d).NonReplicatedDedup = %v, want %v", tt.major, tt.minor, got.NonReplicatedDedup, tt.want)
		}
	}
}
