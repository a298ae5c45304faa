package status

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

// healthy is a report with nothing to complain about.
func healthy() Report {
	return Report{
		Slot: "outbox_relay", SlotExists: true, Plugin: "pgoutput", SlotDatabase: "app", SlotInDatabase: true,
		Active: true, ActivePID: ptr(int32(4242)), LagBytes: ptr(int64(10)), RetainedWALBytes: ptr(int64(4096)),
		WALLevel: "logical", WALStatus: "reserved", Publication: "outbox_pub", PublicationExists: true, PublicationHasTable: true,
		BacklogRows: 3, OldestBacklogAgeSeconds: ptr(0.4), DeadLetters: ptr(int64(0)), ClickHouseReachable: true, ClickHouseVersion: "24.3.1",
	}
}

// twoStreams gives r the default stream (r's own figures) and a routed
// billing stream with one table.
func twoStreams(r *Report) {
	r.OutboxTable, r.ClickHouseTable = "outbox_event", "event_log"
	r.Streams = []StreamStatus{
		{Name: "default", Outbox: "outbox_event", OutboxExists: true, InPublication: true, BacklogRows: r.BacklogRows,
			OldestBacklogAgeSeconds: r.OldestBacklogAgeSeconds, DeadLetters: ptr(int64(0)), ClickHouseTable: "event_log",
			Tables: []TableStatus{{Name: "event_log", Exists: true, Engine: "ReplacingMergeTree", Rows: ptr(uint64(10)), Guarantee: GuaranteeUnknown}}},
		{Name: "billing", Outbox: "billing.outbox", OutboxExists: true, InPublication: true, DeadLetters: ptr(int64(0)),
			ClickHouseTable: "billing_{event_type}", Routed: true,
			Tables: []TableStatus{{Name: "billing_invoice", Exists: true, Engine: "MergeTree", Rows: ptr(uint64(2)), Guarantee: "at least once"}}},
	}
}

func TestEvaluate(t *testing.T) {
	th := Thresholds{LagWarnBytes: 100, LagCritBytes: 1000, BacklogWarnSeconds: 60, BacklogCritSeconds: 600}
	tests := []struct {
		name    string
		edit    func(r *Report)
		th      *Thresholds
		want    Verdict
		reasons []string // substrings, one per reason, in order
	}{
		{name: "healthy", edit: func(*Report) {}, want: OK},
		{name: "cluster healthy", edit: func(r *Report) {
			r.Replicas = []Replica{{Shard: 1, Replica: 1, Host: "a:9000", Answers: true, DelaySeconds: ptr(uint64(3)), Readonly: ptr(false)}}
		}, want: OK},
		{name: "replica down", edit: func(r *Report) {
			r.Replicas = []Replica{{Shard: 1, Replica: 2, Host: "b:9000", Error: "connection refused"}}
		}, want: Warning, reasons: []string{"WARNING: ClickHouse replica b:9000 (shard 1, replica 2) does not answer: connection refused"}},
		{name: "replica read-only", edit: func(r *Report) {
			r.Replicas = []Replica{{Shard: 2, Replica: 1, Host: "c:9000", Answers: true, DelaySeconds: ptr(uint64(0)), Readonly: ptr(true)}}
		}, want: Warning, reasons: []string{"replica c:9000 (shard 2, replica 1) is read-only"}},
		{name: "replica without the table", edit: func(r *Report) {
			r.Replicas = []Replica{{Shard: 2, Replica: 2, Host: "d:9000", Answers: true, Error: "no replicated event_log here"}}
		}, want: Warning, reasons: []string{"replica d:9000 (shard 2, replica 2): no replicated event_log here"}},
		{name: "slot missing", edit: func(r *Report) {
			r.SlotExists, r.Active, r.LagBytes, r.WALStatus = false, false, nil, WALStatusMissing
		}, want: Critical, reasons: []string{"CRITICAL: replication slot \"outbox_relay\" does not exist"}},
		// No logical slot can exist below wal_level logical: the setting is
		// the finding, not the slot it keeps from being made.
		{name: "wal_level replica", edit: func(r *Report) {
			r.WALLevel, r.SlotExists, r.Active, r.LagBytes, r.WALStatus = "replica", false, false, nil, WALStatusMissing
		}, want: Critical, reasons: []string{"CRITICAL: wal_level is \"replica\": set wal_level = logical"}},
		{name: "wal_level replica, message mode", edit: func(r *Report) {
			r.WALLevel, r.SlotExists, r.Active, r.LagBytes, r.WALStatus, r.MessagePrefix = "replica", false, false, nil, WALStatusMissing, "outbox"
		}, want: Critical, reasons: []string{"CRITICAL: wal_level is \"replica\""}},
		{name: "wrong plugin", edit: func(r *Report) { r.Plugin = "wal2json" }, want: Critical, reasons: []string{"plugin \"wal2json\""}},
		{name: "other database", edit: func(r *Report) { r.SlotInDatabase, r.SlotDatabase = false, "other" }, want: Critical, reasons: []string{"belongs to database \"other\""}},
		{name: "wal lost", edit: func(r *Report) { r.WALStatus = "lost" }, want: Critical, reasons: []string{"CRITICAL: wal_status is lost"}},
		{name: "wal unreserved", edit: func(r *Report) { r.WALStatus = "unreserved" }, want: Critical, reasons: []string{"CRITICAL: wal_status is unreserved"}},
		{name: "wal extended", edit: func(r *Report) { r.WALStatus = "extended" }, want: Warning, reasons: []string{"WARNING: wal_status is extended"}},
		{name: "lag below warn", edit: func(r *Report) { r.LagBytes = ptr(int64(99)) }, want: OK},
		{name: "lag at warn", edit: func(r *Report) { r.LagBytes = ptr(int64(100)) }, want: Warning, reasons: []string{"WARNING: slot lag 100 B is at or above 100 B"}},
		{name: "lag at crit", edit: func(r *Report) { r.LagBytes = ptr(int64(2048)) }, want: Critical, reasons: []string{"CRITICAL: slot lag 2.0 KiB is at or above 1000 B"}},
		{name: "lag limits off", edit: func(r *Report) { r.LagBytes = ptr(int64(1 << 40)) }, th: &Thresholds{}, want: OK},
		{name: "lag unknown", edit: func(r *Report) { r.LagBytes = nil }, want: OK},
		{name: "inactive, empty backlog", edit: func(r *Report) { r.Active, r.BacklogRows, r.OldestBacklogAgeSeconds = false, 0, nil },
			want: Warning, reasons: []string{"WARNING: slot is inactive"}},
		{name: "inactive, young backlog", edit: func(r *Report) { r.Active = false; r.OldestBacklogAgeSeconds = ptr(59.9) },
			want: Warning, reasons: []string{"WARNING: slot is inactive"}},
		{name: "inactive, old backlog", edit: func(r *Report) { r.Active = false; r.OldestBacklogAgeSeconds = ptr(60.0) },
			want: Critical, reasons: []string{"CRITICAL: slot is inactive (no relay streams from it) and the oldest outbox event has waited 1m0s", "WARNING: oldest outbox event has waited 1m0s (limit 1m0s)"}},
		{name: "backlog warn", edit: func(r *Report) { r.OldestBacklogAgeSeconds = ptr(61.0) }, want: Warning, reasons: []string{"WARNING: oldest outbox event has waited 1m1s (limit 1m0s)"}},
		{name: "backlog crit", edit: func(r *Report) { r.OldestBacklogAgeSeconds = ptr(600.0) }, want: Critical, reasons: []string{"CRITICAL: oldest outbox event has waited 10m0s (limit 10m0s)"}},
		{name: "dead letters", edit: func(r *Report) { r.DeadLetters = ptr(int64(2)) }, want: Warning,
			reasons: []string{"WARNING: 2 events ClickHouse rejected wait in outbox_dead_letter (relay deadletter list)"}},
		{name: "one dead letter", edit: func(r *Report) { r.DeadLetters = ptr(int64(1)) }, want: Warning,
			reasons: []string{"WARNING: 1 event ClickHouse rejected waits in outbox_dead_letter"}},
		{name: "no dead letters", edit: func(r *Report) { r.DeadLetters = ptr(int64(0)) }, want: OK},
		{name: "publication missing", edit: func(r *Report) { r.PublicationExists = false }, want: Critical, reasons: []string{"publication \"outbox_pub\" does not exist"}},
		{name: "publication without table", edit: func(r *Report) { r.PublicationHasTable = false }, want: Critical, reasons: []string{"does not include outbox_event"}},
		{name: "publication created after the slot", edit: func(r *Report) { r.PublicationAfterSlot = true }, want: Critical,
			reasons: []string{"publication \"outbox_pub\" was created after slot \"outbox_relay\"'s position"}},
		{name: "clickhouse unreachable", edit: func(r *Report) { r.ClickHouseReachable, r.ClickHouseError = false, "dial tcp: refused" },
			want: Critical, reasons: []string{"CRITICAL: ClickHouse is unreachable: dial tcp: refused"}},
		{name: "event_log unreadable", edit: func(r *Report) { r.ClickHouseError = "table event_log does not exist" },
			want: Critical, reasons: []string{"CRITICAL: ClickHouse event_log cannot be read"}},
		{name: "a stream table unreadable", edit: func(r *Report) {
			r.ClickHouseTable, r.ClickHouseError = "app_events", "table app_events does not exist"
		},
			want: Critical, reasons: []string{"CRITICAL: ClickHouse app_events cannot be read"}},
		{name: "message mode, slot missing", edit: func(r *Report) {
			r.MessagePrefix = "outbox"
			r.SlotExists, r.Active, r.LagBytes, r.WALStatus = false, false, nil, WALStatusMissing
		}, want: Critical, reasons: []string{"does not exist and message mode is on: events may have been lost"}},
		{name: "message mode, wal lost", edit: func(r *Report) { r.MessagePrefix, r.WALStatus = "outbox", "lost" },
			want: Critical, reasons: []string{"CRITICAL: wal_status is lost in message mode: events may have been lost"}},
		{name: "events lost recorded", edit: func(r *Report) { r.EventsLostAt = ptr(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) },
			want: Critical, reasons: []string{"CRITICAL: replication slot \"outbox_relay\" was lost or recreated at 2025-01-02T03:04:05Z in message mode: events may have been lost"}},
		{name: "message mode, healthy", edit: func(r *Report) { r.MessagePrefix = "outbox" }, want: OK},
		{name: "two streams healthy", edit: twoStreams, want: OK},
		{name: "a stream's outbox not in the publication", edit: func(r *Report) {
			twoStreams(r)
			r.PublicationHasTable, r.Streams[1].InPublication = false, false
		}, want: Critical, reasons: []string{`CRITICAL: stream "billing": publication "outbox_pub" does not include billing.outbox`}},
		{name: "a stream's outbox missing", edit: func(r *Report) {
			twoStreams(r)
			r.PublicationHasTable, r.Streams[1].InPublication, r.Streams[1].OutboxExists = false, false, false
			r.Streams[1].Error = "outbox table billing.outbox does not exist"
		}, want: Critical, reasons: []string{`CRITICAL: stream "billing": outbox table billing.outbox does not exist`}},
		{name: "a stream's old backlog", edit: func(r *Report) {
			twoStreams(r)
			r.Streams[1].BacklogRows, r.Streams[1].OldestBacklogAgeSeconds = 5, ptr(61.0)
		}, want: Warning, reasons: []string{`WARNING: stream "billing": oldest outbox event has waited 1m1s (limit 1m0s)`}},
		{name: "inactive, another stream's old backlog", edit: func(r *Report) {
			twoStreams(r)
			r.Active = false
			r.Streams[1].BacklogRows, r.Streams[1].OldestBacklogAgeSeconds = 5, ptr(61.0)
		}, want: Critical, reasons: []string{"CRITICAL: slot is inactive (no relay streams from it) and the oldest outbox event has waited 1m1s",
			`WARNING: stream "billing": oldest outbox event`}},
		{name: "a stream's table missing", edit: func(r *Report) {
			twoStreams(r)
			r.Streams[1].Routed, r.Streams[1].ClickHouseTable = false, "billing"
			r.Streams[1].Tables = []TableStatus{{Name: "billing", Guarantee: GuaranteeUnknown, Error: "table billing does not exist"}}
		}, want: Critical, reasons: []string{`CRITICAL: stream "billing": ClickHouse table billing does not exist (run relay migrate)`}},
		{name: "a routed table unreadable", edit: func(r *Report) {
			twoStreams(r)
			r.Streams[1].Tables[0].Error = "read the guarantee of billing_invoice: timeout"
		}, want: Warning, reasons: []string{`WARNING: stream "billing": ClickHouse table billing_invoice: read the guarantee`}},
		{name: "worst wins", edit: func(r *Report) { r.WALStatus = "extended"; r.ClickHouseReachable = false },
			want: Critical, reasons: []string{"WARNING: wal_status is extended", "CRITICAL: ClickHouse is unreachable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := healthy()
			tt.edit(&r)
			limits := th
			if tt.th != nil {
				limits = *tt.th
			}
			got, reasons := Evaluate(&r, limits)
			if got != tt.want {
				t.Errorf("verdict = %s, want %s (reasons %q)", got, tt.want, reasons)
			}
			if reasons == nil {
				t.Fatal("reasons is nil; want an empty slice so JSON shows []")
			}
			if len(reasons) != len(tt.reasons) {
				t.Fatalf("reasons = %q, want %d matching %q", reasons, len(tt.reasons), tt.reasons)
			}
			for i, sub := range tt.reasons {
				if !strings.Contains(reasons[i], sub) {
					t.Errorf("reason %d = %q, want it to contain %q", i, reasons[i], sub)
				}
			}
		})
	}
}

func TestEvaluateIsPure(t *testing.T) {
	r := healthy()
	r.WALStatus = "lost"
	before := r
	Evaluate(&r, DefaultThresholds())
	if r.Verdict != before.Verdict || !slices.Equal(r.Reasons, before.Reasons) || r.WALStatus != before.WALStatus {
		t.Fatal("Evaluate changed the report")
	}
}

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"},
		{256 << 20, "256.0 MiB"}, {1 << 30, "1.0 GiB"}, {-2048, "-2.0 KiB"}, {5 << 40, "5.0 TiB"},
	}
	for _, tt := range tests {
		if got := HumanBytes(tt.in); got != tt.want {
			t.Errorf("HumanBytes(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHumanSeconds(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0s"}, {0.04, "0s"}, {1.26, "1.3s"}, {59.9, "59.9s"}, {61.4, "1m1s"}, {7322, "2h2m2s"},
	}
	for _, tt := range tests {
		if got := HumanSeconds(tt.in); got != tt.want {
			t.Errorf("HumanSeconds(%g) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
