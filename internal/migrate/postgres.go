// Package migrate applies the schemas embedded in the binary (package
// migrations): goose for the relay's PostgreSQL state tables, the default
// outbox table when a stream uses it, the publication of every stream's
// outbox table, and a small runner for ClickHouse that works on 18.16 as
// well as current servers. All of it is idempotent, and none of it creates
// or alters a table of the application's.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/pgerr"
	"github.com/outbox-relay/relay/internal/retry"
	"github.com/outbox-relay/relay/migrations"
)

// DefaultOutbox is the outbox table `relay migrate` creates when a stream
// uses it and it is missing (config.DefaultOutboxTable).
const DefaultOutbox = "outbox_event"

// Table is an outbox table to publish, as PostgreSQL resolved its name.
type Table struct{ Schema, Name string }

func (t Table) String() string    { return t.Schema + "." + t.Name }
func (t Table) qualified() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// Describe finds and checks the streams' outbox tables, on conn, once
// outbox_event exists if a stream uses it: `relay migrate` passes
// replication.Describe of its streams, the one reading of an outbox table
// that `relay run` makes too (this package cannot import it: config,
// which it needs, imports the sink, whose tests import this package). A
// problem is a permanent error, and nothing is published then.
type Describe func(ctx context.Context, conn *pgx.Conn) ([]Table, error)

// Named describes the tables of the given names, as SQL resolves them
// (to_regclass), checking only that they exist: for tests and benchmarks
// on outbox_event.
func Named(names ...string) Describe {
	return func(ctx context.Context, conn *pgx.Conn) ([]Table, error) {
		var tables []Table
		for _, n := range names {
			var t Table
			err := conn.QueryRow(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE c.oid = to_regclass($1)`, n).Scan(&t.Schema, &t.Name)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil, retry.Permanent(fmt.Errorf("outbox table %q does not exist", n))
			}
			if err != nil {
				return nil, pgerr.Classify(fmt.Errorf("look up outbox table %q: %w", n, err))
			}
			tables = append(tables, t)
		}
		return tables, nil
	}
}

// Postgres applies the relay's PostgreSQL migrations (its state tables),
// creates outbox_event when createDefault (a stream uses that name) and it
// is missing, describes the outbox tables, then makes sure publication
// exists and publishes the inserts of every one (the relay's own deletes
// must never be decoded), adding those an existing publication lacks.
func Postgres(ctx context.Context, databaseURL, publication string, createDefault bool, describe Describe, log zerolog.Logger) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if err := applyGoose(ctx, cfg, log); err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if createDefault {
		if err := ensureDefaultOutbox(ctx, conn, log); err != nil {
			return err
		}
	}
	tables, err := describe(ctx, conn)
	if err != nil {
		return err
	}
	return ensurePublication(ctx, conn, publication, tables, log)
}

func applyGoose(ctx context.Context, cfg *pgx.ConnConfig, log zerolog.Logger) error {
	db := stdlib.OpenDB(*cfg)
	defer func() { _ = db.Close() }()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	fsys, err := fs.Sub(migrations.Postgres, "postgres")
	if err != nil {
		return err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("goose locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("load postgres migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("apply postgres migrations: %w", err)
	}
	for _, r := range res {
		log.Info().Str("migration", r.Source.Path).Dur("took", r.Duration).Msg("postgres migration applied")
	}
	return nil
}

// ensureDefaultOutbox creates outbox_event if it is missing. Only that
// name: any other outbox table is the application's.
func ensureDefaultOutbox(ctx context.Context, conn *pgx.Conn, log zerolog.Logger) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", DefaultOutbox).Scan(&exists); err != nil {
		return fmt.Errorf("look up %s: %w", DefaultOutbox, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, migrations.OutboxEvent); err != nil {
		return fmt.Errorf("create %s: %w", DefaultOutbox, err)
	}
	log.Info().Str("table", DefaultOutbox).Msg("outbox table created")
	return nil
}

// ensurePublication creates publication for tables, or adds to it the
// tables it lacks. No column list: every column is published, so a column
// added later reaches the relay.
func ensurePublication(ctx context.Context, conn *pgx.Conn, publication string, tables []Table, log zerolog.Logger) error {
	pub := pgx.Identifier{publication}.Sanitize()
	var names, logged []string
	for _, t := range tables {
		if !slices.Contains(names, t.qualified()) { // two streams may share a table
			names, logged = append(names, t.qualified()), append(logged, t.String())
		}
	}
	if len(names) == 0 {
		return errors.New("no outbox table to publish")
	}
	var one int
	err := conn.QueryRow(ctx, "SELECT 1 FROM pg_publication WHERE pubname = $1", publication).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish = 'insert')", pub, strings.Join(names, ", "))); err != nil {
			return fmt.Errorf("create publication %s: %w", pub, err)
		}
		log.Info().Str("publication", publication).Strs("tables", logged).Msg("publication created")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read publication: %w", err)
	}
	for _, t := range tables {
		err := conn.QueryRow(ctx, "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
			publication, t.Schema, t.Name).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", pub, t.qualified())); err != nil {
				return fmt.Errorf("add %s to publication %s: %w", t.qualified(), pub, err)
			}
			log.Info().Str("publication", publication).Str("table", t.String()).Msg("outbox table added to publication")
			continue
		}
		if err != nil {
			return fmt.Errorf("read publication tables: %w", err)
		}
	}
	return nil
}
