// Package topology is how the ClickHouse side is laid out: one server, one
// shard of replicas, several shards of replicas, or ClickHouse Cloud. It is
// read once from CLICKHOUSE_TOPOLOGY and CLICKHOUSE_CLUSTER; `relay migrate`
// renders its DDL from it and `relay run` chooses where its INSERT goes.
//
// The table readers query is event_log in every topology: in sharded it is
// the Distributed table over the shards' event_log_local.
package topology

import (
	"errors"
	"fmt"
	"regexp"
)

// Topology is one of the layouts the relay supports.
type Topology string

const (
	// Single is one server with a local ReplacingMergeTree (the default).
	Single Topology = "single"
	// Replicated is one shard of replicas (ZooKeeper or ClickHouse Keeper):
	// ON CLUSTER DDL, ReplicatedReplacingMergeTree, inserts into the local
	// table of any reachable replica.
	Replicated Topology = "replicated"
	// Sharded is several shards of replicas: local replicated tables and a
	// Distributed event_log keyed by cityHash64(toString(event_id)), inserted into
	// synchronously.
	Sharded Topology = "sharded"
	// Cloud is ClickHouse Cloud: plain engines (Cloud makes them
	// SharedMergeTree), no ON CLUSTER, no Distributed.
	Cloud Topology = "cloud"
)

// All lists the topologies in the order the help text names them.
var All = []Topology{Single, Replicated, Sharded, Cloud}

// Layout is a topology and, for replicated and sharded, the remote_servers
// cluster its DDL runs ON CLUSTER.
type Layout struct {
	Topology Topology
	Cluster  string
}

// clusterName is what a remote_servers entry can be called (an XML element
// name; the DDL quotes it as well).
var clusterName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,127}$`)

// Parse reads CLICKHOUSE_TOPOLOGY and CLICKHOUSE_CLUSTER. The cluster is
// required for replicated and sharded and rejected for single and cloud
// (Cloud replicates DDL by itself; a cluster set there is a mistake, not
// something to ignore silently). Every problem is returned.
func Parse(topology, cluster string) (Layout, error) {
	l := Layout{Topology: Topology(topology), Cluster: cluster}
	var errs []error
	switch l.Topology {
	case Single, Cloud:
		if cluster != "" {
			errs = append(errs, fmt.Errorf("CLICKHOUSE_CLUSTER is only for the replicated and sharded topologies; unset it for CLICKHOUSE_TOPOLOGY=%s", topology))
		}
	case Replicated, Sharded:
		switch {
		case cluster == "":
			errs = append(errs, fmt.Errorf("CLICKHOUSE_CLUSTER (--clickhouse-cluster) is required for CLICKHOUSE_TOPOLOGY=%s: the remote_servers cluster the DDL runs ON CLUSTER", topology))
		case !clusterName.MatchString(cluster):
			errs = append(errs, fmt.Errorf("CLICKHOUSE_CLUSTER %q: use letters, digits, '_', '.' or '-', starting with a letter or '_'", cluster))
		}
	default:
		errs = append(errs, fmt.Errorf("CLICKHOUSE_TOPOLOGY %q: use single, replicated, sharded or cloud", topology))
	}
	return l, errors.Join(errs...)
}

// OnCluster reports whether DDL runs ON CLUSTER (replicated and sharded).
func (l Layout) OnCluster() bool {
	return l.Topology == Replicated || l.Topology == Sharded
}

// LocalTable is the table that stores the rows: event_log, or in sharded
// event_log_local under the Distributed event_log.
func (l Layout) LocalTable(table string) string {
	if l.Topology == Sharded {
		return table + "_local"
	}
	return table
}

// InsertSettings are the settings the relay's INSERT needs in l: a sharded
// insert returns only when every shard holds its part (so an acknowledged
// event is in a replicated table, not in a Distributed table's queue on one
// server's disk).
func (l Layout) InsertSettings() map[string]int {
	if l.Topology == Sharded {
		return map[string]int{"insert_distributed_sync": 1}
	}
	return nil
}
