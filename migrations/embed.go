// Package migrations embeds the schema of both databases in the binary;
// `relay migrate` applies them (internal/migrate).
//
// postgres/: goose SQL migrations. clickhouse/: event_table.sql, the
// DDL of an event table, rendered for each table that is missing, and
// numbered files, each applied once (none today: 0001 and 0002 made
// event_log before tables were configurable); all are text/templates
// rendered with the server's capabilities (see internal/migrate),
// statements separated by lines ending in ';'.
package migrations

import "embed"

// Postgres holds postgres/*.sql.
//
//go:embed postgres/*.sql
var Postgres embed.FS

// ClickHouse holds clickhouse/*.sql.
//
//go:embed clickhouse/*.sql
var ClickHouse embed.FS
