package status

import (
	"slices"
	"testing"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/topology"
)

func TestRoutedTables(t *testing.T) {
	db := []chTable{
		{"event_log", "ReplacingMergeTree"}, {"events_", "MergeTree"}, {"events_login", "ReplacingMergeTree"},
		{"events_login_dedup", "View"}, {"events_login_local", "ReplicatedReplacingMergeTree"},
		{"events_signup", "Distributed"}, {"events_signup_local", "ReplicatedReplacingMergeTree"},
		{"x_events_a", "MergeTree"}, {"log_a_v1", "MergeTree"}, {"log__v1", "MergeTree"}, {"log_b_v2", "MergeTree"},
	}
	tests := []struct {
		name, tpl string
		layout    topology.Layout
		want      []string
	}{
		{"prefix, single", "events_{event_type}", topology.Layout{Topology: topology.Single},
			[]string{"events_login", "events_login_local", "events_signup", "events_signup_local"}},
		{"prefix, sharded: no local tables", "events_{event_type}", topology.Layout{Topology: topology.Sharded, Cluster: "c"},
			[]string{"events_login", "events_signup"}},
		{"prefix and suffix", "log_{event_type}_v1", topology.Layout{Topology: topology.Single}, []string{"log_a_v1"}},
		{"nothing routed yet", "billing_{event_type}", topology.Layout{Topology: topology.Single}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, tb := range routedTables(config.Stream{ClickHouseTable: tt.tpl}, db, tt.layout) {
				got = append(got, tb.name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("routedTables(%q) = %q, want %q", tt.tpl, got, tt.want)
			}
		})
	}
}

// The stream named default comes first (the report's top-level figures are
// its own); the others keep their order.
func TestTargetStreamsOrder(t *testing.T) {
	names := func(ss []config.Stream) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Name)
		}
		return out
	}
	for _, tt := range []struct{ in, want []string }{
		{nil, []string{"default"}},
		{[]string{"app", "billing"}, []string{"app", "billing"}},
		{[]string{"app", "default", "billing"}, []string{"default", "app", "billing"}},
		{[]string{"default", "app"}, []string{"default", "app"}},
	} {
		var tg Target
		for _, n := range tt.in {
			tg.Streams = append(tg.Streams, config.Stream{Name: n})
		}
		if got := names(tg.streams()); !slices.Equal(got, tt.want) {
			t.Errorf("streams of %q = %q, want %q", tt.in, got, tt.want)
		}
		if len(tt.in) > 0 && !slices.Equal(names(tg.Streams), tt.in) {
			t.Errorf("streams() reordered the target's own slice: %q", names(tg.Streams))
		}
	}
}
