package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
)

// TestEvolutionClusterAddColumn: on the replicated and sharded topologies
// the relay adds a new outbox column on every server before the rows that
// carry it are inserted (the replicated table on one replica of each
// shard, sharded then the Distributed event_log server by server; nothing
// ON CLUSTER); every event arrives once with its value.
func TestEvolutionClusterAddColumn(t *testing.T) {
	t.Parallel()
	for _, topo := range []topology.Topology{topology.Replicated, topology.Sharded} {
		t.Run(string(topo), func(t *testing.T) {
			t.Parallel()
			e := testenv.NewOn(t, topo)
			ctx := context.Background()
			p := startRelay(t, e)
			waitLog(t, p, logStreaming, time.Minute)
			faultInsert(ctx, t, e, "before", 10)
			e.WaitDelivered(t, 10, 2*time.Minute, p)

			faultExec(ctx, t, e, "ALTER TABLE outbox_event ADD COLUMN user_ref bigint")
			evoWithValues(ctx, t, e, "with-ref", 20)
			e.WaitDelivered(t, 30, 2*time.Minute, p)
			tables := []string{"event_log"}
			if topo == topology.Sharded {
				tables = append(tables, "event_log_local")
			}
			for i := range e.Cluster.Replicas {
				conn := e.Cluster.Conn(t, i+1)
				defer func() { _ = conn.Close() }()
				for _, table := range tables {
					var typ string
					q := fmt.Sprintf("SELECT type FROM system.columns WHERE database = '%s' AND table = '%s' AND name = 'user_ref'", e.Name, table)
					if err := conn.QueryRow(ctx, q).Scan(&typ); err != nil || typ != "Nullable(Int64)" {
						t.Errorf("server %d: %s.user_ref is %q (%v), want Nullable(Int64) on every server", i+1, table, typ, err)
					}
				}
			}
			evoCheckUserRef(ctx, t, e, "with-ref", 20)
		})
	}
}
