package status

import (
	"context"
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
