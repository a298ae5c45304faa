// Package migrations embeds the relay's own schema in the binary;
// `relay migrate` applies it (internal/migrate).
//
// postgres/: goose SQL migrations of the relay's state tables. Versions
// 00001 (outbox_event), 00002 (the demo's users) and 00006 (the demo's
// outbox_event.user_id) were removed: outbox_event.sql is created only when
// a stream uses the default outbox, and the demo API (`relay api`) applies
// its own schema. Databases that recorded those versions keep working:
// goose ignores recorded versions it has no file for. Never reuse them.
//
// outbox_event.sql: the default outbox table.
//
// clickhouse/: event_table.sql, the DDL of an event table, rendered for
// each table that is missing, and numbered files, each applied once (none
// today: 0001 and 0002 made event_log before tables were configurable);
// all are text/templates rendered with the server's capabilities (see
// internal/migrate), statements separated by lines ending in ';'.
package migrations

import "embed"

// Postgres holds postgres/*.sql.
//
//go:embed postgres/*.sql
var Postgres embed.FS

// OutboxEvent creates the default outbox table when missing.
//
//go:embed outbox_event.sql
var OutboxEvent string

// ClickHouse holds clickhouse/*.sql.
//
//go:embed clickhouse/*.sql
var ClickHouse embed.FS
