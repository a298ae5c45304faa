package migrate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"text/template"

	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/sink/clickhouse/chsql"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/topology"
	"github.com/outbox-relay/relay/migrations"
)

// Capabilities are what the server can do, as far as the migrations care.
type Capabilities struct {
	// DateTime64 exists from ClickHouse 20.1.
	DateTime64 bool
	// NonReplicatedDedup: a non-replicated table gets
	// non_replicated_deduplication_window, from 22.2, where
	// insert_deduplication_token (what makes that window useful to the
	// relay) exists too.
	NonReplicatedDedup bool
}

// CapabilitiesOf derives the capabilities from the server version.
func CapabilitiesOf(v driver.ServerVersion) Capabilities {
	at := func(major, minor uint64) bool {
		return v.Version.Major > major || v.Version.Major == major && v.Version.Minor >= minor
	}
	return Capabilities{DateTime64: at(20, 1), NonReplicatedDedup: at(22, 2)}
}

// Params are what a migration is rendered with: the server's capabilities,
// the topology, the database the tables go in (ON CLUSTER DDL runs on
// other servers, where the connection's current database means nothing,
// so every name is qualified with it), and for event_table.sql the table.
type Params struct {
	Capabilities
	Layout   topology.Layout
	Database string
	Table    string
}

// DedupWindow is for the templates.
func (Params) DedupWindow() int { return DedupWindow }

// DedupWindow is how many recent inserted blocks a table remembers to drop
// a repeated one (see chsink.DedupWindow).
const DedupWindow = chsink.DedupWindow

const chMigrationsTable = "schema_migrations"

// eventTableFile is the DDL of one event table.
const eventTableFile = "clickhouse/event_table.sql"

// DefaultTable is the event table of the default configuration.
const DefaultTable = "event_log"

// Options say what ClickHouseTables makes and prints.
type Options struct {
	Layout topology.Layout
	// Tables are the event tables to make when missing (the streams'
	// tables that are not templates); none: DefaultTable.
	Tables []string
	// Adopt applies, to a table migrate did not make, the statement that
	// raises its guarantee (Guarantee.Upgrade), printed to Out first.
	Adopt bool
	// Out receives each table's guarantee and each adopting statement
	// (nil: not printed).
	Out io.Writer
}

// ClickHouse makes the relay's objects in ClickHouse for a single server
// with the default table (see ClickHouseTables).
func ClickHouse(ctx context.Context, conn driver.Conn, log zerolog.Logger) error {
	return ClickHouseOn(ctx, conn, topology.Layout{Topology: topology.Single}, log)
}

// ClickHouseOn is ClickHouse for layout: DDL ON CLUSTER and replicated
// engines on a cluster (conn may be any of its servers), Cloud's dialect on
// Cloud.
func ClickHouseOn(ctx context.Context, conn driver.Conn, layout topology.Layout, log zerolog.Logger) error {
	_, err := ClickHouseTables(ctx, conn, Options{Layout: layout}, log)
	return err
}

// ClickHouseTables applies the numbered ClickHouse migrations not yet
// recorded in schema_migrations, then makes each event table of o that is
// missing (event_table.sql, its <table>_dedup view with it). A table that
// exists is adopted as it is: never altered, no view over it (a FINAL
// view over a table that is not a ReplacingMergeTree cannot be read);
// only with o.Adopt the statement its guarantee names is applied. It
// returns each table's guarantee, as printed to o.Out.
func ClickHouseTables(ctx context.Context, conn driver.Conn, o Options, log zerolog.Logger) ([]chsink.Guarantee, error) {
	p, err := paramsOf(ctx, conn, o.Layout)
	if err != nil {
		return nil, err
	}
	if err := applyNumbered(ctx, conn, p, log); err != nil {
		return nil, err
	}
	tables := o.Tables
	if len(tables) == 0 {
		tables = []string{DefaultTable}
	}
	var out []chsink.Guarantee
	for _, t := range tables {
		g, err := eventTable(ctx, conn, p, t, o, log)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// paramsOf reads what the DDL is rendered with from the server.
func paramsOf(ctx context.Context, conn driver.Conn, layout topology.Layout) (Params, error) {
	v, err := conn.ServerVersion()
	if err != nil {
		return Params{}, fmt.Errorf("clickhouse server version: %w", err)
	}
	p := Params{Capabilities: CapabilitiesOf(*v), Layout: layout}
	if err := conn.QueryRow(ctx, "SELECT currentDatabase()").Scan(&p.Database); err != nil {
		return Params{}, fmt.Errorf("clickhouse current database: %w", err)
	}
	return p, nil
}

// applyNumbered applies the numbered migrations not yet recorded. With
// none to apply (today) it creates no schema_migrations either: a user's
// database gets no table the relay does not need.
func applyNumbered(ctx context.Context, conn driver.Conn, p Params, log zerolog.Logger) error {
	files, err := fs.Glob(migrations.ClickHouse, "clickhouse/[0-9]*.sql")
	if err != nil || len(files) == 0 {
		return err
	}
	if err := conn.Exec(ctx, migrationsTableDDL(p)); err != nil {
		return fmt.Errorf("create %s: %w", chMigrationsTable, err)
	}
	applied, err := appliedVersions(ctx, conn)
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, name := range files {
		version, err := versionOf(name)
		if err != nil {
			return err
		}
		if applied[version] {
			continue
		}
		if err := apply(ctx, conn, name, version, p); err != nil {
			return err
		}
		log.Info().Str("migration", name).Msg("clickhouse migration applied")
	}
	return nil
}

// eventTable makes table when it is missing, or adopts it as it is, and
// states (and with o.Adopt raises) its guarantee.
func eventTable(ctx context.Context, conn driver.Conn, p Params, table string, o Options, log zerolog.Logger) (chsink.Guarantee, error) {
	g, exists, err := chsink.ReadGuarantee(ctx, conn, table)
	if err != nil {
		return g, fmt.Errorf("clickhouse table %s: %w", table, err)
	}
	if !exists {
		if err := createEventTable(ctx, conn, p, table); err != nil {
			return g, err
		}
		log.Info().Str("table", table).Msg("clickhouse table created")
		if g, err = readGuarantee(ctx, conn, table); err != nil {
			return g, err
		}
		printf(o.Out, "clickhouse table %s: created; %s\n", table, g)
		return g, nil
	}
	printf(o.Out, "clickhouse table %s: exists, kept as it is; %s\n", table, g)
	switch {
	case g.Upgrade == "" && o.Adopt && g.Level != chsink.ExactlyOnce:
		printf(o.Out, "  --adopt: no statement raises it on this server; nothing changed\n")
		return g, nil
	case g.Upgrade == "":
		return g, nil
	case !o.Adopt:
		printf(o.Out, "  `relay migrate --adopt` runs: %s\n", g.Upgrade)
		return g, nil
	}
	printf(o.Out, "  running: %s\n", g.Upgrade)
	if err := conn.Exec(ctx, g.Upgrade); err != nil {
		return g, fmt.Errorf("adopt clickhouse table %s: %s: %w", table, g.Upgrade, err)
	}
	log.Info().Str("table", table).Str("ddl", g.Upgrade).Msg("clickhouse table adopted")
	if g, err = readGuarantee(ctx, conn, table); err != nil {
		return g, err
	}
	printf(o.Out, "clickhouse table %s: now %s\n", table, g)
	return g, nil
}

// readGuarantee is chsink.ReadGuarantee for a table that must exist.
func readGuarantee(ctx context.Context, conn driver.Conn, table string) (chsink.Guarantee, error) {
	g, ok, err := chsink.ReadGuarantee(ctx, conn, table)
	if err == nil && !ok {
		err = fmt.Errorf("clickhouse table %s is missing after CREATE TABLE", table)
	}
	if err != nil {
		return g, fmt.Errorf("clickhouse table %s: %w", table, err)
	}
	return g, nil
}

func printf(w io.Writer, format string, args ...any) {
	if w != nil {
		_, _ = fmt.Fprintf(w, format, args...)
	}
}

// createEventTable renders event_table.sql for table and runs it.
func createEventTable(ctx context.Context, conn driver.Conn, p Params, table string) error {
	p.Table = table
	stmts, err := Render(eventTableFile, p)
	if err != nil {
		return err
	}
	for _, stmt := range stmts {
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("create clickhouse table %s: %w", table, err)
		}
	}
	return nil
}

// EventTableCreator returns what the sink runs to create a routed table
// on its first event (chsink.WithCreate): event_table.sql for layout and
// the server conn reaches, IF NOT EXISTS (ON CLUSTER on a cluster), the
// same DDL `relay migrate` runs for event_log.
func EventTableCreator(layout topology.Layout, log zerolog.Logger) func(ctx context.Context, conn driver.Conn, table string) error {
	return func(ctx context.Context, conn driver.Conn, table string) error {
		p, err := paramsOf(ctx, conn, layout)
		if err != nil {
			return err
		}
		if err := createEventTable(ctx, conn, p, table); err != nil {
			return err
		}
		log.Info().Str("table", table).Msg("clickhouse table created")
		return nil
	}
}

func appliedVersions(ctx context.Context, conn driver.Conn) (map[uint32]bool, error) {
	rows, err := conn.Query(ctx, "SELECT version FROM "+chMigrationsTable)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", chMigrationsTable, err)
	}
	defer rows.Close()
	out := map[uint32]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read %s: %w", chMigrationsTable, err)
		}
		out[v] = true
	}
	return out, rows.Err()
}

func versionOf(path string) (uint32, error) {
	base := path[strings.LastIndexByte(path, '/')+1:]
	num, _, _ := strings.Cut(base, "_")
	v, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("migration %s: name must start with a number", path)
	}
	return uint32(v), nil
}

// migrationsTableDDL creates schema_migrations; on a cluster it is
// replicated, so that migrate run through any replica of the first shard
// sees what was applied. (Through another shard it applies the migrations
// again, which changes nothing: every statement is idempotent.)
func migrationsTableDDL(p Params) string {
	engine := "MergeTree"
	if p.Layout.OnCluster() {
		engine = replicatedEngine(p, chMigrationsTable, "MergeTree", "")
	}
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s (\n    version UInt32, name String, applied_at DateTime DEFAULT now()\n) ENGINE = %s ORDER BY version",
		qualified(p, chMigrationsTable), onCluster(p), engine)
}

func apply(ctx context.Context, conn driver.Conn, name string, version uint32, p Params) error {
	stmts, err := Render(name, p)
	if err != nil {
		return err
	}
	for _, stmt := range stmts {
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+chMigrationsTable+" (version, name)")
	if err != nil {
		return fmt.Errorf("record migration %s: %w", name, err)
	}
	if err := b.Append(version, name); err != nil {
		return fmt.Errorf("record migration %s: %w", name, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("record migration %s: %w", name, err)
	}
	return nil
}

// Render returns the statements of one ClickHouse migration file rendered
// for p. Besides p's fields, the templates have:
//
//	{{ table "t" }}            t qualified with p.Database
//	{{ onCluster }}            " ON CLUSTER `c`" on a cluster, else nothing
//	{{ engine "t" "Replacing" "commit_lsn" }}
//	                           ReplacingMergeTree(commit_lsn), or on a cluster
//	                           ReplicatedReplacingMergeTree with t's ZooKeeper
//	                           path and the {shard}/{replica} macros
//	{{ local "t" }}            the table that holds the rows (t_local when sharded)
//	{{ .Table }}               the event table (event_table.sql)
//	{{ literal "s" }}          s as a quoted string literal
func Render(name string, p Params) ([]string, error) {
	raw, err := migrations.ClickHouse.ReadFile(name)
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{
		"table":     func(t string) string { return qualified(p, t) },
		"onCluster": func() string { return onCluster(p) },
		"engine": func(t, family, args string) string {
			if p.Layout.OnCluster() {
				return replicatedEngine(p, t, family+"MergeTree", args)
			}
			return family + "MergeTree(" + args + ")"
		},
		"local":   p.Layout.LocalTable,
		"literal": chsql.String,
	}
	tmpl, err := template.New(name).Option("missingkey=error").Funcs(funcs).Parse(string(raw))
	if err != nil {
		return nil, fmt.Errorf("migration %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, p); err != nil {
		return nil, fmt.Errorf("migration %s: %w", name, err)
	}
	var stmts []string
	var cur strings.Builder
	for _, line := range strings.Split(buf.String(), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			stmts = append(stmts, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		stmts = append(stmts, s)
	}
	return stmts, nil
}

// qualified is t in p.Database, quoted; just t when no database is known.
func qualified(p Params, t string) string {
	if p.Database == "" {
		return t
	}
	return chsql.Ident(p.Database) + "." + chsql.Ident(t)
}

func onCluster(p Params) string {
	if !p.Layout.OnCluster() {
		return ""
	}
	return " ON CLUSTER " + chsql.Ident(p.Layout.Cluster)
}

// replicatedEngine is Replicated<family>(path, replica[, args]). 18.16 has
// no {uuid} and no defaults for the two arguments; the path names the
// database and the table in full, so tables in two databases never share
// a ZooKeeper path.
func replicatedEngine(p Params, t, family, args string) string {
	path := chsql.String("/clickhouse/tables/{shard}/" + p.Database + "/" + t)
	e := "Replicated" + family + "(" + path + ", '{replica}'"
	if args != "" {
		e += ", " + args
	}
	return e + ")"
}
