package migrate

import (
	"io/fs"
	"sort"

	"github.com/outbox-relay/relay/migrations"
)

// Statements is every statement ClickHouseOn sends for p, in order: the
// schema_migrations table, then each migration's.
func Statements(p Params) ([]string, error) {
	out := []string{migrationsTableDDL(p)}
	files, err := fs.Glob(migrations.ClickHouse, "clickhouse/[0-9]*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	files = append(files, eventTableFile) // for the default table
	p.Table = DefaultTable
	for _, name := range files {
		stmts, err := Render(name, p)
		if err != nil {
			return nil, err
		}
		out = append(out, stmts...)
	}
	return out, nil
}
