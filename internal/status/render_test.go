package status

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func fixedReport(edit func(r *Report)) *Report {
	r := healthy()
	r.SchemaVersion = SchemaVersion
	r.Time = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	r.PostgresVersion = "15.18"
	r.ConfirmedFlushLSN, r.RestartLSN, r.CurrentWALLSN = ptr("0/1A2B3C4"), ptr("0/1A2B000"), "0/1A2B7C4"
	r.LagBytes, r.RetainedWALBytes = ptr(int64(300<<20)), ptr(int64(301<<20))
	r.MaxSlotWALKeepSize, r.MaxSlotWALKeepSizeBytes = "10GB", 10<<30
	r.SafeWALSize = ptr(int64(9 << 30))
	r.LastReplyAgeSeconds = ptr(1.25)
	r.ClickHouseRows = ptr(uint64(1234))
	r.ClickHouseNewestEvent = ptr(time.Date(2025, 3, 4, 5, 6, 5, 123456000, time.UTC))
	r.Failover = &Failover{SynchronizedStandbySlots: []string{}, Standbys: []StandbySlot{}}
	r.OutboxTable, r.ClickHouseTable = "outbox_event", "event_log"
	if edit != nil {
		edit(&r)
	}
	judgeFailover(&r)
	r.Judge(DefaultThresholds())
	return &r
}

func TestWriteGolden(t *testing.T) {
	tests := []struct {
		name string
		r    *Report
	}{
		{"warning", fixedReport(nil)},
		{"columns", fixedReport(func(r *Report) {
			r.LagBytes = ptr(int64(512))
			r.Columns = []ColumnMapping{
				{Name: "user_id", PostgresType: "uuid", ClickHouseType: "Nullable(UUID)", EventLogType: "Nullable(UUID)", State: "written"},
				{Name: "amount", PostgresType: "numeric(12,2)", ClickHouseType: "Nullable(Decimal(12, 2))", State: "missing"},
				{Name: "tenant", PostgresType: "text", ClickHouseType: "Nullable(String)", EventLogType: "Nullable(Int64)", State: "type differs"},
				{Name: "addr", PostgresType: "inet", State: "no mapping"},
			}
		})},
		{"missing_slot", fixedReport(func(r *Report) {
			r.SlotExists, r.Active, r.ActivePID, r.Plugin, r.SlotDatabase, r.SlotInDatabase = false, false, nil, "", "", false
			r.ConfirmedFlushLSN, r.RestartLSN, r.LagBytes, r.RetainedWALBytes, r.SafeWALSize = nil, nil, nil, nil, nil
			r.WALStatus, r.LastReplyAgeSeconds = WALStatusMissing, nil
			r.MaxSlotWALKeepSize, r.MaxSlotWALKeepSizeBytes = "-1", -1
			r.BacklogRows, r.OldestBacklogAgeSeconds = 0, nil
			r.ClickHouseReachable, r.ClickHouseVersion, r.ClickHouseRows, r.ClickHouseNewestEvent = false, "", nil, nil
			r.ClickHouseError = "clickhouse ping: dial tcp 127.0.0.1:9000: connect: connection refused"
		})},
		{"message_mode_recreated", fixedReport(func(r *Report) {
			r.MessagePrefix = "outbox"
			r.EventsLostAt = ptr(time.Date(2025, 3, 4, 4, 0, 0, 0, time.UTC))
		})},
		{"cluster", fixedReport(func(r *Report) {
			r.ClickHouseTopology, r.ClickHouseCluster = "sharded", "prod"
			r.LagBytes = ptr(int64(512))
			r.Replicas = []Replica{
				{Shard: 1, Replica: 1, Host: "ch1:9000", Answers: true, DelaySeconds: ptr(uint64(0)), Readonly: ptr(false)},
				{Shard: 1, Replica: 2, Host: "ch2:9000", Answers: true, DelaySeconds: ptr(uint64(42)), Readonly: ptr(true)},
				{Shard: 2, Replica: 1, Host: "ch3:9000", Error: "clickhouse ping: dial tcp 10.0.0.3:9000: connect: connection refused"},
				{Shard: 2, Replica: 2, Host: "ch4:9000", Answers: true, DelaySeconds: ptr(uint64(1)), Readonly: ptr(false)},
			}
		})},
		{"failover_ready", fixedReport(func(r *Report) {
			r.PostgresVersion = "17.12 (Debian 17.12-1)"
			r.LagBytes = ptr(int64(512))
			r.Failover = &Failover{Supported: true, SlotFailover: true, SynchronizedStandbySlots: []string{"standby1"},
				Standbys: []StandbySlot{{Name: "standby1", Physical: true, Active: true, State: "streaming"}}}
		})},
		{"failover_standby_down", fixedReport(func(r *Report) {
			r.PostgresVersion = "17.12 (Debian 17.12-1)"
			r.LagBytes = ptr(int64(512))
			r.Failover = &Failover{Supported: true, SlotFailover: true, SynchronizedStandbySlots: []string{"standby1"},
				Standbys: []StandbySlot{{Name: "standby1", Physical: true}}}
		})},
		{"streams", fixedReport(func(r *Report) {
			r.LagBytes = ptr(int64(512))
			r.DeadLetters = ptr(int64(2))
			twoStreams(r)
			r.Streams[0].Tables[0].Rows, r.Streams[0].Tables[0].Guarantee = ptr(uint64(1234)), "exactly once through FINAL"
			r.Streams[1].DeadLetters, r.Streams[1].BacklogRows, r.Streams[1].OldestBacklogAgeSeconds = ptr(int64(2)), 7, ptr(2.5)
			r.Streams[1].Tables = append(r.Streams[1].Tables,
				TableStatus{Name: "billing_refund", Exists: true, Engine: "MergeTree", Rows: ptr(uint64(0)), Guarantee: GuaranteeUnknown})
			r.Streams = append(r.Streams, StreamStatus{Name: "audit", Outbox: "audit.outbox", OutboxExists: true,
				ClickHouseTable: "audit_log", Tables: []TableStatus{{Name: "audit_log", Guarantee: GuaranteeUnknown, Error: "table audit_log does not exist"}}})
			r.PublicationHasTable = false
		})},
		{"routed", fixedReport(func(r *Report) {
			r.LagBytes = ptr(int64(512))
			r.ClickHouseTable, r.ClickHouseRows, r.ClickHouseNewestEvent = "events_{event_type}", nil, nil
			r.Streams = []StreamStatus{{Name: "default", Outbox: "outbox_event", OutboxExists: true, InPublication: true, BacklogRows: 3,
				OldestBacklogAgeSeconds: ptr(0.4), DeadLetters: ptr(int64(0)), ClickHouseTable: "events_{event_type}", Routed: true,
				Tables: []TableStatus{
					{Name: "events_signup", Exists: true, Engine: "ReplacingMergeTree", Rows: ptr(uint64(40)), Guarantee: "exactly once through FINAL"},
					{Name: "events_login", Exists: true, Engine: "ReplacingMergeTree", Rows: ptr(uint64(2)), Guarantee: GuaranteeUnknown},
				}}}
		})},
		{"inactive_old", fixedReport(func(r *Report) {
			r.Active, r.ActivePID, r.LastReplyAgeSeconds = false, nil, nil
			r.LagBytes = ptr(int64(512))
			r.BacklogRows, r.OldestBacklogAgeSeconds = 42, ptr(75.5)
			r.DeadLetters = ptr(int64(3))
			r.ClickHouseRows, r.ClickHouseNewestEvent = ptr(uint64(0)), nil
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var table, js bytes.Buffer
			if err := WriteTable(&table, tt.r); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&js, tt.r); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name+".txt", table.Bytes())
			var indented bytes.Buffer
			if err := json.Indent(&indented, js.Bytes(), "", "  "); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name+".json", indented.Bytes())
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/status -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestJSONSchemaKeys pins the documented keys: they may be added to, never
// renamed or removed.
func TestJSONSchemaKeys(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, fixedReport(nil)); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema_version", "time", "slot", "slot_exists", "plugin", "active", "active_pid",
		"confirmed_flush_lsn", "restart_lsn", "lag_bytes", "retained_wal_bytes", "wal_status", "safe_wal_size",
		"max_slot_wal_keep_size", "inactive_seconds", "backlog_rows", "oldest_backlog_age_seconds", "dead_letters",
		"clickhouse_reachable", "clickhouse_version", "clickhouse_rows", "clickhouse_newest_event_time",
		"verdict", "reasons"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing from %s", k, buf.String())
		}
	}
	if reasons, ok := m["reasons"].([]any); !ok || !slices.ContainsFunc(reasons, func(v any) bool { return v != "" }) {
		t.Errorf("reasons = %v, want a non-empty list", m["reasons"])
	}
}

// Text an attacker controls (a column name, an error from a server) must
// reach a terminal inert: no escape sequence may clear the screen, move the
// cursor or set the window title.
func TestWriteTableEscapesControlCharacters(t *testing.T) {
	const clear, title = "\x1b[2J\x1b[32mOK", "\x1b]0;pwned\x07"
	r := fixedReport(func(r *Report) {
		r.Columns = []ColumnMapping{{Name: "c" + clear, PostgresType: "inet" + title, State: "no mapping"}}
		r.ClickHouseError = "boom" + clear + "\x9b2J\r"
		r.MessagePrefix = "p" + title
	})
	var buf bytes.Buffer
	if err := WriteTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, c := range []string{"\x1b", "\x07", "\u009b", "\x9b", "\r"} {
		if strings.Contains(out, c) {
			t.Errorf("table contains the control character %q:\n%q", c, out)
		}
	}
	for _, want := range []string{`c\x1b[2J\x1b[32mOK`, `inet\x1b]0;pwned\a`, `boom\x1b[2J\x1b[32mOK\x9b2J\r`} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks the escaped %q:\n%s", want, out)
		}
	}
	r.Columns[0].Name = "c\u009b2J\u202e"
	buf.Reset()
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); strings.ContainsAny(out, "\x1b\u009b\u202e") || !strings.Contains(out, `c\u009b2J\u202e`) {
		t.Errorf("JSON carries a control character raw, or lacks the escaped name:\n%q", out)
	}
}
