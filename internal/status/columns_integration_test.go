package status

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/config"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/testenv"
)

// A column whose type has no mapping is named by its type, as PostgreSQL
// spells it (a built-in type and one of the database's own), not by OID.
func TestGatherColumnsNamesUnmappedTypes(t *testing.T) {
	t.Parallel()
	e := testenv.NewPostgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	for _, q := range []string{
		`CREATE TYPE mood AS ENUM ('ok', 'sad')`,
		`ALTER TABLE outbox_event ADD COLUMN addr inet, ADD COLUMN feeling mood, ADD COLUMN tags text[]`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var r Report
	if _, err := gatherServer(ctx, conn, &r); err != nil || r.WALLevel != "logical" {
		t.Errorf("gatherServer: wal_level %q, %v; want logical", r.WALLevel, err)
	}
	cols, err := gatherColumns(ctx, conn, config.Stream{Name: config.DefaultStreamName, Outbox: config.DefaultOutboxTable})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range cols {
		got[c.Name] = chsink.PGTypeName(c)
	}
	for name, want := range map[string]string{"addr": "inet", "feeling": "mood", "tags": "text[]"} {
		if got[name] != want {
			t.Errorf("column %s is shown as %q, want %q (all: %v)", name, got[name], want, got)
		}
	}
}
