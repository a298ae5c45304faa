package migrate

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/migrations"
)

// Capabilities are what the ClickHouse migrations are rendered with.
type Capabilities struct {
	// DateTime64 exists from ClickHouse 20.1.
	DateTime64 bool
}

// CapabilitiesOf derives the capabilities from the server version.
func CapabilitiesOf(v driver.ServerVersion) Capabilities {
	return Capabilities{DateTime64: v.Version.Major >= 20}
}

const chMigrationsTable = "schema_migrations"

// ClickHouse applies the ClickHouse migrations not yet recorded in
// schema_migrations. DDL goes through Exec; the record is inserted through
// PrepareBatch with an explicit column list (an INSERT through Exec hangs on
// 18.16).
func ClickHouse(ctx context.Context, conn driver.Conn, log zerolog.Logger) error {
	v, err := conn.ServerVersion()
	if err != nil {
		return fmt.Errorf("clickhouse server version: %w", err)
	}
	caps := CapabilitiesOf(*v)
	if err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+chMigrationsTable+` (
		version UInt32, name String, applied_at DateTime DEFAULT now()
	) ENGINE = MergeTree ORDER BY version`); err != nil {
		return fmt.Errorf("create %s: %w", chMigrationsTable, err)
	}
	applied, err := appliedVersions(ctx, conn)
	if err != nil {
		return err
	}
	files, err := fs.Glob(migrations.ClickHouse, "clickhouse/*.sql")
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
		if err := apply(ctx, conn, name, version, caps); err != nil {
			return err
		}
		log.Info().Str("migration", name).Msg("clickhouse migration applied")
	}
	return nil
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

func apply(ctx context.Context, conn driver.Conn, name string, version uint32, caps Capabilities) error {
	stmts, err := Render(name, caps)
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

// Render returns the statements of one ClickHouse migration file.
func Render(name string, caps Capabilities) ([]string, error) {
	raw, err := migrations.ClickHouse.ReadFile(name)
	if err != nil {
		return nil, err
	}
	tmpl, err := template.New(name).Option("missingkey=error").Parse(string(raw))
	if err != nil {
		return nil, fmt.Errorf("migration %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, caps); err != nil {
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
