// Package status answers "is the relay keeping up?" from the servers alone:
// the replication slot, the outbox backlog and ClickHouse. It works whether
// or not a relay is running, and it is what `relay status` prints.
//
// Three parts, kept apart so the judgement is testable without servers:
//   - Gather reads a Report (PostgreSQL errors are returned; ClickHouse
//     problems are recorded in the Report, because an unreachable sink is a
//     finding, not a failure of the check);
//   - Evaluate turns a Report and Thresholds into a Verdict with reasons;
//     it is pure;
//   - WriteTable and WriteJSON render it. The JSON field names are a stable
//     schema (SchemaVersion); fields may be added, never renamed.
//
// ReadSlot and PollSlot are the cheap part of Gather that `relay run`
// repeats to keep the slot gauges of /metrics and the readiness of /readyz
// current.
package status

import (
	"time"
)

// SchemaVersion is the version of the JSON schema of Report.
const SchemaVersion = 1

// Verdict is the overall judgement; its exit code is chosen by the CLI.
type Verdict string

// Verdicts, from best to worst.
const (
	OK       Verdict = "OK"
	Warning  Verdict = "WARNING"
	Critical Verdict = "CRITICAL"
)

func (v Verdict) rank() int {
	switch v {
	case Warning:
		return 1
	case Critical:
		return 2
	}
	return 0
}

// WALStatusMissing is Report.WALStatus when the slot does not exist (the
// same word as the outbox_relay_wal_status metric label).
const WALStatusMissing = "missing"

// Report is everything `relay status` shows. Pointer fields are null in
// JSON when the server does not know the value (e.g. lag of a missing slot).
type Report struct {
	SchemaVersion int       `json:"schema_version"`
	Time          time.Time `json:"time"`

	// PostgreSQL and the slot.
	PostgresVersion string `json:"postgres_version"`
	// WALLevel is the server's wal_level; the relay needs logical.
	WALLevel   string `json:"wal_level"`
	Slot       string `json:"slot"`
	SlotExists bool   `json:"slot_exists"`
	Plugin     string `json:"plugin"`
	// SlotDatabase is the database the slot decodes; it must be the one of
	// DATABASE_URL.
	SlotDatabase string `json:"slot_database"`
	// SlotInDatabase is true when SlotDatabase is DATABASE_URL's database.
	SlotInDatabase bool   `json:"slot_in_database"`
	Active         bool   `json:"active"`
	ActivePID      *int32 `json:"active_pid"`
	// ConfirmedFlushLSN is what the relay confirmed as stored in ClickHouse.
	ConfirmedFlushLSN *string `json:"confirmed_flush_lsn"`
	// RestartLSN is the oldest WAL the slot may still need.
	RestartLSN    *string `json:"restart_lsn"`
	CurrentWALLSN string  `json:"current_wal_lsn"`
	// LagBytes is current WAL position minus confirmed_flush_lsn.
	LagBytes *int64 `json:"lag_bytes"`
	// RetainedWALBytes is current WAL position minus restart_lsn: the WAL
	// the server keeps for this slot.
	RetainedWALBytes *int64 `json:"retained_wal_bytes"`
	// WALStatus is pg_replication_slots.wal_status (reserved, extended,
	// unreserved, lost), or "missing" when there is no slot.
	WALStatus string `json:"wal_status"`
	// SafeWALSize is the WAL that may still be written before the slot is
	// lost; null when max_slot_wal_keep_size is -1 (unlimited).
	SafeWALSize *int64 `json:"safe_wal_size"`
	// MaxSlotWALKeepSize is the server setting as shown (e.g. "-1", "10GB");
	// MaxSlotWALKeepSizeBytes is it in bytes, -1 for unlimited.
	MaxSlotWALKeepSize      string `json:"max_slot_wal_keep_size"`
	MaxSlotWALKeepSizeBytes int64  `json:"max_slot_wal_keep_size_bytes"`
	// InactiveSeconds is how long the slot has been inactive; only
	// PostgreSQL 17+ records it (inactive_since), so it is null before.
	InactiveSeconds *float64 `json:"inactive_seconds"`
	// LastReplyAgeSeconds is the age of the last standby status update the
	// server received from the active consumer (pg_stat_replication).
	LastReplyAgeSeconds *float64 `json:"last_reply_age_seconds"`

	// Failover says whether a primary failover would keep the slot
	// (PostgreSQL 17+ failover slots; see failover.go).
	Failover *Failover `json:"failover"`

	// MessagePrefix is RELAY_MESSAGE_PREFIX as given to relay status (""
	// when message mode is off).
	MessagePrefix string `json:"message_prefix"`
	// EventsLostAt is when the relay found its slot lost or recreated in
	// message mode (outbox_relay_state.events_lost_at); null when never,
	// or after an operator cleared it.
	EventsLostAt *time.Time `json:"events_lost_at"`

	// The publication.
	Publication         string `json:"publication"`
	PublicationExists   bool   `json:"publication_exists"`
	PublicationHasTable bool   `json:"publication_has_table"`
	// PublicationAfterSlot is true when the publication was created
	// (again) after the slot's position: the slot cannot stream with it
	// (relay run recreates the slot and backfills).
	PublicationAfterSlot bool `json:"publication_created_after_slot"`

	// OutboxTable and ClickHouseTable are the outbox table and ClickHouse
	// table (or template) of the first stream of Streams (the one named
	// default, else the first configured): the backlog, ClickHouse rows and
	// columns of the report are its own; Streams has every stream's.
	OutboxTable     string `json:"outbox_table"`
	ClickHouseTable string `json:"clickhouse_table"`

	// The backlog: rows of the first stream's outbox table not yet
	// delivered.
	BacklogRows int64 `json:"backlog_rows"`
	// OldestBacklogAgeSeconds is now() - min(event_date_time); null when
	// the table is empty.
	OldestBacklogAgeSeconds *float64 `json:"oldest_backlog_age_seconds"`

	// DeadLetters is the number of rows in outbox_dead_letter (all streams): events
	// ClickHouse rejected, waiting for relay deadletter replay or discard;
	// null when the table does not exist (not migrated) or the role may not
	// read it.
	DeadLetters *int64 `json:"dead_letters"`

	// ClickHouse.
	// ClickHouseTopology is CLICKHOUSE_TOPOLOGY; ClickHouseCluster is
	// CLICKHOUSE_CLUSTER ("" unless replicated or sharded).
	ClickHouseTopology string `json:"clickhouse_topology"`
	ClickHouseCluster  string `json:"clickhouse_cluster"`
	// Replicas are the cluster's servers, each checked on its own (null
	// unless replicated or sharded).
	Replicas            []Replica `json:"clickhouse_replicas"`
	ClickHouseReachable bool      `json:"clickhouse_reachable"`
	ClickHouseVersion   string    `json:"clickhouse_version"`
	// ClickHouseRows is count() of the first stream's table (replays not
	// yet merged away are counted twice); null when it is a template.
	ClickHouseRows *uint64 `json:"clickhouse_rows"`
	// ClickHouseNewestEvent is max(event_date_time), with the microseconds
	// of event_date_time_us on servers before 20.1; null when empty.
	ClickHouseNewestEvent *time.Time `json:"clickhouse_newest_event_time"`
	// ClickHouseError says why ClickHouse could not be read ("" when fine).
	ClickHouseError string `json:"clickhouse_error"`

	// Columns is the column mapping in force: each extra column of the
	// first stream's outbox table (beyond the relay's own), the ClickHouse
	// type the relay maps it to, and what its table has.
	Columns []ColumnMapping `json:"columns"`

	// Streams are the relay's streams, the default one first: each outbox
	// table's backlog and the ClickHouse tables it writes, with their
	// guarantee.
	Streams []StreamStatus `json:"streams"`

	Verdict Verdict  `json:"verdict"`
	Reasons []string `json:"reasons"`
}

// ColumnMapping is one extra column of the outbox table and where it goes.
type ColumnMapping struct {
	Name           string `json:"name"`
	PostgresType   string `json:"postgres_type"`
	ClickHouseType string `json:"clickhouse_type"` // the mapping; "" when the type has none
	// EventLogType is event_log's column of that name ("" when missing or
	// ClickHouse was not read).
	EventLogType string `json:"event_log_type"`
	// State: "written"; "missing" (relay run adds it with
	// RELAY_SCHEMA_EVOLUTION=add, skips it with fill, stops with refuse);
	// "type differs" or "no mapping" (relay run refuses it); "unknown"
	// (ClickHouse not read).
	State string `json:"state"`
}

// Judge sets r.Verdict and r.Reasons from Evaluate.
func (r *Report) Judge(t Thresholds) {
	r.Verdict, r.Reasons = Evaluate(r, t)
}
