package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
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

	if len(r.Streams) > 1 {
		head("BACKLOG")
		row("dead_letters", optInt64(r.DeadLetters))
		head("CLICKHOUSE")
		clickHouseServer(r, row)
		if r.ClickHouseError != "" {
			row("error", r.ClickHouseError)
		}
		replicaRows(r, row)
		for _, s := range r.Streams {
			head("STREAM " + termsafe.Escape(s.Name))
			streamRows(r, s, row)
		}
	} else {
		head("BACKLOG")
		row("table", r.outbox())
		row("rows", strconv.FormatInt(r.BacklogRows, 10))
		row("oldest_age", optSeconds(r.OldestBacklogAgeSeconds, "- (empty)"))
		row("dead_letters", optInt64(r.DeadLetters))
		head("CLICKHOUSE")
		row("table", r.clickHouseTable()+routedNote(r.Streams))
		clickHouseServer(r, row)
		clickHouseRows(r, row)
		for _, s := range r.Streams {
			if s.Routed {
				tableRows(s, row)
			} else if len(s.Tables) > 0 {
				row("guarantee", s.Tables[0].Guarantee)
			}
		}
		replicaRows(r, row)
	}

	if len(r.Columns) > 0 {
		if len(r.Streams) > 1 {
			head("COLUMNS " + termsafe.Escape(r.Streams[0].Name))
		} else {
			head("COLUMNS")
		}
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

// clickHouseServer is what the report says of the ClickHouse server.
func clickHouseServer(r *Report, row func(k, v string)) {
	if r.ClickHouseCluster != "" {
		row("topology", fmt.Sprintf("%s (cluster %s)", r.ClickHouseTopology, r.ClickHouseCluster))
	} else if r.ClickHouseTopology != "" {
		row("topology", r.ClickHouseTopology)
	}
	row("reachable", yesNo(r.ClickHouseReachable))
	if r.ClickHouseVersion != "" {
		row("version", r.ClickHouseVersion)
	}
}

func replicaRows(r *Report, row func(k, v string)) {
	for _, rep := range r.Replicas {
		row(fmt.Sprintf("shard %d replica %d", rep.Shard, rep.Replica), replicaState(rep))
	}
}

// clickHouseRows is what the report says of the first stream's table.
func clickHouseRows(r *Report, row func(k, v string)) {
	if r.ClickHouseRows != nil {
		row("rows", strconv.FormatUint(*r.ClickHouseRows, 10))
	}
	if r.ClickHouseReachable && r.ClickHouseError == "" && r.ClickHouseRows != nil {
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

// streamRows are the lines of one stream of several.
func streamRows(r *Report, s StreamStatus, row func(k, v string)) {
	outbox := s.Outbox
	switch {
	case !s.OutboxExists:
		outbox += " (missing)"
	case !s.InPublication:
		outbox += " (not in publication " + r.Publication + ")"
	}
	row("outbox", outbox)
	if s.Error != "" {
		row("error", s.Error)
	} else {
		row("backlog", backlog(s))
	}
	row("dead_letters", optInt64(s.DeadLetters))
	row("clickhouse", s.ClickHouseTable+routedNote([]StreamStatus{s}))
	tableRows(s, row)
}

func backlog(s StreamStatus) string {
	if s.OldestBacklogAgeSeconds == nil {
		return fmt.Sprintf("%d rows", s.BacklogRows)
	}
	return fmt.Sprintf("%d rows, oldest %s", s.BacklogRows, HumanSeconds(*s.OldestBacklogAgeSeconds))
}

// tableRows are a line per ClickHouse table of s.
func tableRows(s StreamStatus, row func(k, v string)) {
	for _, tb := range s.Tables {
		v := "rows " + optUint64(tb.Rows) + ", guarantee " + tb.Guarantee
		if !tb.Exists {
			v = "missing"
		}
		if tb.Error != "" && tb.Exists {
			v += " (" + tb.Error + ")"
		}
		row("table "+tb.Name, v)
	}
}

// routedNote says how many tables the first of streams' template routed to
// ("" for a table that is not a template).
func routedNote(streams []StreamStatus) string {
	if len(streams) == 0 || !streams[0].Routed {
		return ""
	}
	return fmt.Sprintf(" (routed: %d tables)", len(streams[0].Tables))
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
		return "without " + strings.Join(notPublished(r), ", ")
	case r.PublicationAfterSlot:
		return "created after the slot's position: not usable by the slot"
	}
	return "ok"
}

// notPublished names the outbox tables the publication lacks.
func notPublished(r *Report) []string {
	var out []string
	for _, s := range r.Streams {
		if !s.InPublication {
			out = append(out, s.Outbox)
		}
	}
	if len(out) == 0 {
		out = append(out, r.outbox())
	}
	return out
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

func optUint64(n *uint64) string {
	if n == nil {
		return "-"
	}
	return strconv.FormatUint(*n, 10)
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
