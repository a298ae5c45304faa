package clickhouse

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outbox-relay/relay/internal/topology"
)

// The rendered DDL for each server generation, alone and ON CLUSTER.
func TestAddColumnDDL(t *testing.T) {
	for _, tt := range []struct {
		name    string
		v       driver.ServerVersion
		cluster string
		want    string
	}{
		{"18.16", version(18, 16), "", "ALTER TABLE `event_log` ADD COLUMN `user_id` Nullable(UUID)"},
		{"18.16 cluster", version(18, 16), "c1", "ALTER TABLE `event_log` ON CLUSTER `c1` ADD COLUMN `user_id` Nullable(UUID)"},
		{"24.8", version(24, 8), "", "ALTER TABLE `event_log` ADD COLUMN IF NOT EXISTS `user_id` Nullable(UUID)"},
		{"24.8 cluster", version(24, 8), "prod", "ALTER TABLE `event_log` ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS `user_id` Nullable(UUID)"},
	} {
		if got := addColumnDDL("event_log", tt.cluster, "user_id", "Nullable(UUID)", CapsOf(tt.v)); got != tt.want {
			t.Errorf("%s: %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

// Sharded: the local tables first, then the Distributed table over them;
// ON CLUSTER only as the way through for a shard the relay cannot reach.
func TestAddColumnDDLsPerTopology(t *testing.T) {
	caps := CapsOf(version(24, 8))
	for _, tt := range []struct {
		layout topology.Layout
		want   []alterStep
	}{
		{topology.Layout{Topology: topology.Single}, []alterStep{{ddl: "ALTER TABLE `event_log` ADD COLUMN IF NOT EXISTS `a` Int64"}}},
		{topology.Layout{Topology: topology.Cloud}, []alterStep{{ddl: "ALTER TABLE `event_log` ADD COLUMN IF NOT EXISTS `a` Int64"}}},
		{topology.Layout{Topology: topology.Replicated, Cluster: "r"}, []alterStep{
			{ddl: "ALTER TABLE `event_log` ADD COLUMN IF NOT EXISTS `a` Int64", scope: alterPerShard,
				onCluster: "ALTER TABLE `event_log` ON CLUSTER `r` ADD COLUMN IF NOT EXISTS `a` Int64"},
		}},
		{topology.Layout{Topology: topology.Sharded, Cluster: "s"}, []alterStep{
			{ddl: "ALTER TABLE `event_log_local` ADD COLUMN IF NOT EXISTS `a` Int64", scope: alterPerShard,
				onCluster: "ALTER TABLE `event_log_local` ON CLUSTER `s` ADD COLUMN IF NOT EXISTS `a` Int64"},
			{ddl: "ALTER TABLE `event_log` ADD COLUMN IF NOT EXISTS `a` Int64", scope: alterEveryHost},
		}},
	} {
		if got := addColumnSteps("event_log", tt.layout, "a", "Int64", caps); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %+v\nwant %+v", tt.layout.Topology, got, tt.want)
		}
	}
}

// An ADD COLUMN that lost a race to another one is done; any other failure is not.
func TestColumnExists(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"DUPLICATE_COLUMN", &ch.Exception{Code: 15}, true},
		{"ILLEGAL_COLUMN", &ch.Exception{Code: 44}, true},
		{"wrapped", fmt.Errorf("ALTER TABLE: %w", &ch.Exception{Code: 15}), true},
		{"UNKNOWN_TABLE", &ch.Exception{Code: 60}, false},
		{"not an exception", errors.New("connection reset"), false},
	} {
		if got := columnExists(tt.err); got != tt.want {
			t.Errorf("%s: columnExists(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
