package migrate_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/migrate"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
)

// The conformance suite on the in-process ClickHouse 26 engine (see
// internal/testenv/chdb.go): the DDL `relay migrate` renders for a
// current server.

// tableFacts reads what the engine made of a table.
func tableFacts(t *testing.T, eng *testenv.Engine, table string) (engine, create string) {
	t.Helper()
	rows := eng.Rows(t, "SELECT engine, create_table_query FROM system.tables WHERE database = currentDatabase() AND name = '"+table+"'")
	if len(rows) != 1 {
		t.Fatalf("table %s: %d rows in system.tables, want 1", table, len(rows))
	}
	return rows[0][0].(string), rows[0][1].(string)
}

// tableCount counts the database's tables (a second migrate adds none).
func tableCount(t *testing.T, eng *testenv.Engine) uint64 {
	t.Helper()
	return eng.Rows(t, "SELECT count() FROM system.tables WHERE database = currentDatabase()")[0][0].(uint64)
}

// Single and Cloud: `relay migrate` itself (its queries, its DDL) on the
// engine, then again (nothing to do: no table added, none recorded, as
// no numbered migration exists).
func TestConformanceMigrate(t *testing.T) {
	for _, top := range []topology.Topology{topology.Single, topology.Cloud} {
		t.Run(string(top), func(t *testing.T) {
			eng := testenv.NewEngine(t)
			eng.Database(t)
			ctx := context.Background()
			layout := topology.Layout{Topology: top}
			run := func(what string) {
				t.Helper()
				if err := migrate.ClickHouseOn(ctx, eng.Conn(), layout, zerolog.Nop()); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			}
			run("migrate")
			n := tableCount(t, eng)
			run("migrate again")
			if again := tableCount(t, eng); again != n {
				t.Fatalf("a second migrate left %d tables, the first %d", again, n)
			}
			if len(eng.Rows(t, "SELECT name FROM system.tables WHERE database = currentDatabase() AND name = 'schema_migrations'")) != 0 {
				t.Error("migrate made schema_migrations with no numbered migration to record")
			}

			engine, create := tableFacts(t, eng, "event_log")
			if engine != "ReplacingMergeTree" {
				t.Errorf("event_log engine %s, want ReplacingMergeTree", engine)
			}
			for _, want := range []string{"`event_date_time` DateTime64(6, 'UTC')", "ReplacingMergeTree(commit_lsn)"} {
				if !strings.Contains(create, want) {
					t.Errorf("event_log lacks %s:\n%s", want, create)
				}
			}
			dedup := "non_replicated_deduplication_window = 1000"
			if got := strings.Contains(create, dedup); got != (top == topology.Single) {
				t.Errorf("event_log has %s: %v, want %v (single only; Cloud deduplicates by itself):\n%s", dedup, got, top == topology.Single, create)
			}
			if engine, _ := tableFacts(t, eng, "event_log_dedup"); engine != "View" {
				t.Errorf("event_log_dedup engine %s, want View", engine)
			}
			eng.Exec(t, "SELECT * FROM event_log_dedup")
		})
	}
}

// settingNames finds the table settings a statement sets.
var settingNames = regexp.MustCompile(`(?m)^SETTINGS (\w+) =|\bMODIFY SETTING (\w+) =`)

// engineNames finds the table engines a statement names.
var engineNames = regexp.MustCompile(`ENGINE = (\w+)`)

// Replicated and sharded need Keeper and a cluster, which the engine has
// not: every statement is parsed and formatted by the engine
// (formatQuery), and every table engine and table setting it names must be
// one the engine has.
func TestConformanceMigrateClusterDDL(t *testing.T) {
	eng := testenv.NewEngine(t)
	v, err := eng.Conn().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	for _, top := range []topology.Topology{topology.Replicated, topology.Sharded} {
		t.Run(string(top), func(t *testing.T) {
			p := migrate.Params{Capabilities: migrate.CapabilitiesOf(*v), Layout: topology.Layout{Topology: top, Cluster: "prod"}, Database: "analytics"}
			stmts, err := migrate.Statements(p)
			if err != nil {
				t.Fatal(err)
			}
			engines, settings := 0, 0
			for _, s := range stmts {
				lit := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
				out, err := eng.Query("SELECT formatQuery("+lit+")", "TSVRaw")
				if err != nil {
					t.Errorf("the engine does not parse:\n%s\n-> %v", s, err)
					continue
				}
				if !strings.Contains(string(out), "ON CLUSTER prod") {
					t.Errorf("formatted without ON CLUSTER:\n%s", out)
				}
				for _, m := range engineNames.FindAllStringSubmatch(s, -1) {
					engines++
					if n := eng.Rows(t, "SELECT count() FROM system.table_engines WHERE name = '"+m[1]+"'")[0][0].(uint64); n != 1 {
						t.Errorf("the engine has no table engine %s:\n%s", m[1], s)
					}
				}
				for _, m := range settingNames.FindAllStringSubmatch(s, -1) {
					name := m[1] + m[2]
					settings++
					if n := eng.Rows(t, "SELECT count() FROM system.merge_tree_settings WHERE name = '"+name+"'")[0][0].(uint64); n != 1 {
						t.Errorf("the engine has no MergeTree setting %s:\n%s", name, s)
					}
				}
			}
			if engines == 0 || settings == 0 {
				t.Errorf("found %d table engines and %d settings in the DDL, want some of each", engines, settings)
			}
		})
	}
}
