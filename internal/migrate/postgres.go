// Package migrate applies the schemas embedded in the binary (package
// migrations): goose for PostgreSQL, a small runner for ClickHouse that works
// on 18.16 as well as current servers. Both are idempotent.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/migrations"
)

// Postgres applies the PostgreSQL migrations, then makes sure publication
// exists and publishes the outbox table's inserts only (the relay's own
// deletes must never be decoded).
func Postgres(ctx context.Context, databaseURL, publication, table string, log zerolog.Logger) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse DATABASE_URL: %w", err)
	}
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
	return ensurePublication(ctx, db, publication, table, log)
}

func ensurePublication(ctx context.Context, db *sql.DB, publication, table string, log zerolog.Logger) error {
	pub, tbl := pgx.Identifier{publication}.Sanitize(), pgx.Identifier{table}.Sanitize()
	var one int
	err := db.QueryRowContext(ctx, "SELECT 1 FROM pg_publication WHERE pubname = $1", publication).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := db.ExecContext(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish = 'insert')", pub, tbl)); err != nil {
			return fmt.Errorf("create publication %s: %w", pub, err)
		}
		log.Info().Str("publication", publication).Msg("publication created")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read publication: %w", err)
	}
	err = db.QueryRowContext(ctx, "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND tablename = $2", publication, table).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := db.ExecContext(ctx, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", pub, tbl)); err != nil {
			return fmt.Errorf("add %s to publication %s: %w", tbl, pub, err)
		}
		log.Info().Str("publication", publication).Msg("outbox table added to publication")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read publication tables: %w", err)
	}
	return nil
}
