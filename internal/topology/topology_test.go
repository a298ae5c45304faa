package topology

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, topology, cluster string
		want                    Layout
		wantErr                 string
	}{
		{name: "single", topology: "single", want: Layout{Topology: Single}},
		{name: "cloud", topology: "cloud", want: Layout{Topology: Cloud}},
		{name: "replicated", topology: "replicated", cluster: "prod", want: Layout{Replicated, "prod"}},
		{name: "sharded", topology: "sharded", cluster: "my_cluster.eu-1", want: Layout{Sharded, "my_cluster.eu-1"}},
		{name: "replicated without cluster", topology: "replicated", wantErr: "CLICKHOUSE_CLUSTER (--clickhouse-cluster) is required for CLICKHOUSE_TOPOLOGY=replicated"},
		{name: "sharded without cluster", topology: "sharded", wantErr: "is required for CLICKHOUSE_TOPOLOGY=sharded"},
		{name: "single with cluster", topology: "single", cluster: "prod", wantErr: "only for the replicated and sharded"},
		{name: "cloud with cluster", topology: "cloud", cluster: "default", wantErr: "unset it for CLICKHOUSE_TOPOLOGY=cloud"},
		{name: "cluster with a quote", topology: "sharded", cluster: "a`b", wantErr: "use letters, digits"},
		{name: "unknown topology", topology: "multi", wantErr: `CLICKHOUSE_TOPOLOGY "multi": use single, replicated, sharded or cloud`},
		{name: "empty topology", topology: "", wantErr: `CLICKHOUSE_TOPOLOGY ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.topology, tt.cluster)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q, %q) error = %v, want one containing %q", tt.topology, tt.cluster, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Parse(%q, %q) = %+v, %v; want %+v", tt.topology, tt.cluster, got, err, tt.want)
			}
		})
	}
}

func TestLayout(t *testing.T) {
	tests := []struct {
		layout    Layout
		onCluster bool
		local     string
		settings  int
	}{
		{Layout{Topology: Single}, false, "event_log", 0},
		{Layout{Replicated, "c"}, true, "event_log", 0},
		{Layout{Sharded, "c"}, true, "event_log_local", 1},
		{Layout{Topology: Cloud}, false, "event_log", 0},
	}
	for _, tt := range tests {
		if got := tt.layout.OnCluster(); got != tt.onCluster {
			t.Errorf("%s OnCluster = %v", tt.layout.Topology, got)
		}
		if got := tt.layout.LocalTable("event_log"); got != tt.local {
			t.Errorf("%s LocalTable = %s, want %s", tt.layout.Topology, got, tt.local)
		}
		if got := tt.layout.InsertSettings()["insert_distributed_sync"]; got != tt.settings {
			t.Errorf("%s insert_distributed_sync = %d, want %d", tt.layout.Topology, got, tt.settings)
		}
	}
}
