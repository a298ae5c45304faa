package migrate_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/api"
	"github.com/outbox-relay/relay/internal/migrate"
	"github.com/outbox-relay/relay/internal/retry"
	"github.com/outbox-relay/relay/internal/testenv"
)

// pgFacts reads what a test asserts about a database.
type pgFacts struct{ e *testenv.Env }

func (f pgFacts) exists(t *testing.T, table string) bool {
	t.Helper()
	var ok bool
	if err := f.e.PG.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func (f pgFacts) columns(t *testing.T, table string) []string {
	t.Helper()
	rows, err := f.e.PG.Query(context.Background(), `SELECT attname FROM pg_attribute
		WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, table)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

// published lists schema.table of the publication's tables, sorted.
func (f pgFacts) published(t *testing.T) []string {
	t.Helper()
	rows, err := f.e.PG.Query(context.Background(), `SELECT schemaname || '.' || tablename FROM pg_publication_tables
		WHERE pubname = $1 ORDER BY 1`, f.e.Publication)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return tables
}

func (f pgFacts) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := f.e.PG.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// migratePG migrates e for outbox tables of these names, outbox_event
// created when it is one of them.
func migratePG(e *testenv.Env, names ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return migrate.Postgres(ctx, e.DatabaseURL, e.Publication, slices.Contains(names, migrate.DefaultOutbox), migrate.Named(names...), zerolog.Nop())
}

// On an empty database migrate creates the relay's objects and no more:
// the demo's users table and outbox_event.user_id come from relay api
// alone. Run again, it changes nothing.
func TestPostgresCreatesRelayObjectsOnly(t *testing.T) {
	t.Parallel()
	e := testenv.NewBare(t)
	f := pgFacts{e}
	for i := range 2 {
		if err := migratePG(e, migrate.DefaultOutbox); err != nil {
			t.Fatalf("migrate %d: %v", i+1, err)
		}
	}
	for _, table := range []string{"outbox_event", "outbox_relay_state", "outbox_relay_batch", "outbox_dead_letter"} {
		if !f.exists(t, table) {
			t.Errorf("migrate did not create %s", table)
		}
	}
	if f.exists(t, "users") {
		t.Error("migrate created the demo's users table")
	}
	want := []string{"id", "event_type", "event_date_time", "environment", "event_context", "metadata_version"}
	if got := f.columns(t, "outbox_event"); !slices.Equal(got, want) {
		t.Errorf("outbox_event columns = %v, want %v (no user_id)", got, want)
	}
	if got := f.published(t); !slices.Equal(got, []string{"public.outbox_event"}) {
		t.Errorf("publication tables = %v, want public.outbox_event", got)
	}
	var insert, update, del bool
	if err := e.PG.QueryRow(context.Background(), "SELECT pubinsert, pubupdate, pubdelete FROM pg_publication WHERE pubname = $1",
		e.Publication).Scan(&insert, &update, &del); err != nil || !insert || update || del {
		t.Errorf("publication publishes insert %t update %t delete %t (%v), want inserts only", insert, update, del, err)
	}

	// The demo's schema is relay api's; migrate leaves it alone afterwards.
	if err := api.EnsureSchema(context.Background(), e.PG); err != nil {
		t.Fatalf("api.EnsureSchema: %v", err)
	}
	if err := migratePG(e, migrate.DefaultOutbox); err != nil {
		t.Fatalf("migrate after the demo's schema: %v", err)
	}
	if !f.exists(t, "users") || !slices.Contains(f.columns(t, "outbox_event"), "user_id") {
		t.Error("the demo's schema is gone after migrate")
	}
}

// A database migrated before the demo's schema left the product (goose
// versions 1 to 6 recorded, users and outbox_event.user_id present, rows
// in both) migrates on: the later versions are applied, nothing of the
// demo's is dropped, and relay api finds its schema in place.
func TestPostgresKeepsAnOlderDatabase(t *testing.T) {
	t.Parallel()
	e := testenv.NewBare(t)
	f := pgFacts{e}
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { _ = db.Close() })
	old, err := goose.NewProvider(goose.DialectPostgres, db, os.DirFS("testdata/postgres_v6"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Up(ctx); err != nil {
		t.Fatalf("the old migrations: %v", err)
	}
	f.exec(t, `INSERT INTO users (email, first_name, last_name) VALUES ('ada@example.com', 'Ada', 'Lovelace')`)
	f.exec(t, `INSERT INTO outbox_event (event_type, environment, event_context, user_id)
		SELECT 'user_created', 'test', '{}', id FROM users`)

	if err := migratePG(e, migrate.DefaultOutbox); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := api.EnsureSchema(ctx, e.PG); err != nil {
		t.Fatalf("api.EnsureSchema: %v", err)
	}
	var users, events int
	if err := e.PG.QueryRow(ctx, `SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM outbox_event WHERE user_id IS NOT NULL)`).Scan(&users, &events); err != nil {
		t.Fatal(err)
	}
	if users != 1 || events != 1 {
		t.Errorf("after migrate: %d users and %d outbox rows with user_id, want 1 and 1", users, events)
	}
	if !slices.Contains(f.columns(t, "outbox_relay_state"), "events_lost_at") || !slices.Contains(f.columns(t, "outbox_dead_letter"), "raw") {
		t.Error("migrate did not apply the versions after 6 (00008, 00009)")
	}
	var versions []int64
	rows, err := e.PG.Query(ctx, "SELECT version_id FROM goose_db_version WHERE is_applied ORDER BY version_id")
	if err == nil {
		versions, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	}
	if err != nil || !slices.Equal(versions, []int64{0, 1, 2, 3, 4, 5, 6, 8, 9, 10}) {
		t.Errorf("goose versions = %v (%v), want the old 0-6 kept and 8, 9, 10 added", versions, err)
	}
}

// Outbox tables of the application's: migrate never creates outbox_event
// for them and never alters them; it publishes each, adds one an existing
// publication lacks, and publishes nothing when describing the tables
// fails (a missing one).
func TestPostgresPublishesApplicationTables(t *testing.T) {
	t.Parallel()
	e := testenv.NewBare(t)
	f := pgFacts{e}
	f.exec(t, `CREATE SCHEMA billing`)
	f.exec(t, `CREATE TABLE core_outboxevent (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
		event_type varchar(255) NOT NULL, event_date_time timestamptz NOT NULL, environment varchar(255) NOT NULL,
		event_context jsonb NOT NULL, metadata_version integer NOT NULL, created_at timestamptz NOT NULL, processed boolean NOT NULL)`)
	f.exec(t, `CREATE TABLE billing.outbox (id text PRIMARY KEY, event_type text, event_date_time timestamptz, event_context jsonb)`)
	djangoCols := f.columns(t, "core_outboxevent")

	if err := migratePG(e, "public.core_outboxevent"); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if f.exists(t, "outbox_event") || f.exists(t, "users") {
		t.Error("migrate created outbox_event or users for the application's outbox table")
	}
	if got := f.published(t); !slices.Equal(got, []string{"public.core_outboxevent"}) {
		t.Errorf("publication tables = %v, want public.core_outboxevent", got)
	}

	err := migratePG(e, "public.core_outboxevent", "billing.outbox", "billing.outbx")
	if err == nil || !retry.IsPermanent(err) || !strings.Contains(err.Error(), `"billing.outbx" does not exist`) {
		t.Fatalf("migrate with a missing table = %v, want a permanent error naming it", err)
	}
	if got := f.published(t); !slices.Equal(got, []string{"public.core_outboxevent"}) {
		t.Errorf("after the refusal the publication holds %v, want it unchanged", got)
	}

	if err := migratePG(e, "public.core_outboxevent", "billing.outbox"); err != nil {
		t.Fatalf("migrate with a second table: %v", err)
	}
	if got := f.published(t); !slices.Equal(got, []string{"billing.outbox", "public.core_outboxevent"}) {
		t.Errorf("publication tables = %v, want both outbox tables", got)
	}
	if got := f.columns(t, "core_outboxevent"); !slices.Equal(got, djangoCols) {
		t.Errorf("core_outboxevent columns = %v, want them unchanged %v", got, djangoCols)
	}
}

// Describe runs once outbox_event exists, and its error stops migrate
// before anything is published.
func TestPostgresDescribeRunsBeforePublishing(t *testing.T) {
	t.Parallel()
	e := testenv.NewBare(t)
	refused := retry.Permanent(errors.New("refused"))
	err := migrate.Postgres(context.Background(), e.DatabaseURL, e.Publication, true,
		func(ctx context.Context, conn *pgx.Conn) ([]migrate.Table, error) {
			var ok bool
			if err := conn.QueryRow(ctx, "SELECT to_regclass('outbox_event') IS NOT NULL").Scan(&ok); err != nil || !ok {
				t.Errorf("describe ran before outbox_event was created (%v)", err)
			}
			return nil, refused
		}, zerolog.Nop())
	if !errors.Is(err, refused) {
		t.Fatalf("migrate = %v, want the describe error", err)
	}
	var n int
	if err := e.PG.QueryRow(context.Background(), "SELECT count(*) FROM pg_publication WHERE pubname = $1", e.Publication).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d publications (%v) after a failed describe, want none", n, err)
	}
}
