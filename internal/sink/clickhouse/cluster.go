package clickhouse

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ClusterServer is one server of a cluster, as remote_servers names it.
type ClusterServer struct {
	Shard, Replica uint32
	Addr           string // host:port of its native protocol
}

// ClusterServers reads the servers of cluster from system.clusters on the
// server conn reached, in shard and replica order.
func ClusterServers(ctx context.Context, conn driver.Conn, cluster string) ([]ClusterServer, error) {
	rows, err := conn.Query(ctx, `SELECT shard_num, replica_num, host_name, port FROM system.clusters
		WHERE cluster = ? ORDER BY shard_num, replica_num`, cluster)
	if err != nil {
		return nil, classify("read system.clusters", err)
	}
	defer rows.Close()
	var out []ClusterServer
	for rows.Next() {
		var sv ClusterServer
		var host string
		var port uint16
		if err := rows.Scan(&sv.Shard, &sv.Replica, &host, &port); err != nil {
			return nil, classify("read system.clusters", err)
		}
		sv.Addr = net.JoinHostPort(host, strconv.Itoa(int(port)))
		out = append(out, sv)
	}
	if err := rows.Err(); err != nil {
		return nil, classify("read system.clusters", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cluster %q is not in the remote_servers of the server CLICKHOUSE_URL reached", cluster)
	}
	return out, nil
}

// clusterServers reads the cluster's servers through CLICKHOUSE_URL.
func (s *Sink) clusterServers(ctx context.Context) ([]ClusterServer, error) {
	conn, err := Connect(ctx, s.dsn)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	return ClusterServers(ctx, conn, s.opts.layout.Cluster)
}
