package migrate_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/migrate"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/migrations"
)

// djangoPython finds a python3 that has Django and psycopg2
// (RELAY_DJANGO_PYTHON, which make test sets: scripts/services.sh django),
// or skips.
func djangoPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{os.Getenv("RELAY_DJANGO_PYTHON"), "python3", "/usr/bin/python3"} {
		if py == "" {
			continue
		}
		if exec.Command(py, "-c", "import django, psycopg2").Run() == nil {
			return py
		}
	}
	t.Skip("no python3 with Django and psycopg2: scripts/services.sh django installs Debian's (python3-django python3-psycopg2)")
	return ""
}

// The Django model README recommends for new projects (docs/django/models.py)
// makes, through Django's own schema editor, the table relay migrate makes:
// the same columns in the same order, types, NOT NULLs and primary key. relay
// migrate then publishes Django's table as it is.
func TestDjangoModelMatchesOutboxEvent(t *testing.T) {
	t.Parallel()
	py := djangoPython(t)
	e := testenv.NewBare(t)
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, py, filepath.Join("..", "..", "docs", "django", "create_table.py"))
	cmd.Env = append(os.Environ(), "PGHOST="+cfg.Host, "PGPORT="+strconv.Itoa(int(cfg.Port)), "PGUSER="+cfg.User,
		"PGPASSWORD="+cfg.Password, "PGDATABASE="+cfg.Database)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("create_table.py: %v\n%s", err, out)
	}
	t.Logf("Django %s", out)
	// The relay's table, in a schema of its own beside Django's.
	err = pgx.BeginFunc(ctx, e.PG, func(tx pgx.Tx) error {
		for _, sql := range []string{"CREATE SCHEMA relay", "SET LOCAL search_path TO relay", migrations.OutboxEvent} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	shape := func(schema string) []string {
		t.Helper()
		rows, err := e.PG.Query(ctx, `SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
				|| CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
				|| CASE WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary
					AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum) THEN ' PRIMARY KEY' ELSE '' END
			FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
			schema+".outbox_event")
		if err != nil {
			t.Fatal(err)
		}
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return cols
	}
	django, relay := shape("public"), shape("relay")
	if len(relay) != 6 || !slices.Equal(django, relay) {
		t.Errorf("Django's outbox_event:\n  %q\nrelay migrate's:\n  %q", django, relay)
	}

	if err := migrate.Postgres(ctx, e.DatabaseURL, e.Publication, true, migrate.Named(migrate.DefaultOutbox), zerolog.Nop()); err != nil {
		t.Fatalf("relay migrate on Django's table: %v", err)
	}
	if got := shape("public"); !slices.Equal(got, django) {
		t.Errorf("relay migrate changed Django's table: %q, was %q", got, django)
	}
	if got := (pgFacts{e}).published(t); !slices.Equal(got, []string{"public.outbox_event"}) {
		t.Errorf("publication tables = %v, want Django's public.outbox_event", got)
	}
}
