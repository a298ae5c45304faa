package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/outbox-relay/relay/internal/termsafe"
)

// WriteJSON writes r as one line of JSON (the stable schema of Report),
// with the characters a terminal acts on escaped (termsafe.JSON).
func WriteJSON(w io.Writer, r *Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(termsafe.JSON(b), '\n'))
	return err
}

// WriteTable writes r as an aligned two-column table for people.
func WriteTable(w io.Writer, r *Report) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	// Names, prefixes and errors come from servers and from whoever may
	// alter the outbox table: escaped, so they cannot drive the terminal.
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", termsafe.Escape(k), termsafe.Escape(v)) }
	head := func(s string) { fmt.Fprintf(tw, "%s\t\n", s) } // keep headings short: they count in the width

	fmt.Fprintf(tw, "relay status\t%s\n", r.Time.Format(time.RFC3339))
	head("POSTGRESQL")
	row("version", r.PostgresVersion)
	if r.WALLevel != "" {
		row("wal_level", r.WALLevel)
	}
	row("slot", r.Slot)
	if r.SlotExists {
		slotRows(r, row)
	} else {
		row("exists", "no")
		row("wal_status", r.WALStatus)
	}
	row("failover-ready", FailoverLine(r.Failover))
	row("max_slot_wal_keep_size", keepSize(r))
	row("publication", fmt.Sprintf("%s (%s)", r.Publication, publicationState(r)))
	if r.MessagePrefix != "" {
		row("message_prefix", r.MessagePrefix)
	}
	if r.EventsLostAt != nil {
		row("events_lost_at", r.EventsLostAt.Format(time.RFC3339))
	}

	head("BACKLOG")
	row("table", "outbox_event")
	row("rows", strconv.FormatInt(r.BacklogRows, 10))
	row("oldest_age", optSeconds(r.OldestBacklogAgeSeconds, "- (empty)"))
	row("dead_letters", optInt64(r.DeadLetters))

	head("CLICKHOUSE")
	row("table", "event_log")
	if r.ClickHouseCluster != "" {
		row("topology", fmt.Sprintf("%s (cluster %s)", r.ClickHouseTopology, r.ClickHouseCluster))
	} else if r.ClickHouseTopology != "" {
		row("topology", r.ClickHouseTopology)
	}
	clickHouseRows(r, row)
	for _, rep := range r.Replicas {
		row(fmt.Sprintf("shard %d replica %d", rep.Shard, rep.Replica), replicaState(rep))
	}

	if len(r.Columns) > 0 {
		head("COLUMNS")
		for _, c := range r.Columns {
			row(c.Name, columnState(c))
		}
	}

	fmt.Fprintf(tw, "VERDICT\t%s\n", r.Verdict)
	for _, reason := range r.Reasons {
		row("-", reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Section headings are padded to the column width; trim that.
	for line := range bytes.Lines(buf.Bytes()) {
		if _, err := w.Write(append(bytes.TrimRight(line, " \n"), '\n')); err != nil {
			return err
		}
	}
	return nil
}

func slotRows(r *Report, row func(k, v string)) {
	db := r.SlotDatabase
	if !r.SlotInDatabase {
		db += " (not DATABASE_URL's database)"
	}
	row("plugin", r.Plugin)
	row("database", db)
	row("active", yesNo(r.Active))
	row("active_pid", optInt32(r.ActivePID))
	row("confirmed_flush_lsn", optString(r.ConfirmedFlushLSN))
	row("restart_lsn", optString(r.RestartLSN))
	row("current_wal_lsn", r.CurrentWALLSN)
	row("lag", optBytes(r.LagBytes))
	row("retained_wal", optBytes(r.RetainedWALBytes))
	row("wal_status", r.WALStatus)
	if r.SafeWALSize == nil {
		row("safe_wal_size", "- (unlimited)")
	} else {
		row("safe_wal_size", optBytes(r.SafeWALSize))
	}
	switch {
	case r.Active:
		row("last_reply_age", optSeconds(r.LastReplyAgeSeconds, "-"))
	case r.InactiveSeconds != nil:
		row("inactive_for", HumanSeconds(*r.InactiveSeconds))
	default:
		row("inactive_for", "unknown (recorded from PostgreSQL 17 on)")
	}
}

func clickHouseRows(r *Report, row func(k, v string)) {
	row("reachable", yesNo(r.ClickHouseReachable))
	if r.ClickHouseVersion != "" {
		row("version", r.ClickHouseVersion)
	}
	if r.ClickHouseRows != nil {
		row("rows", strconv.FormatUint(*r.ClickHouseRows, 10))
	}
	if r.ClickHouseReachable && r.ClickHouseError == "" {
		newest := "- (empty)"
		if r.ClickHouseNewestEvent != nil {
			newest = r.ClickHouseNewestEvent.Format("2006-01-02 15:04:05.000000Z07:00")
		}
		row("newest_event", newest)
	}
	if r.ClickHouseError != "" {
		row("error", r.ClickHouseError)
	}
}

func columnState(c ColumnMapping) string {
	to := c.ClickHouseType
	if to == "" {
		to = "(no mapping)"
	}
	s := c.PostgresType + " -> " + to + ": " + c.State
	if c.State == "type differs" {
		s += " (event_log has " + c.EventLogType + ")"
	}
	return s
}

func replicaState(rep Replica) string {
	switch {
	case !rep.Answers:
		return rep.Host + "  does not answer: " + rep.Error
	case rep.Error != "":
		return rep.Host + "  " + rep.Error
	}
	s := fmt.Sprintf("%s  answers, delay %ds", rep.Host, *rep.DelaySeconds)
	if *rep.Readonly {
		s += ", read-only"
	}
	return s
}

func keepSize(r *Report) string {
	if r.MaxSlotWALKeepSizeBytes < 0 {
		return r.MaxSlotWALKeepSize + " (unlimited)"
	}
	return r.MaxSlotWALKeepSize
}

func publicationState(r *Report) string {
	switch {
	case !r.PublicationExists:
		return "missing"
	case !r.PublicationHasTable:
		return "without outbox_event"
	case r.PublicationAfterSlot:
		return "created after the slot's position: not usable by the slot"
	}
	return "ok"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func optString(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

func optInt64(n *int64) string {
	if n == nil {
		return "-"
	}
	return strconv.FormatInt(*n, 10)
}

func optInt32(n *int32) string {
	if n == nil {
		return "-"
	}
	return strconv.Itoa(int(*n))
}

func optBytes(n *int64) string {
	if n == nil {
		return "-"
	}
	if *n < 1024 {
		return HumanBytes(*n)
	}
	return fmt.Sprintf("%d B (%s)", *n, HumanBytes(*n))
}

func optSeconds(s *float64, none string) string {
	if s == nil {
		return none
	}
	return HumanSeconds(*s)
}
