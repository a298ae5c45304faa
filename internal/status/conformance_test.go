package status

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/migrate"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/testenv"
)

// The conformance suite on the in-process ClickHouse 26 engine (see
// internal/testenv/chdb.go): what `relay status` asks ClickHouse, through
// clickhouse-go's scanning of the engine's answers, so a renamed column or
// a changed type of a current server fails here.

// event_log's count, newest event and columns, on the table `relay
// migrate` makes.
func TestConformanceStatusEventLog(t *testing.T) {
	eng := testenv.NewEngine(t)
	eng.Database(t)
	ctx := context.Background()
	conn := eng.Conn()
	if err := migrate.ClickHouse(ctx, conn, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	eng.Exec(t, `INSERT INTO event_log (event_id, event_type, event_date_time, environment, event_context, metadata_version, commit_lsn)
		VALUES (generateUUIDv4(), 'a', '2026-01-02 03:04:05.123456', 'e', '{}', 1, 1), (generateUUIDv4(), 'b', '2025-01-01 00:00:00', 'e', '{}', 1, 2)`)
	var r Report
	if err := readEventLog(ctx, conn, &r, "event_log"); err != nil {
		t.Fatalf("readEventLog: %v", err)
	}
	newest := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	if r.ClickHouseRows == nil || *r.ClickHouseRows != 2 || r.ClickHouseNewestEvent == nil || !r.ClickHouseNewestEvent.Equal(newest) {
		t.Errorf("rows %v, newest %v; want 2 and %s", r.ClickHouseRows, r.ClickHouseNewestEvent, newest)
	}
	have, err := readColumns(ctx, conn, "event_log")
	if err != nil {
		t.Fatalf("readColumns: %v", err)
	}
	if got := have["event_date_time"]; got != "DateTime64(6, 'UTC')" {
		t.Errorf("event_date_time is %q", got)
	}
	if len(have) != 8 {
		t.Errorf("%d columns: %v", len(have), have)
	}
}

// system.replicas and system.clusters as 26.5 has them (copies of their
// structure, holding the rows a cluster would: the engine has none), read
// by the relay's own queries.
func TestConformanceStatusReplicas(t *testing.T) {
	eng := testenv.NewEngine(t)
	eng.Database(t)
	ctx := context.Background()
	eng.Exec(t,
		"CREATE TABLE replicas_copy AS system.replicas ENGINE = Memory",
		"INSERT INTO replicas_copy (database, table, absolute_delay, is_readonly) VALUES (currentDatabase(), 'event_log_local', 3, 1)",
		"CREATE TABLE clusters_copy AS system.clusters ENGINE = Memory",
		"INSERT INTO clusters_copy (cluster, shard_num, replica_num, host_name, port) VALUES ('prod', 2, 1, 'ch-3', 9000), ('prod', 1, 2, 'ch-2', 9000), ('prod', 1, 1, 'ch-1', 9440), ('other', 1, 1, 'x', 1)",
	)
	conn := eng.ConnRenaming("system.replicas", "replicas_copy", "system.clusters", "clusters_copy")

	var rep Replica
	if err := readReplica(ctx, conn, "event_log_local", &rep); err != nil {
		t.Fatalf("readReplica: %v", err)
	}
	if rep.DelaySeconds == nil || *rep.DelaySeconds != 3 || rep.Readonly == nil || !*rep.Readonly {
		t.Errorf("delay %v, readonly %v; want 3 and true", rep.DelaySeconds, rep.Readonly)
	}

	servers, err := chsink.ClusterServers(ctx, conn, "prod")
	if err != nil {
		t.Fatalf("ClusterServers: %v", err)
	}
	want := []chsink.ClusterServer{{Shard: 1, Replica: 1, Addr: "ch-1:9440"}, {Shard: 1, Replica: 2, Addr: "ch-2:9000"}, {Shard: 2, Replica: 1, Addr: "ch-3:9000"}}
	if len(servers) != len(want) {
		t.Fatalf("servers %v, want %v", servers, want)
	}
	for i := range want {
		if servers[i] != want[i] {
			t.Errorf("server %d = %+v, want %+v", i, servers[i], want[i])
		}
	}
}

// A stream's tables as a current server lists them: the tables a template
// routed to (not the view beside them) with the rows of their active parts,
// and a stream's one table.
func TestConformanceStatusStreamTables(t *testing.T) {
	eng := testenv.NewEngine(t)
	eng.Database(t)
	ctx := context.Background()
	eng.Exec(t,
		"CREATE TABLE events_login (event_id UUID) ENGINE = ReplacingMergeTree ORDER BY event_id",
		"CREATE TABLE events_signup (event_id UUID) ENGINE = MergeTree ORDER BY event_id",
		"CREATE VIEW events_login_dedup AS SELECT * FROM events_login FINAL",
		"CREATE TABLE app_log (event_id UUID) ENGINE = MergeTree ORDER BY event_id",
		"INSERT INTO events_login SELECT generateUUIDv4() FROM numbers(3)",
		"INSERT INTO events_login SELECT generateUUIDv4() FROM numbers(2)",
		"INSERT INTO app_log SELECT generateUUIDv4() FROM numbers(4)",
	)
	streams := []StreamStatus{{Name: "routed", ClickHouseTable: "events_{event_type}", Routed: true}, {Name: "app", ClickHouseTable: "app_log"}}
	if err := gatherStreamTables(ctx, eng.Conn(), Target{}, streams); err != nil {
		t.Fatalf("gatherStreamTables: %v", err)
	}
	got := map[string]string{}
	for _, s := range streams {
		for _, tb := range s.Tables {
			got[tb.Name] = fmt.Sprintf("%s %s %d %s", s.Name, tb.Engine, *tb.Rows, tb.Guarantee)
		}
	}
	want := map[string]string{"events_login": "routed ReplacingMergeTree 5 unknown", "events_signup": "routed MergeTree 0 unknown",
		"app_log": "app MergeTree 4 unknown"}
	if !maps.Equal(got, want) {
		t.Errorf("stream tables %v, want %v", got, want)
	}
}
