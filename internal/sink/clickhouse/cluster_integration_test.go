package clickhouse_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/migrate"
	"github.com/outbox-relay/relay/internal/retry"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
)

// These run on the shared cluster of scripts/services.sh cluster-up
// (skipped without it): relay migrate's DDL for each cluster topology, and
// the sink's inserts through it.

func clusterEvents(n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{ID: uuid.New(), Type: "t", Environment: "prod", Context: []byte(`{}`),
			OccurredAt: time.Date(2024, time.Month(1+i%3), 1, 0, 0, 0, 0, time.UTC), CommitLSN: uint64(i + 1)}
	}
	return evs
}

// count is SELECT count() FROM db.table on replica i.
func count(t *testing.T, c *testenv.Cluster, i int, db, table string) (uint64, error) {
	conn := c.Conn(t, i)
	defer func() { _ = conn.Close() }()
	var n uint64
	err := conn.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM %s.%s", db, table)).Scan(&n)
	return n, err
}

func engines(t *testing.T, c *testenv.Cluster, i int, db string) map[string]string {
	t.Helper()
	conn := c.Conn(t, i)
	defer func() { _ = conn.Close() }()
	rows, err := conn.Query(context.Background(), "SELECT name, engine FROM system.tables WHERE database = ?", db)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, engine string
		if err := rows.Scan(&name, &engine); err != nil {
			t.Fatal(err)
		}
		out[name] = engine
	}
	return out
}

// Replicated: event_log is a ReplicatedReplacingMergeTree on every server;
// rows inserted through one replica of shard 1 appear on the other.
// Migrating again changes nothing.
func TestClusterReplicated(t *testing.T) {
	e := testenv.NewOn(t, topology.Replicated)
	c := e.Cluster
	for i := 1; i <= len(c.Replicas); i++ {
		got := engines(t, c, i, e.Name)
		if got["event_log"] != "ReplicatedReplacingMergeTree" || got["event_log_dedup"] != "View" || len(got) != 2 {
			t.Errorf("replica %d tables = %v", i, got)
		}
	}
	migrateAgain(t, e)
	wantGuarantee(t, e, "event_log", "ReplicatedReplacingMergeTree")

	// A routed table is made on first use for the topology: replicated,
	// ON CLUSTER.
	create := migrate.EventTableCreator(e.Layout, zerolog.Nop())
	s, err := chsink.Open(context.Background(), e.ClickHouse, chsink.WithInsertSettings(e.Layout.InsertSettings()), chsink.WithCreate(create))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if err := s.Write(context.Background(), "event_log", clusterEvents(300)); err != nil {
		t.Fatal(err)
	}
	// One batch into two tables with one token, then its replay: each
	// table keeps its own deduplication record (the block id is the same
	// in both), so both hold the rows once.
	routed, at := clusterEvents(10), time.Now()
	for range 2 {
		for _, table := range []string{"events_routed", "events_routed_2"} {
			if err := s.WriteBatch(context.Background(), table, routed, "slot:0/1:0/2", at); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantGuarantee(t, e, "events_routed", "ReplicatedReplacingMergeTree")
	for _, table := range []string{"events_routed", "events_routed_2"} {
		testenv.Eventually(t, time.Minute, "10 rows of "+table+" on replica 2", func() error {
			n, err := count(t, c, 2, e.Name, table)
			if err == nil && n != 10 {
				err = fmt.Errorf("%d rows", n)
			}
			return err
		})
		if n, err := count(t, c, 1, e.Name, table); err != nil || n != 10 {
			t.Errorf("%s on replica 1: %d rows (%v), want 10 (the replay dropped, the other table's rows not)", table, n, err)
		}
	}
	for _, i := range []int{1, 2} {
		testenv.Eventually(t, time.Minute, fmt.Sprintf("300 rows on replica %d", i), func() error {
			n, err := count(t, c, i, e.Name, "event_log")
			if err == nil && n != 300 {
				err = fmt.Errorf("%d rows", n)
			}
			return err
		})
	}
}

// Sharded: event_log is Distributed over event_log_local; a synchronous
// insert spreads the rows over both shards by cityHash64(toString(event_id)), and
// each shard's replicas hold its part.
func TestClusterSharded(t *testing.T) {
	e := testenv.NewOn(t, topology.Sharded)
	c := e.Cluster
	for i := 1; i <= len(c.Replicas); i++ {
		got := engines(t, c, i, e.Name)
		if got["event_log"] != "Distributed" || got["event_log_local"] != "ReplicatedReplacingMergeTree" {
			t.Errorf("replica %d tables = %v", i, got)
		}
	}
	migrateAgain(t, e)
	wantGuarantee(t, e, "event_log", "ReplicatedReplacingMergeTree")

	s, err := chsink.Open(context.Background(), e.ClickHouse, chsink.WithInsertSettings(e.Layout.InsertSettings()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if err := s.Write(context.Background(), "event_log", clusterEvents(400)); err != nil {
		t.Fatal(err)
	}
	// insert_distributed_sync: when Write returns, one replica of each shard
	// (either: the Distributed table picks one) holds the shard's part.
	var part [2]uint64
	for i := 1; i <= 4; i++ {
		n, err := count(t, c, i, e.Name, "event_log_local")
		if err != nil {
			t.Fatal(err)
		}
		part[(i-1)/2] = max(part[(i-1)/2], n)
	}
	if part[0]+part[1] != 400 || part[0] == 0 || part[1] == 0 {
		t.Fatalf("the shards hold %d and %d rows right after the insert; want 400 spread over both", part[0], part[1])
	}
	for i := 1; i <= 4; i++ {
		want := part[(i-1)/2]
		testenv.Eventually(t, time.Minute, fmt.Sprintf("replica %d has its shard's %d rows", i, want), func() error {
			n, err := count(t, c, i, e.Name, "event_log_local")
			if err == nil && n != want {
				err = fmt.Errorf("%d rows", n)
			}
			return err
		})
	}
	var total uint64
	if err := e.CH.QueryRow(context.Background(), "SELECT count() FROM event_log FINAL").Scan(&total); err != nil || total != 400 {
		t.Errorf("event_log FINAL = %d (%v), want 400", total, err)
	}
}

// migrateAgain runs the migrations a second time: nothing is applied.
func migrateAgain(t *testing.T, e *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	const q = "SELECT count(), arraySort(groupArray(create_table_query)) FROM system.tables WHERE database = currentDatabase()"
	var before, after uint64
	var ddlBefore, ddlAfter []string
	if err := e.CH.QueryRow(ctx, q).Scan(&before, &ddlBefore); err != nil {
		t.Fatal(err)
	}
	if err := migrate.ClickHouseOn(ctx, e.CH, e.Layout, zerolog.Nop()); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if err := e.CH.QueryRow(ctx, q).Scan(&after, &ddlAfter); err != nil {
		t.Fatal(err)
	}
	if before == 0 || after != before || fmt.Sprint(ddlAfter) != fmt.Sprint(ddlBefore) {
		t.Errorf("tables: %d before the second migrate, %d after:\n%v\nwas\n%v", before, after, ddlAfter, ddlBefore)
	}
}

// A replicated table's ADD COLUMN runs on one replica of every shard, no
// ON CLUSTER: with the first replica of shard 1 unreachable it goes
// through the second, and replication carries it to every server.
func TestClusterAddColumnPerShardPastADeadReplica(t *testing.T) {
	e := testenv.NewOn(t, topology.Replicated)
	ctx := context.Background()
	servers := clusterServers(t, e)
	if len(servers) != 4 || servers[0].Shard != 1 || servers[1].Shard != 1 {
		t.Fatalf("cluster servers %+v, want 2 shards x 2 replicas", servers)
	}
	servers[0].Addr = testenv.FreeAddr(t) // nothing listens there
	shards, err := chsink.ExecPerShard(ctx, e.ClickHouse, servers, "ALTER TABLE event_log ADD COLUMN x Nullable(Int64)")
	if err != nil || shards != 2 {
		t.Fatalf("ExecPerShard = %d shards, %v; want 2, nil", shards, err)
	}
	waitColumnEverywhere(t, e, "x")
	// A refusal stops there, permanent: another replica would refuse too.
	if _, err := chsink.ExecPerShard(ctx, e.ClickHouse, servers, "ALTER TABLE no_such_table ADD COLUMN y Int8"); !retry.IsPermanent(err) {
		t.Fatalf("ExecPerShard on a missing table: %v, want a permanent error", err)
	}
}

// With no replica of a shard reachable from the relay (remote_servers may
// name hosts only the servers resolve), the column goes ON CLUSTER: the
// servers reach each other.
func TestClusterAddColumnOnClusterWhenAShardIsOutOfReach(t *testing.T) {
	e := testenv.NewOn(t, topology.Replicated)
	ctx := context.Background()
	servers := clusterServers(t, e)
	for i := range servers {
		if servers[i].Shard == 2 {
			servers[i].Addr = testenv.FreeAddr(t)
		}
	}
	s, err := chsink.Open(ctx, e.ClickHouse, chsink.WithLayout(e.Layout))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if err := chsink.AddColumnOn(ctx, s, "event_log", servers, "y", "Nullable(Int64)"); err != nil {
		t.Fatalf("AddColumnOn: %v", err)
	}
	waitColumnEverywhere(t, e, "y")
}

// waitColumnEverywhere waits until every server of the cluster has
// event_log.column (replication carries an ALTER asynchronously).
func waitColumnEverywhere(t *testing.T, e *testenv.Env, column string) {
	t.Helper()
	q := fmt.Sprintf("SELECT count() FROM system.columns WHERE database = '%s' AND table = 'event_log' AND name = '%s'", e.Name, column)
	for i := 1; i <= len(e.Cluster.Replicas); i++ {
		testenv.Eventually(t, time.Minute, fmt.Sprintf("server %d has event_log.%s", i, column), func() error {
			conn := e.Cluster.Conn(t, i)
			defer func() { _ = conn.Close() }()
			var n uint64
			if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
				return err
			}
			if n != 1 {
				return fmt.Errorf("no column %s", column)
			}
			return nil
		})
	}
}

// clusterServers lists e's cluster as the relay reads it.
func clusterServers(t *testing.T, e *testenv.Env) []chsink.ClusterServer {
	t.Helper()
	servers, err := chsink.ClusterServers(context.Background(), e.CH, e.Layout.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	return servers
}

// wantGuarantee checks that table (under a Distributed one, its local
// table, of engine) drops a replay: exactly once, a plain count() exact.
func wantGuarantee(t *testing.T, e *testenv.Env, table, engine string) {
	t.Helper()
	g, ok, err := chsink.ReadGuarantee(context.Background(), e.CH, table)
	if err != nil || !ok || g.Level != chsink.ExactlyOnce || g.Engine != engine || g.Upgrade != "" {
		t.Errorf("ReadGuarantee(%s) = %+v, %t, %v; want exactly once on %s", table, g, ok, err, engine)
	}
}
