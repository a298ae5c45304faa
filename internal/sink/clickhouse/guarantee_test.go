package clickhouse

import (
	"reflect"
	"strings"
	"testing"
)

// The level each kind of table gives, from what the catalog says, on
// servers with and without insert_deduplication_token.
func TestGuaranteeOf(t *testing.T) {
	const upNR = "ALTER TABLE `t` MODIFY SETTING non_replicated_deduplication_window = 1000"
	tests := []struct {
		name               string
		engine, full, key  string
		defaults           map[string]string
		token              bool
		cluster            string
		want               Level
		wantUpgrade        string
		wantReasonContains string
	}{
		{name: "replicated", engine: "ReplicatedReplacingMergeTree", full: "ReplicatedReplacingMergeTree('/p', '{replica}', commit_lsn) ORDER BY x SETTINGS replicated_deduplication_window = 1000, index_granularity = 8192",
			key: "event_type, event_id", want: ExactlyOnce, wantReasonContains: "drops a repeated insert"},
		{name: "replicated, server default window", engine: "ReplicatedMergeTree", full: "ReplicatedMergeTree('/p', '{replica}') ORDER BY x", defaults: map[string]string{"replicated_deduplication_window": "100"},
			want: ExactlyOnce},
		{name: "replicated, window 0", engine: "ReplicatedMergeTree", full: "ReplicatedMergeTree('/p', '{replica}') ORDER BY x SETTINGS replicated_deduplication_window = 0",
			want: AtLeastOnce, wantUpgrade: "ALTER TABLE `t` MODIFY SETTING replicated_deduplication_window = 1000"},
		{name: "cloud", engine: "SharedReplacingMergeTree", want: ExactlyOnce},
		{name: "22.2+ with the window", engine: "MergeTree", full: "MergeTree ORDER BY x SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 8192", token: true,
			want: ExactlyOnce, wantReasonContains: "non_replicated_deduplication_window = 1000"},
		{name: "22.2+ with the server's window", engine: "MergeTree", full: "MergeTree ORDER BY x", defaults: map[string]string{"non_replicated_deduplication_window": "10"}, token: true,
			want: ExactlyOnce},
		{name: "22.2+ without the window", engine: "MergeTree", full: "MergeTree ORDER BY x SETTINGS index_granularity = 8192", defaults: map[string]string{"non_replicated_deduplication_window": "0"}, token: true,
			want: AtLeastOnce, wantUpgrade: upNR},
		{name: "22.2+ replacing by event_id", engine: "ReplacingMergeTree", full: "ReplacingMergeTree(commit_lsn) ORDER BY (event_type, event_date_time, event_id)", key: "event_type, event_date_time, event_id", token: true,
			want: ExactlyOnceFinal, wantUpgrade: upNR},
		{name: "18.16 replacing by event_id", engine: "ReplacingMergeTree", key: "event_type, event_date_time, event_id", want: ExactlyOnceFinal},
		{name: "18.16 plain MergeTree", engine: "MergeTree", key: "event_date_time, event_type", want: AtLeastOnce, wantReasonContains: "nothing short of recreating the table"},
		{name: "replacing by other columns", engine: "ReplacingMergeTree", key: "event_date_time, event_type", want: AtLeastOnce, wantReasonContains: "lacks event_id"},
		{name: "event_id only inside an expression", engine: "ReplacingMergeTree", key: "cityHash64(event_id)", want: AtLeastOnce},
		{name: "Log", engine: "Log", token: true, want: AtLeastOnce, wantReasonContains: "engine Log has no deduplication"},
		{name: "local table of a Distributed one", engine: "MergeTree", token: true, cluster: "prod",
			want: AtLeastOnce, wantUpgrade: "ALTER TABLE `db`.`t` ON CLUSTER `prod` MODIFY SETTING non_replicated_deduplication_window = 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := tableInfo{database: "db", name: "t", engine: tt.engine, full: tt.full, sortingKey: tt.key}
			g := guaranteeOf(info, tableSettings(tt.full), tt.defaults, tt.token, tt.cluster)
			if g.Level != tt.want || g.Upgrade != tt.wantUpgrade || !strings.Contains(g.Reason, tt.wantReasonContains) {
				t.Errorf("guaranteeOf = %+v\nwant level %q, upgrade %q, reason holding %q", g, tt.want, tt.wantUpgrade, tt.wantReasonContains)
			}
		})
	}
}

func TestEngineArgs(t *testing.T) {
	tests := []struct {
		full string
		want []string
	}{
		{"Distributed('prod', 'db', 'event_log_local', cityHash64(toString(event_id)))", []string{"'prod'", "'db'", "'event_log_local'", "cityHash64(toString(event_id))"}},
		{`Distributed('a,b', 'd\'x', t)`, []string{"'a,b'", `'d\'x'`, "t"}},
		{"Log", nil},
	}
	for _, tt := range tests {
		if got := engineArgs(tt.full); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("engineArgs(%q) = %q, want %q", tt.full, got, tt.want)
		}
	}
	if got := unquote(`'d\'x'`); got != "d'x" {
		t.Errorf("unquote = %q", got)
	}
}

func TestTableSettings(t *testing.T) {
	got := tableSettings("MergeTree PARTITION BY toYYYYMM(d) ORDER BY (a, b) SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000")
	want := map[string]string{"index_granularity": "8192", "non_replicated_deduplication_window": "1000"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tableSettings = %v, want %v", got, want)
	}
	if got := tableSettings("Log"); len(got) != 0 {
		t.Errorf("tableSettings(Log) = %v, want none", got)
	}
}
