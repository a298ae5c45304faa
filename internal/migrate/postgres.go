// Package migrate applies the schemas embedded in the binary (package
// migrations): goose for the relay's PostgreSQL state tables, the default
// outbox table when a stream uses it, the publication of every stream's
// outbox table, and a small runner for ClickHouse that works on 18.16 as
// well as current servers. All of it is idempotent, and none of it creates
// or alters a table of the application's. (It does not import
// internal/config, whose package imports the sink, whose tests import this
// one: the caller passes what it needs of the streams.)
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

// Outbox is one stream's outbox table, as `relay migrate` publishes it.
type Outbox struct {
	// Stream names the stream in errors.
	Stream string
	// Table is the table, schema-qualified or found on the search path
	// (outboxtable.Identifier of the stream's outbox).
	Table pgx.Identifier
}

// DefaultOutbox is the outbox table `relay migrate` creates when a stream
// uses it and it is missing (config.DefaultOutboxTable).
const DefaultOutbox = "outbox_event"

// Check vets the outbox tables after the default one exists and before
// any is published; relay migrate passes outboxtable.Check of its streams.
type Check func(ctx context.Context, conn *pgx.Conn) error

// Postgres applies the relay's PostgreSQL migrations (its state tables),
// creates outbox_event when an outbox uses that default name and it is
// missing, refuses outbox tables that do not exist (naming them and their
// stream), runs check when not nil, then makes sure publication exists and
// publishes the inserts of every outbox table (the relay's own deletes must
// never be decoded), adding the tables an existing publication lacks.
func Postgres(ctx context.Context, databaseURL, publication string, outboxes []Outbox, check Check, log zerolog.Logger) error {
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
	if err := ensureDefaultOutbox(ctx, conn, outboxes, log); err != nil {
		return err
	}
	tables, err := resolve(ctx, conn, outboxes)
	if err != nil {
		return err
	}
	if check != nil {
		if err := check(ctx, conn); err != nil {
			return err
		}
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

// ensureDefaultOutbox creates outbox_event if an outbox is that and it is
// missing. Only that name: any other outbox table is the application's.
func ensureDefaultOutbox(ctx context.Context, conn *pgx.Conn, outboxes []Outbox, log zerolog.Logger) error {
	if !slices.ContainsFunc(outboxes, func(o Outbox) bool { return slices.Equal(o.Table, pgx.Identifier{DefaultOutbox}) }) {
		return nil
	}
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

// table is an outbox table as PostgreSQL resolved its name.
type table struct{ schema, name string }

func (t table) String() string    { return t.schema + "." + t.name }
func (t table) qualified() string { return pgx.Identifier{t.schema, t.name}.Sanitize() }

// resolve finds each outbox's table; every one that does not exist is a
// problem of one permanent error, naming it and its stream.
func resolve(ctx context.Context, conn *pgx.Conn, outboxes []Outbox) ([]table, error) {
	var tables []table
	var missing []error
	for _, o := range outboxes {
		var t table
		err := conn.QueryRow(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.oid = to_regclass($1)`, o.Table.Sanitize()).Scan(&t.schema, &t.name)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			missing = append(missing, fmt.Errorf("stream %q: outbox table %s does not exist (relay migrate creates only %s; create the table, or correct the stream's outbox)", o.Stream, strings.Join(o.Table, "."), DefaultOutbox))
			continue
		case err != nil:
			return nil, pgerr.Classify(fmt.Errorf("stream %q: look up outbox table %s: %w", o.Stream, strings.Join(o.Table, "."), err))
		}
		if !slices.Contains(tables, t) { // two streams may share a table
			tables = append(tables, t)
		}
	}
	if len(missing) > 0 {
		return nil, retry.Permanent(errors.Join(missing...))
	}
	return tables, nil
}

// ensurePublication creates publication for tables, or adds to it the
// tables it lacks. On PostgreSQL 15+ a table is published without a
// column list: every column, so a column added later reaches the relay.
func ensurePublication(ctx context.Context, conn *pgx.Conn, publication string, tables []table, log zerolog.Logger) error {
	pub := pgx.Identifier{publication}.Sanitize()
	var names []string
	for _, t := range tables {
		names = append(names, t.qualified())
	}
	var one int
	err := conn.QueryRow(ctx, "SELECT 1 FROM pg_publication WHERE pubname = $1", publication).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish = 'insert')", pub, strings.Join(names, ", "))); err != nil {
			return fmt.Errorf("create publication %s: %w", pub, err)
		}
		log.Info().Str("publication", publication).Strs("tables", names).Msg("publication created")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read publication: %w", err)
	}
	for _, t := range tables {
		err := conn.QueryRow(ctx, "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
			publication, t.schema, t.name).Scan(&one)
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
