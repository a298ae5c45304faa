package status

import (
	"fmt"
	"strings"
	"time"
)

// Evaluate judges r by t. Every finding adds a reason; the verdict is the
// worst of them (OK when there is none). Rules:
//   - CRITICAL: events may have been lost (message mode: slot lost or
//     recreated, recorded by the relay; or slot missing or lost now);
//     wal_level below logical; slot missing, in another database or not
//     pgoutput;
//     wal_status unreserved or lost; publication missing or without a
//     stream's outbox table; a stream's outbox table missing or
//     unreadable; ClickHouse unreachable, the first stream's table
//     unreadable, another stream's table missing; lag or a stream's
//     backlog age at or above its critical limit; slot inactive while the
//     oldest backlog row is at or above the backlog warning limit.
//   - WARNING: slot inactive (no relay streams from it); wal_status
//     extended; lag or backlog age at or above its warning limit; events
//     in outbox_dead_letter; a ClickHouse replica that does not answer,
//     lacks the table or is read-only; a stream table that cannot be
//     counted or whose guarantee cannot be read; synchronized_standby_slots naming a
//     slot no standby streams from (a failover slot's changes wait for it).
//
// Evaluate is pure: it reads nothing but its arguments.
func Evaluate(r *Report, t Thresholds) (Verdict, []string) {
	j := judgement{verdict: OK, reasons: []string{}}
	j.slot(r, t)
	j.failover(r)
	j.publication(r)
	j.streams(r)
	j.backlog(r, t)
	j.deadLetters(r)
	j.clickhouse(r)
	j.columns(r)
	return j.verdict, j.reasons
}

// columns warns of extra columns relay run refuses: it stops at the first
// row that carries one.
func (j *judgement) columns(r *Report) {
	for _, c := range r.Columns {
		switch c.State {
		case "type differs":
			j.add(Warning, "%s.%s (%s) maps to %s but %s.%s is %s: relay run stops at its next row (README, Adding a column)",
				r.outbox(), c.Name, c.PostgresType, c.ClickHouseType, r.clickHouseTable(), c.Name, c.EventLogType)
		case "no mapping":
			j.add(Warning, "%s.%s (%s) has no ClickHouse mapping: relay run stops at its next row unless RELAY_SCHEMA_EVOLUTION=fill (README, Adding a column)",
				r.outbox(), c.Name, c.PostgresType)
		}
	}
}

type judgement struct {
	verdict Verdict
	reasons []string
}

func (j *judgement) add(v Verdict, format string, args ...any) {
	if v.rank() > j.verdict.rank() {
		j.verdict = v
	}
	j.reasons = append(j.reasons, fmt.Sprintf(string(v)+": "+format, args...))
}

// lostWords is what every message-mode loss finding says.
const lostWords = "events may have been lost"

func (j *judgement) slot(r *Report, t Thresholds) {
	if r.EventsLostAt != nil {
		j.add(Critical, "replication slot %q was lost or recreated at %s in message mode: %s (messages emitted while no slot kept their WAL are gone); reconcile, then clear with UPDATE outbox_relay_state SET events_lost_at = NULL WHERE slot = '%s'",
			r.Slot, r.EventsLostAt.Format(time.RFC3339), lostWords, r.Slot)
	}
	if r.WALLevel != "" && r.WALLevel != "logical" {
		// No logical slot exists below logical: the setting is the cause.
		lost := ""
		if r.MessagePrefix != "" {
			lost = "; message mode is on: " + lostWords + " (messages emitted without a slot are not kept)"
		}
		j.add(Critical, "wal_level is %q: set wal_level = logical in postgresql.conf and restart PostgreSQL; until then no replication slot can exist and relay run refuses to start%s",
			r.WALLevel, lost)
		return
	}
	if !r.SlotExists && r.MessagePrefix != "" {
		j.add(Critical, "replication slot %q does not exist and message mode is on: %s (messages emitted without a slot are not kept; start relay run)", r.Slot, lostWords)
		return
	}
	if !r.SlotExists {
		j.add(Critical, "replication slot %q does not exist (relay run creates it; rows written meanwhile wait in %s)", r.Slot, r.outboxes())
		return
	}
	if !r.SlotInDatabase {
		j.add(Critical, "replication slot %q belongs to database %q, not to the one of DATABASE_URL", r.Slot, r.SlotDatabase)
	}
	if r.Plugin != "pgoutput" {
		j.add(Critical, "replication slot %q uses plugin %q; the relay needs pgoutput", r.Slot, r.Plugin)
	}
	switch r.WALStatus {
	case "lost":
		if r.MessagePrefix != "" {
			j.add(Critical, "wal_status is lost in message mode: %s; relay run recreates the slot, but the messages in the lost WAL are gone", lostWords)
			break
		}
		j.add(Critical, "wal_status is lost: the slot can no longer stream; relay run drops and recreates it, backfilling from %s", r.outboxes())
	case "unreserved":
		j.add(Critical, "wal_status is unreserved: retained WAL passed max_slot_wal_keep_size and is removed at the next checkpoint")
	case "extended":
		j.add(Warning, "wal_status is extended: the slot retains more WAL than max_wal_size")
	}
	if r.LagBytes != nil {
		j.limit(float64(*r.LagBytes), float64(t.LagWarnBytes), float64(t.LagCritBytes),
			"slot lag %s is at or above %s", func(x float64) string { return HumanBytes(int64(x)) })
	}
	if !r.Active {
		age := r.oldestBacklog()
		if age != nil && t.BacklogWarnSeconds > 0 && *age >= t.BacklogWarnSeconds {
			j.add(Critical, "slot is inactive (no relay streams from it) and the oldest outbox event has waited %s", HumanSeconds(*age))
		} else {
			j.add(Warning, "slot is inactive: no relay streams from it")
		}
	}
}

// limit adds a CRITICAL or WARNING reason when x reaches crit or warn
// (each off when 0).
func (j *judgement) limit(x, warn, crit float64, format string, show func(float64) string) {
	switch {
	case crit > 0 && x >= crit:
		j.add(Critical, format, show(x), show(crit))
	case warn > 0 && x >= warn:
		j.add(Warning, format, show(x), show(warn))
	}
}

func (j *judgement) publication(r *Report) {
	switch {
	case !r.PublicationExists:
		j.add(Critical, "publication %q does not exist (run relay migrate)", r.Publication)
	case !r.PublicationHasTable && len(r.Streams) == 0:
		j.add(Critical, "publication %q does not include %s", r.Publication, r.outbox())
	case !r.PublicationHasTable:
		for _, s := range r.Streams {
			if s.OutboxExists && !s.InPublication {
				j.add(Critical, "%spublication %q does not include %s: the slot streams none of its rows (ALTER PUBLICATION %s ADD TABLE %s)",
					r.streamPrefix(s), r.Publication, s.Outbox, r.Publication, s.Outbox)
			}
		}
	case r.PublicationAfterSlot:
		j.add(Critical, "publication %q was created after slot %q's position (dropped and created again?): the slot cannot stream with it; "+
			"relay run recreates the slot and backfills from %s (or drop the slot yourself)", r.Publication, r.Slot, r.outboxes())
	}
}

func (j *judgement) backlog(r *Report, t Thresholds) {
	if len(r.Streams) == 0 && r.OldestBacklogAgeSeconds != nil {
		j.limit(*r.OldestBacklogAgeSeconds, t.BacklogWarnSeconds, t.BacklogCritSeconds,
			"oldest outbox event has waited %s (limit %s)", HumanSeconds)
	}
	for _, s := range r.Streams {
		if s.OldestBacklogAgeSeconds != nil {
			j.limit(*s.OldestBacklogAgeSeconds, t.BacklogWarnSeconds, t.BacklogCritSeconds,
				r.streamPrefix(s)+"oldest outbox event has waited %s (limit %s)", HumanSeconds)
		}
	}
}

// streams judges each stream's outbox table and its ClickHouse tables
// (the first stream's own table is judged by clickhouse, by ClickHouseError).
func (j *judgement) streams(r *Report) {
	for i, s := range r.Streams {
		if s.Error != "" {
			j.add(Critical, "%s%s", r.streamPrefix(s), s.Error)
		}
		for _, tb := range s.Tables {
			switch {
			case !tb.Exists && !s.Routed && i > 0:
				j.add(Critical, "%sClickHouse table %s does not exist (run relay migrate)", r.streamPrefix(s), tb.Name)
			case tb.Exists && tb.Error != "":
				j.add(Warning, "%sClickHouse table %s: %s", r.streamPrefix(s), tb.Name, tb.Error)
			}
		}
	}
}

// streamPrefix names s at the start of a reason when the relay has
// several streams.
func (r *Report) streamPrefix(s StreamStatus) string {
	if len(r.Streams) < 2 {
		return ""
	}
	return fmt.Sprintf("stream %q: ", s.Name)
}

// oldestBacklog is the age of the oldest event waiting in any stream's
// outbox table.
func (r *Report) oldestBacklog() *float64 {
	if len(r.Streams) == 0 {
		return r.OldestBacklogAgeSeconds
	}
	var oldest *float64
	for _, s := range r.Streams {
		if a := s.OldestBacklogAgeSeconds; a != nil && (oldest == nil || *a > *oldest) {
			oldest = a
		}
	}
	return oldest
}

// outbox names the first stream's outbox table (outbox_event in a report
// that does not say).
func (r *Report) outbox() string {
	if r.OutboxTable == "" {
		return "outbox_event"
	}
	return r.OutboxTable
}

// outboxes names the outbox tables: the one, or "the outbox tables".
func (r *Report) outboxes() string {
	if len(r.Streams) > 1 {
		return "the outbox tables"
	}
	return r.outbox()
}

// clickHouseTable names the first stream's ClickHouse table (event_log in
// a report that does not say).
func (r *Report) clickHouseTable() string {
	if r.ClickHouseTable == "" {
		return "event_log"
	}
	return r.ClickHouseTable
}

func (j *judgement) deadLetters(r *Report) {
	switch n := r.DeadLetters; {
	case n == nil || *n == 0:
	case *n == 1:
		j.add(Warning, "1 event ClickHouse rejected waits in outbox_dead_letter%s (relay deadletter list)", deadLetterStreams(r))
	default:
		j.add(Warning, "%d events ClickHouse rejected wait in outbox_dead_letter%s (relay deadletter list)", *n, deadLetterStreams(r))
	}
}

// deadLetterStreams says which streams the dead letters came from, when
// the relay has several: ", streams billing 2, default 1".
func deadLetterStreams(r *Report) string {
	if len(r.Streams) < 2 {
		return ""
	}
	var parts []string
	for _, s := range r.Streams {
		if s.DeadLetters != nil && *s.DeadLetters > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s.Name, *s.DeadLetters))
		}
	}
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return ", stream " + parts[0]
	}
	return ", streams " + strings.Join(parts, ", ")
}

func (j *judgement) clickhouse(r *Report) {
	switch {
	case !r.ClickHouseReachable:
		j.add(Critical, "ClickHouse is unreachable: %s", r.ClickHouseError)
	case r.ClickHouseError != "":
		j.add(Critical, "ClickHouse %s cannot be read: %s", r.clickHouseTable(), r.ClickHouseError)
	}
	for _, rep := range r.Replicas {
		switch {
		case !rep.Answers:
			j.add(Warning, "ClickHouse replica %s (shard %d, replica %d) does not answer: %s", rep.Host, rep.Shard, rep.Replica, rep.Error)
		case rep.Error != "":
			j.add(Warning, "ClickHouse replica %s (shard %d, replica %d): %s", rep.Host, rep.Shard, rep.Replica, rep.Error)
		case rep.Readonly != nil && *rep.Readonly:
			j.add(Warning, "ClickHouse replica %s (shard %d, replica %d) is read-only (no ZooKeeper session): inserts through it fail", rep.Host, rep.Shard, rep.Replica)
		}
	}
}

// HumanSeconds renders seconds as a rounded duration (1.5s, 2m3s, 4h0m0s).
func HumanSeconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// HumanBytes renders n in IEC units (1.5 MiB).
func HumanBytes(n int64) string {
	const unit = 1024
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	if n < unit {
		return fmt.Sprintf("%s%d B", sign, n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%s%.1f %ciB", sign, float64(n)/float64(div), "KMGTPE"[exp])
}
