package clickhouse_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/migrate"
	"github.com/outbox-relay/relay/internal/retry"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
)

// Tables the relay did not make, on the real server (18.16 in `make
// test`): what it writes into them, what it refuses, and what they
// guarantee.

// originalDDL is the original system's event_log, as 18.16 can have it
// (DateTime: no DateTime64 there).
const originalDDL = `CREATE TABLE %s (event_type String, event_date_time DateTime, environment String,
	event_context String, metadata_version Int32 DEFAULT 1)
	ENGINE = MergeTree() PARTITION BY toYYYYMM(event_date_time) ORDER BY (event_date_time, event_type)`

func adoptEvents(n int) []event.Event {
	at := time.Date(2025, 3, 4, 5, 6, 7, 891000000, time.UTC)
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{ID: uuid.New(), Type: []string{"user_created", "order_paid"}[i%2], OccurredAt: at.Add(time.Duration(i) * time.Second),
			Environment: "production", Context: []byte(`{"n": ` + string(rune('0'+i)) + `}`), MetadataVersion: int64(i + 1), CommitLSN: uint64(i + 100)}
	}
	return evs
}

// Each shape of an adopted table receives the relay's values converted to
// its types; the bookkeeping columns it lacks are simply not written.
func TestSinkWritesAdoptedTables(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	evs := adoptEvents(2)
	for _, tc := range []struct {
		name, ddl, check string
		want             []string
	}{
		{"original system's event_log", strings.Replace(originalDDL, "%s", "t_original", 1),
			"SELECT concat(event_type, '|', toString(toUnixTimestamp(event_date_time)), '|', environment, '|', event_context, '|', toString(metadata_version)) FROM t_original ORDER BY event_date_time",
			[]string{"user_created|1741064767|production|{\"n\": 0}|1", "order_paid|1741064768|production|{\"n\": 1}|2"}},
		{"Int64 version, zoned DateTime, Nullable type and context", `CREATE TABLE t_nullable (event_type Nullable(String), event_date_time DateTime('Asia/Tokyo'),
			environment String, event_context Nullable(String), metadata_version Int64, event_id Nullable(UUID)) ENGINE = MergeTree ORDER BY event_date_time`,
			"SELECT concat(assumeNotNull(event_type), '|', toString(toUnixTimestamp(event_date_time)), '|', assumeNotNull(event_context), '|', toString(metadata_version), '|', toString(isNull(event_id))) FROM t_nullable ORDER BY event_date_time",
			[]string{"user_created|1741064767|{\"n\": 0}|1|0", "order_paid|1741064768|{\"n\": 1}|2|0"}},
		{"UInt64 and UInt32 versions, String event_id, commit_lsn", `CREATE TABLE t_uint (event_id String, event_type String, event_date_time DateTime('UTC'),
			metadata_version UInt32, commit_lsn UInt64, relayed_at DateTime) ENGINE = MergeTree ORDER BY event_date_time`,
			"SELECT concat(toString(length(event_id)), '|', toString(metadata_version), '|', toString(commit_lsn), '|', toString(toUnixTimestamp(relayed_at))) FROM t_uint ORDER BY event_date_time",
			[]string{"36|1|100|1700000000", "36|2|101|1700000000"}},
		{"Nullable(Int32) version", `CREATE TABLE t_nint (event_type String, event_date_time DateTime, metadata_version Nullable(Int32)) ENGINE = MergeTree ORDER BY event_date_time`,
			"SELECT toString(metadata_version) FROM t_nint ORDER BY event_date_time",
			[]string{"1", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.CH.Exec(ctx, tc.ddl); err != nil {
				t.Fatal(err)
			}
			table := strings.Fields(tc.ddl)[2]
			s := openSink(t, e.ClickHouse)
			if err := s.Prepare(ctx, table, []string{}); err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if err := s.WriteBatch(ctx, table, evs, "tok", time.Unix(1700000000, 0)); err != nil {
				t.Fatalf("WriteBatch: %v", err)
			}
			rows, err := e.CH.Query(ctx, tc.check)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var got []string
			for rows.Next() {
				var v string
				if err := rows.Scan(&v); err != nil {
					t.Fatal(err)
				}
				got = append(got, v)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("%s holds\n%s\nwant\n%s", table, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// Prepare refuses, naming the table and the column, what the relay cannot
// write faithfully, before anything is written.
func TestSinkPrepareRefuses(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, ddl string
		carried   []string
		wantErr   []string // empty: accepted
	}{
		{"event_type into Int32", "CREATE TABLE p_int (event_type Int32, event_date_time DateTime) ENGINE = MergeTree ORDER BY event_date_time", nil,
			[]string{"p_int.event_type is Int32", "String"}},
		{"event_date_time into Date", "CREATE TABLE p_date (event_type String, event_date_time Date) ENGINE = MergeTree ORDER BY event_date_time", nil,
			[]string{"p_date.event_date_time is Date"}},
		{"a column it requires that nothing fills", "CREATE TABLE p_req (event_type String, event_date_time DateTime, tenant_id UInt64) ENGINE = MergeTree ORDER BY event_date_time", []string{},
			[]string{"p_req.tenant_id (UInt64) has no DEFAULT and is not Nullable", "tenant_id"}},
		{"that column carried by the outbox", "CREATE TABLE p_carried (event_type String, event_date_time DateTime, tenant_id UInt64) ENGINE = MergeTree ORDER BY event_date_time", []string{"tenant_id"}, nil},
		{"that column with a DEFAULT", "CREATE TABLE p_default (event_type String, event_date_time DateTime, tenant_id UInt64 DEFAULT 0) ENGINE = MergeTree ORDER BY event_date_time", []string{}, nil},
		{"that column Nullable", "CREATE TABLE p_null (event_type String, event_date_time DateTime, tenant_id Nullable(UInt64)) ENGINE = MergeTree ORDER BY event_date_time", []string{}, nil},
		{"a missing table", "", nil, []string{"clickhouse table p_missing does not exist"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := "p_missing"
			if tc.ddl != "" {
				if err := e.CH.Exec(ctx, tc.ddl); err != nil {
					t.Fatal(err)
				}
				table = strings.Fields(tc.ddl)[2]
			}
			err := openSink(t, e.ClickHouse).Prepare(ctx, table, tc.carried)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Prepare = %v, want nil", err)
				}
				return
			}
			if err == nil || !retry.IsPermanent(err) {
				t.Fatalf("Prepare = %v, want a permanent error", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Prepare = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

// One sink writes a batch's parts to several tables with the batch's one
// token; each table holds its part.
func TestSinkWritesSeveralTables(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	if err := e.CH.Exec(ctx, strings.Replace(originalDDL, "%s", "orig", 1)); err != nil {
		t.Fatal(err)
	}
	s := openSink(t, e.ClickHouse)
	evs := adoptEvents(5)
	if err := s.WriteBatch(ctx, "event_log", evs[:3], "slot:0/10:0/20", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, "orig", evs[3:], "slot:0/10:0/20", time.Now()); err != nil {
		t.Fatal(err)
	}
	for table, want := range map[string]uint64{"event_log": 3, "orig": 2} {
		var n uint64
		if err := e.CH.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&n); err != nil || n != want {
			t.Errorf("%s holds %d rows (%v), want %d", table, n, err, want)
		}
	}
}

// A routed table is created on its first write, as `relay migrate` makes
// event_log; two sinks (of two relays: no shared lock) meeting it at once
// both succeed. Without WithCreate a missing table is an error.
func TestSinkCreatesRoutedTable(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	create := migrate.EventTableCreator(topology.Layout{Topology: topology.Single}, zerolog.Nop())
	sinks := []*chsink.Sink{}
	for range 2 {
		s, err := chsink.Open(ctx, e.ClickHouse, chsink.WithCreate(create), chsink.WithSchemaLock(&sync.Mutex{}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		sinks = append(sinks, s)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(sinks))
	for i, s := range sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.WriteBatch(ctx, "events_user_created", adoptEvents(3), "", time.Now())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("sink %d: %v", i, err)
		}
	}
	var n uint64
	if err := e.CH.QueryRow(ctx, "SELECT count() FROM events_user_created").Scan(&n); err != nil || n != 6 {
		t.Errorf("events_user_created holds %d rows (%v), want 6", n, err)
	}
	g, err := sinks[0].Guarantee(ctx, "events_user_created")
	if err != nil || g.Level != chsink.ExactlyOnceFinal {
		t.Errorf("routed table's guarantee = %+v, %v; want %s (made like event_log)", g, err, chsink.ExactlyOnceFinal)
	}
	if err := e.CH.Exec(ctx, "SELECT count() FROM events_user_created_dedup"); err != nil {
		t.Errorf("the routed table's view: %v", err)
	}
	plain := openSink(t, e.ClickHouse)
	err = plain.WriteBatch(ctx, "events_other", adoptEvents(1), "", time.Now())
	if err == nil || !strings.Contains(err.Error(), "events_other does not exist") {
		t.Errorf("WriteBatch into a missing table without WithCreate = %v, want an error naming it", err)
	}
}

// What each kind of table guarantees on this server, and the statement
// that raises it where one exists.
func TestReadGuarantee(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	v, err := e.CH.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	token := v.Version.Major > 22 || v.Version.Major == 22 && v.Version.Minor >= 2
	for _, ddl := range []string{
		strings.Replace(originalDDL, "%s", "g_plain", 1),
		"CREATE TABLE g_replacing (event_id UUID, event_type String, event_date_time DateTime) ENGINE = ReplacingMergeTree ORDER BY (event_type, event_id)",
		"CREATE TABLE g_replacing_nokey (event_id UUID, event_type String, event_date_time DateTime) ENGINE = ReplacingMergeTree ORDER BY event_type",
		"CREATE TABLE g_log (event_type String, event_date_time DateTime) ENGINE = Log",
	} {
		if err := e.CH.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}
	// up is the statement that raises a non-replicated table on 22.2+.
	up := func(table string) string {
		if !token {
			return ""
		}
		return "ALTER TABLE `" + table + "` MODIFY SETTING non_replicated_deduplication_window = 1000"
	}
	eventLog := chsink.ExactlyOnceFinal
	if token {
		eventLog = chsink.ExactlyOnce // migrate set the window
	}
	plainReason := "nothing short of recreating the table"
	if token {
		plainReason = "without insert deduplication"
	}
	for _, tc := range []struct {
		table       string
		want        chsink.Level
		upgrade     string
		reasonHolds string
	}{
		{"event_log", eventLog, "", ""},
		{"g_plain", chsink.AtLeastOnce, up("g_plain"), plainReason},
		{"g_replacing", chsink.ExactlyOnceFinal, up("g_replacing"), "holds event_id"},
		{"g_replacing_nokey", chsink.AtLeastOnce, up("g_replacing_nokey"), "lacks event_id"},
		{"g_log", chsink.AtLeastOnce, "", "engine Log has no deduplication"},
	} {
		t.Run(tc.table, func(t *testing.T) {
			g, ok, err := chsink.ReadGuarantee(ctx, e.CH, tc.table)
			if err != nil || !ok {
				t.Fatalf("ReadGuarantee = %+v, %t, %v", g, ok, err)
			}
			if g.Level != tc.want || g.Upgrade != tc.upgrade || !strings.Contains(g.Reason, tc.reasonHolds) {
				t.Errorf("ReadGuarantee(%s) = %+v\nwant level %q, upgrade %q, a reason holding %q", tc.table, g, tc.want, tc.upgrade, tc.reasonHolds)
			}
		})
	}
	if _, ok, err := chsink.ReadGuarantee(ctx, e.CH, "g_missing"); ok || err != nil {
		t.Errorf("ReadGuarantee of a missing table = %t, %v; want false, nil", ok, err)
	}
}
