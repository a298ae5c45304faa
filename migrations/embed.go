// Package migrations embeds the schema of both databases in the binary;
// `relay migrate` applies them (internal/migrate).
//
// postgres/: goose SQL migrations. clickhouse/: numbered files, each a
// text/template rendered with the server's capabilities (see
// internal/migrate), statements separated by lines ending in ';'.
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
