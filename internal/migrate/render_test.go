package migrate

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/outbox-relay/relay/internal/topology"
	"github.com/outbox-relay/relay/migrations"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden is one topology on one server version: every migration and the
// schema_migrations table, as `relay migrate` would send them.
type golden struct {
	file     string
	layout   topology.Layout
	version  proto.Version
	database string
}

// goldens: each topology on the oldest server it must work on (18.16,
// here) and on current ones; Cloud only current.
var goldens = []golden{
	{"single_18.16", topology.Layout{Topology: topology.Single}, proto.Version{Major: 18, Minor: 16, Patch: 1}, "relay"},
	{"single_21.8", topology.Layout{Topology: topology.Single}, proto.Version{Major: 21, Minor: 8}, "relay"},
	{"single_24.8", topology.Layout{Topology: topology.Single}, proto.Version{Major: 24, Minor: 8}, "relay"},
	{"replicated_18.16", topology.Layout{Topology: topology.Replicated, Cluster: "relay_cluster"}, proto.Version{Major: 18, Minor: 16, Patch: 1}, "relay"},
	{"replicated_24.8", topology.Layout{Topology: topology.Replicated, Cluster: "prod"}, proto.Version{Major: 24, Minor: 8}, "analytics"},
	{"sharded_18.16", topology.Layout{Topology: topology.Sharded, Cluster: "relay_cluster"}, proto.Version{Major: 18, Minor: 16, Patch: 1}, "relay"},
	{"sharded_25.3", topology.Layout{Topology: topology.Sharded, Cluster: "prod"}, proto.Version{Major: 25, Minor: 3}, "analytics"},
	{"cloud_25.8", topology.Layout{Topology: topology.Cloud}, proto.Version{Major: 25, Minor: 8}, "default"},
}

func (g golden) params() Params {
	return Params{Capabilities: CapabilitiesOf(driver.ServerVersion{Version: g.version}), Layout: g.layout, Database: g.database}
}

// render is everything migrate sends for g, statements separated by ";\n\n".
func (g golden) render(t *testing.T) string {
	t.Helper()
	p := g.params()
	out := []string{"-- " + chMigrationsTable, migrationsTableDDL(p) + ";"}
	files, err := fs.Glob(migrations.ClickHouse, "clickhouse/[0-9]*.sql")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	files = append(files, eventTableFile) // for the default table
	p.Table = DefaultTable
	for _, name := range files {
		stmts, err := Render(name, p)
		if err != nil {
			t.Fatalf("Render(%s, %s) error = %v", name, g.file, err)
		}
		out = append(out, "-- "+name)
		for _, s := range stmts {
			out = append(out, s+";")
		}
	}
	return strings.Join(out, "\n\n") + "\n"
}

// The rendered DDL of every topology and server version, against golden
// files (go test ./internal/migrate -run Golden -update rewrites them;
// review the diff).
func TestRenderGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			got := g.render(t)
			path := filepath.Join("testdata", g.file+".sql")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("rendered DDL differs from %s (run with -update and review the diff):\n%s", path, got)
			}
		})
	}
}

// What each topology must and must not say, beyond the golden text: the
// rules a reviewer checks.
func TestRenderTopologyRules(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			ddl := g.render(t)
			has := func(s string) bool { return strings.Contains(ddl, s) }
			must := func(cond bool, format string, args ...any) {
				if !cond {
					t.Errorf(format+"\n%s", append(args, ddl)...)
				}
			}
			p := g.params()
			switch g.layout.Topology {
			case topology.Single:
				must(!has("ON CLUSTER") && !has("Replicated") && !has("Distributed"), "single: no cluster DDL")
				must(has("ENGINE = ReplacingMergeTree(commit_lsn)"), "single: local ReplacingMergeTree")
				must(has("non_replicated_deduplication_window") == p.NonReplicatedDedup, "single: dedup window iff the server has it")
			case topology.Replicated, topology.Sharded:
				on := fmt.Sprintf("ON CLUSTER `%s`", g.layout.Cluster)
				must(strings.Count(ddl, "CREATE ") == strings.Count(ddl, on), "%s: every CREATE runs %s", g.layout.Topology, on)
				local := g.layout.LocalTable("event_log")
				must(has(fmt.Sprintf("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/%s/%s', '{replica}', commit_lsn)", g.database, local)),
					"%s: replicated engine with both arguments and the macros", g.layout.Topology)
				must(has(fmt.Sprintf("replicated_deduplication_window = %d", DedupWindow)), "replicated window set")
				must(!has("non_replicated_deduplication_window"), "no non-replicated window on a replicated table")
				must(!has("{uuid}"), "18.16 has no {uuid}")
				if g.layout.Topology == topology.Sharded {
					must(has(fmt.Sprintf("ENGINE = Distributed('%s', '%s', 'event_log_local', cityHash64(toString(event_id)))", g.layout.Cluster, g.database)),
						"sharded: Distributed event_log by cityHash64(toString(event_id))")
					must(has(fmt.Sprintf("CREATE TABLE IF NOT EXISTS `%s`.`event_log` ON CLUSTER", g.database)), "sharded: the user-facing table is event_log")
				} else {
					must(!has("Distributed"), "replicated: no Distributed table")
				}
			case topology.Cloud:
				must(!has("ON CLUSTER") && !has("Replicated") && !has("Distributed") && !has("/clickhouse/tables"),
					"cloud: no ON CLUSTER, no replicated engine arguments, no Distributed")
				must(has("ENGINE = ReplacingMergeTree(commit_lsn)"), "cloud: plain ReplacingMergeTree (Cloud makes it Shared)")
				must(!has("non_replicated_deduplication_window"), "cloud: SharedMergeTree is not a non-replicated table")
			}
			must(has("CREATE TABLE IF NOT EXISTS `"+g.database+"`.`event_log`"), "the table readers query is event_log")
			must(!has("ADD COLUMN IF NOT EXISTS"), "18.16 has no ADD COLUMN IF NOT EXISTS")
		})
	}
}

// allParams is every combination TestRenderAll checks.
func allParams() []Params {
	var out []Params
	for _, g := range goldens {
		out = append(out, g.params())
		p := g.params()
		p.DateTime64 = !p.DateTime64
		out = append(out, p)
	}
	return out
}
