package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
)

// `relay migrate` with CLICKHOUSE_TOPOLOGY=sharded on a database the
// cluster has but the relay never migrated: every server gets the
// replicated event_log_local and the Distributed event_log; a second run
// changes nothing. Without CLICKHOUSE_CLUSTER it refuses (exit 2).
func TestClusterMigrateCommand(t *testing.T) {
	e := testenv.NewOn(t, topology.Sharded)
	c := e.Cluster
	ctx := context.Background()
	db := e.Name + "_m"
	admin := c.Conn(t, 1)
	defer func() { _ = admin.Close() }()
	if err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s ON CLUSTER %s", db, c.Name)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn := c.Conn(t, 1)
		defer func() { _ = conn.Close() }()
		_ = conn.Exec(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s ON CLUSTER %s", db, c.Name))
	})
	env := e.RelayEnv("CLICKHOUSE_URL=" + c.URL(t, db))

	for run := 1; run <= 2; run++ {
		if code, out := runRelayCmd(t, 3*time.Minute, env, "migrate"); code != 0 {
			t.Fatalf("relay migrate (run %d) exit %d:\n%s", run, code, out)
		}
	}
	for i := 1; i <= len(c.Replicas); i++ {
		conn := c.Conn(t, i)
		var engines string
		err := conn.QueryRow(ctx, `SELECT arrayStringConcat(groupArray(concat(name, ':', engine)), ' ') FROM
			(SELECT name, engine FROM system.tables WHERE database = ? ORDER BY name)`, db).Scan(&engines)
		_ = conn.Close()
		want := "event_log:Distributed event_log_dedup:View event_log_local:ReplicatedReplacingMergeTree"
		if err != nil || engines != want {
			t.Errorf("replica %d tables = %q (%v), want %q", i, engines, err, want)
		}
	}

	code, out := runRelayCmd(t, time.Minute, append(env, "CLICKHOUSE_CLUSTER="), "migrate")
	if code != 2 || !strings.Contains(out, "CLICKHOUSE_CLUSTER (--clickhouse-cluster) is required for CLICKHOUSE_TOPOLOGY=sharded") {
		t.Errorf("relay migrate without CLICKHOUSE_CLUSTER: exit %d, want 2 naming the setting:\n%s", code, out)
	}
}
