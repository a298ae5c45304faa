package status

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/outbox-relay/relay/internal/sink/clickhouse/chsql"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/event"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/topology"
)

// clickHouseTimeout bounds the ClickHouse part of Gather, so a hung sink
// shows up as "unreachable" rather than as a hung status command.
const clickHouseTimeout = 5 * time.Second

// Target names what Gather looks at.
type Target struct {
	Slot        string
	Publication string
	// Streams are the relay's streams (config.Streams); none means the
	// default one (outbox_event into event_log). The report's top-level
	// backlog, ClickHouse rows and columns are those of the stream named
	// default, else of the first; the report lists that one first.
	Streams []config.Stream
	// ClickHouseURL is the clickhouse-go DSN of CLICKHOUSE_URL.
	ClickHouseURL string
	// MessagePrefix is RELAY_MESSAGE_PREFIX ("" when message mode is off).
	MessagePrefix string
	// Layout is CLICKHOUSE_TOPOLOGY and CLICKHOUSE_CLUSTER: on a cluster,
	// every replica is checked.
	Layout topology.Layout
	// Guarantee states each stream table's delivery guarantee; nil leaves
	// it "unknown".
	Guarantee GuaranteeFunc
}

// streams are t.Streams with the one named default first (the report's
// top-level figures are its own; else the first configured), or the
// default stream when there are none.
func (t Target) streams() []config.Stream {
	if len(t.Streams) == 0 {
		return []config.Stream{{Name: config.DefaultStreamName, Outbox: config.DefaultOutboxTable,
			ClickHouseTable: config.DefaultClickHouseTable, MaxTables: config.DefaultMaxTables}}
	}
	i := slices.IndexFunc(t.Streams, func(s config.Stream) bool { return s.Name == config.DefaultStreamName })
	if i <= 0 {
		return t.Streams
	}
	return append(append([]config.Stream{t.Streams[i]}, t.Streams[:i]...), t.Streams[i+1:]...)
}

// Gather reads a Report (without verdict). A PostgreSQL error is returned;
// ClickHouse problems are recorded in the Report.
func Gather(ctx context.Context, db DB, t Target) (*Report, error) {
	first := t.streams()[0]
	r := &Report{SchemaVersion: SchemaVersion, Slot: t.Slot, Publication: t.Publication, MessagePrefix: t.MessagePrefix, Reasons: []string{},
		ClickHouseTopology: string(t.Layout.Topology), ClickHouseCluster: t.Layout.Cluster,
		OutboxTable: first.Outbox, ClickHouseTable: first.ClickHouseTable}
	versionNum, err := gatherServer(ctx, db, r)
	if err != nil {
		return nil, err
	}
	s, err := ReadSlot(ctx, db, t.Slot)
	if err != nil {
		return nil, err
	}
	r.Time = s.At.UTC()
	fillSlot(r, s)
	if s.Exists && versionNum >= 170000 {
		// inactive_since exists from PostgreSQL 17 on.
		if err := db.QueryRow(ctx, `SELECT extract(epoch FROM now() - inactive_since)::float8
			FROM pg_replication_slots WHERE slot_name = $1`, t.Slot).Scan(&r.InactiveSeconds); err != nil {
			return nil, fmt.Errorf("read inactive_since: %w", err)
		}
	}
	if err := gatherFailover(ctx, db, r, t.Slot, versionNum); err != nil {
		return nil, err
	}
	if err := gatherPublication(ctx, db, r, t); err != nil {
		return nil, err
	}
	if r.Streams, err = gatherStreams(ctx, db, t.Publication, t.streams()); err != nil {
		return nil, err
	}
	r.PublicationHasTable = !slices.ContainsFunc(r.Streams, func(s StreamStatus) bool { return !s.InPublication })
	r.BacklogRows, r.OldestBacklogAgeSeconds = r.Streams[0].BacklogRows, r.Streams[0].OldestBacklogAgeSeconds
	if err := gatherDeadLetters(ctx, db, r); err != nil {
		return nil, err
	}
	if err := gatherEventsLost(ctx, db, r, t.Slot); err != nil {
		return nil, err
	}
	cols, err := gatherColumns(ctx, db, first)
	if err != nil {
		return nil, err
	}
	gatherClickHouse(ctx, r, t, cols)
	return r, nil
}

// gatherColumns reads the extra columns of s's outbox table: those that
// are neither a field's (nor the key) nor ignored.
func gatherColumns(ctx context.Context, db DB, s config.Stream) ([]event.Column, error) {
	skip := slices.Clone(s.Ignore)
	for _, f := range []string{config.FieldID, config.FieldEventType, config.FieldEventDateTime, config.FieldEnvironment,
		config.FieldEventContext, config.FieldMetadataVersion} {
		skip = append(skip, s.Column(f))
	}
	_, keyMapped := s.Columns[config.FieldID]
	var (
		names, typeNames []string
		oids             []uint32
		mods             []int32
		notNulls         []bool
	)
	err := db.QueryRow(ctx, `SELECT coalesce(array_agg(attname::text ORDER BY attnum), '{}'), coalesce(array_agg(atttypid::int8 ORDER BY attnum), '{}'),
			coalesce(array_agg(atttypmod ORDER BY attnum), '{}'), coalesce(array_agg(attnotnull ORDER BY attnum), '{}'),
			coalesce(array_agg(format_type(atttypid, atttypmod) ORDER BY attnum), '{}')
		FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
		AND attname <> ALL($2::text[])
		AND ($3 OR attnum <> ALL(coalesce((SELECT indkey::int2[] FROM pg_index WHERE indrelid = to_regclass($1) AND indisprimary), '{}')))`,
		s.OutboxRegclass(), skip, keyMapped).Scan(&names, &oids, &mods, &notNulls, &typeNames)
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", s.Outbox, err)
	}
	cols := make([]event.Column, len(names))
	for i := range names {
		cols[i] = event.Column{Name: names[i], TypeOID: oids[i], TypeMod: mods[i], NotNull: notNulls[i], TypeName: typeNames[i]}
	}
	return cols, nil
}

// mapColumns fills r.Columns: the mapping for the server's capabilities,
// against event_log's columns (nil when ClickHouse was not read).
func mapColumns(r *Report, cols []event.Column, caps chsink.Caps, have map[string]string) {
	r.Columns = make([]ColumnMapping, 0, len(cols))
	for _, c := range cols {
		m := ColumnMapping{Name: c.Name, PostgresType: chsink.PGTypeName(c), EventLogType: have[c.Name]}
		want, ok := chsink.MapType(c, caps)
		m.ClickHouseType = want
		switch {
		case !ok:
			m.State = "no mapping"
		case have == nil:
			m.State = "unknown"
		case m.EventLogType == "":
			m.State = "missing"
		case !chsink.SameType(m.EventLogType, want):
			m.State = "type differs"
		default:
			m.State = "written"
		}
		r.Columns = append(r.Columns, m)
	}
}

func gatherServer(ctx context.Context, db DB, r *Report) (versionNum int, err error) {
	err = db.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('server_version_num')::int,
		current_setting('max_slot_wal_keep_size'), pg_size_bytes(current_setting('max_slot_wal_keep_size')), current_setting('wal_level')`).
		Scan(&r.PostgresVersion, &versionNum, &r.MaxSlotWALKeepSize, &r.MaxSlotWALKeepSizeBytes, &r.WALLevel)
	if err != nil {
		return 0, fmt.Errorf("read PostgreSQL settings: %w", err)
	}
	return versionNum, nil
}

func fillSlot(r *Report, s SlotSample) {
	r.CurrentWALLSN = pglogrepl.LSN(s.CurrentLSN).String()
	r.SlotExists = s.Exists
	if !s.Exists {
		r.WALStatus = WALStatusMissing
		return
	}
	r.Plugin, r.SlotDatabase, r.SlotInDatabase = s.Plugin, s.Database, s.InDatabase
	r.Active, r.ActivePID = s.Active, s.ActivePID
	r.ConfirmedFlushLSN, r.RestartLSN = lsnText(s.ConfirmedLSN), lsnText(s.RestartLSN)
	r.LagBytes, r.RetainedWALBytes = s.LagBytes, s.RetainedBytes
	r.WALStatus, r.SafeWALSize = s.WALStatus, s.SafeWALSize
	if s.ReplyAge != nil {
		sec := s.ReplyAge.Seconds()
		r.LastReplyAgeSeconds = &sec
	}
}

func lsnText(lsn uint64) *string {
	if lsn == 0 {
		return nil
	}
	s := pglogrepl.LSN(lsn).String()
	return &s
}

// gatherPublication reads whether the publication exists and is usable by
// the slot (gatherStreams reads which outbox tables it includes): pgoutput
// reads the publication
// as of the WAL it decodes, so one created (again) by a transaction the
// slot's catalog snapshot does not cover yet (its xmin not older than the
// slot's catalog_xmin) cannot be streamed from that slot's position.
func gatherPublication(ctx context.Context, db DB, r *Report, t Target) error {
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
		EXISTS (SELECT 1 FROM pg_publication p, pg_replication_slots s
			WHERE p.pubname = $1 AND s.slot_name = $2 AND s.database = current_database()
			AND age(p.xmin) <= age(s.catalog_xmin))`,
		t.Publication, t.Slot).Scan(&r.PublicationExists, &r.PublicationAfterSlot)
	if err != nil {
		return fmt.Errorf("read publication %q: %w", t.Publication, err)
	}
	return nil
}

// gatherEventsLost reads the mark the relay leaves when its slot was lost
// or recreated in message mode (migration 00008; a schema without it has
// no mark).
func gatherEventsLost(ctx context.Context, db DB, r *Report, slot string) error {
	err := db.QueryRow(ctx, `SELECT events_lost_at FROM outbox_relay_state WHERE slot = $1`, slot).Scan(&r.EventsLostAt)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "42703"):
		return nil
	case err != nil:
		return fmt.Errorf("read outbox_relay_state: %w", err)
	}
	if r.EventsLostAt != nil {
		at := r.EventsLostAt.UTC()
		r.EventsLostAt = &at
	}
	return nil
}

// gatherDeadLetters counts outbox_dead_letter when it exists and the role
// may read it (the relay itself only needs INSERT on it).
func gatherDeadLetters(ctx context.Context, db DB, r *Report) error {
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('outbox_dead_letter') IS NOT NULL
		AND has_table_privilege('outbox_dead_letter', 'SELECT')`).Scan(&exists); err != nil {
		return fmt.Errorf("look for outbox_dead_letter: %w", err)
	}
	if !exists {
		return nil
	}
	var n int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM outbox_dead_letter`).Scan(&n); err != nil {
		return fmt.Errorf("count outbox_dead_letter: %w", err)
	}
	r.DeadLetters = &n
	return gatherStreamDeadLetters(ctx, db, r.Streams)
}

// gatherClickHouse fills the ClickHouse fields; it never fails.
func gatherClickHouse(ctx context.Context, r *Report, t Target, cols []event.Column) {
	ctx, cancel := context.WithTimeout(ctx, clickHouseTimeout)
	defer cancel()
	// Without ClickHouse the mapping is shown for the newest servers.
	mapColumns(r, cols, chsink.CapsOf(driver.ServerVersion{Version: proto.Version{Major: 99}}), nil)
	conn, err := chsink.Connect(ctx, t.ClickHouseURL)
	if err != nil {
		r.ClickHouseError = err.Error()
		return
	}
	defer func() { _ = conn.Close() }()
	r.ClickHouseReachable = true
	var caps chsink.Caps
	if v, err := conn.ServerVersion(); err == nil {
		r.ClickHouseVersion = fmt.Sprintf("%d.%d.%d", v.Version.Major, v.Version.Minor, v.Version.Patch)
		caps = chsink.CapsOf(*v)
	}
	if err := gatherStreamTables(ctx, conn, t, r.Streams); err != nil {
		r.ClickHouseError = err.Error()
		return
	}
	if !r.Streams[0].Routed {
		if err := readEventLog(ctx, conn, r, r.ClickHouseTable); err != nil {
			r.ClickHouseError = err.Error()
			return
		}
		have, err := readColumns(ctx, conn, r.ClickHouseTable)
		if err != nil {
			r.ClickHouseError = err.Error()
			return
		}
		mapColumns(r, cols, caps, have)
	}
	if t.Layout.OnCluster() {
		if err := gatherReplicas(ctx, conn, r, t, replicaTable(r.Streams[0])); err != nil {
			r.ClickHouseError = err.Error()
		}
	}
}

// replicaTable is the table whose replication state each replica is asked
// for: the first stream's, or the first it routed to ("" for none yet).
func replicaTable(s StreamStatus) string {
	if !s.Routed {
		return s.ClickHouseTable
	}
	if len(s.Tables) > 0 {
		return s.Tables[0].Name
	}
	return ""
}

// readEventLog reads count() and the newest event time. Servers before 20.1
// keep the microseconds in event_date_time_us (see migrations/clickhouse).
func readEventLog(ctx context.Context, conn driver.Conn, r *Report, table string) error {
	var cols, withUS uint64
	if err := conn.QueryRow(ctx, `SELECT count(), countIf(name = 'event_date_time_us') FROM system.columns
		WHERE database = currentDatabase() AND table = ?`, table).Scan(&cols, &withUS); err != nil {
		return fmt.Errorf("describe %s: %w", table, err)
	}
	if cols == 0 {
		return fmt.Errorf("table %s does not exist in the database of CLICKHOUSE_URL (run relay migrate)", table)
	}
	var rows uint64
	var newest time.Time
	if withUS > 0 {
		var micros uint64
		if err := conn.QueryRow(ctx, `SELECT count(), max(toUInt64(event_date_time) * 1000000 + event_date_time_us) FROM `+
			chsql.Ident(table)).Scan(&rows, &micros); err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		newest = time.UnixMicro(int64(micros)).UTC()
	} else if err := conn.QueryRow(ctx, `SELECT count(), max(event_date_time) FROM `+chsql.Ident(table)).Scan(&rows, &newest); err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	r.ClickHouseRows = &rows
	if rows > 0 {
		newest = newest.UTC()
		r.ClickHouseNewestEvent = &newest
	}
	return nil
}

// readColumns reads event_log's columns and their types, as the sink reads
// them.
func readColumns(ctx context.Context, conn driver.Conn, table string) (map[string]string, error) {
	have, err := chsink.ColumnTypes(ctx, conn, table)
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", table, err)
	}
	return have, nil
}
