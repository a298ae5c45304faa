package status

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
)

// replicaTimeout bounds the check of one replica (they run in parallel).
const replicaTimeout = 3 * time.Second

// Replica is one server of the cluster of CLICKHOUSE_CLUSTER (replicated
// and sharded topologies), as its remote_servers entry names it.
type Replica struct {
	Shard   uint32 `json:"shard"`
	Replica uint32 `json:"replica"`
	// Host is host:port of its native protocol.
	Host string `json:"host"`
	// Answers: a connection to it alone was opened and queried.
	Answers bool `json:"answers"`
	// DelaySeconds is system.replicas.absolute_delay of its copy of the
	// table that holds the rows: how far it is behind the newest part it
	// knows of. Null when it did not answer.
	DelaySeconds *uint64 `json:"delay_seconds"`
	// Readonly: the replica lost its ZooKeeper session; inserts through it
	// fail. Null when it did not answer.
	Readonly *bool `json:"readonly"`
	// Error says why it did not answer or has no copy of the table.
	Error string `json:"error"`
}

// gatherReplicas lists the cluster's servers (system.clusters on the server
// conn reached) and checks each on a connection of its own, and its copy
// of table unless table is "".
func gatherReplicas(ctx context.Context, conn driver.Conn, r *Report, t Target, table string) error {
	servers, err := chsink.ClusterServers(ctx, conn, t.Layout.Cluster)
	if err != nil {
		return err
	}
	r.Replicas = make([]Replica, len(servers))
	for i, sv := range servers {
		r.Replicas[i] = Replica{Shard: sv.Shard, Replica: sv.Replica, Host: sv.Addr}
	}
	if table != "" {
		table = t.Layout.LocalTable(table)
	}
	var wg sync.WaitGroup
	for i := range r.Replicas {
		wg.Go(func() { checkReplica(ctx, t.ClickHouseURL, table, &r.Replicas[i]) })
	}
	wg.Wait()
	return nil
}

// checkReplica connects to rep alone (CLICKHOUSE_URL's user and database)
// and reads its replication state of table.
func checkReplica(ctx context.Context, dsn, table string, rep *Replica) {
	ctx, cancel := context.WithTimeout(ctx, replicaTimeout)
	defer cancel()
	conn, err := chsink.ConnectHost(ctx, dsn, rep.Host)
	if err != nil {
		rep.Error = err.Error()
		return
	}
	defer func() { _ = conn.Close() }()
	rep.Answers = true
	if table == "" {
		return
	}
	if err := readReplica(ctx, conn, table, rep); err != nil {
		rep.Error = fmt.Sprintf("no replicated %s here: %v", table, err)
	}
}

// readReplica reads the replication state of table on the server conn
// reached.
func readReplica(ctx context.Context, conn driver.Conn, table string, rep *Replica) error {
	var delay uint64
	var readonly uint8
	err := conn.QueryRow(ctx, `SELECT absolute_delay, is_readonly FROM system.replicas
		WHERE database = currentDatabase() AND table = ?`, table).Scan(&delay, &readonly)
	if err != nil {
		return err
	}
	ro := readonly != 0
	rep.DelaySeconds, rep.Readonly = &delay, &ro
	return nil
}
