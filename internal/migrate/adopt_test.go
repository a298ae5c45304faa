package migrate_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/migrate"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
)

// An application's own event_log (the original system's, on 18.16:
// DateTime), with a row in it: migrate keeps it exactly as it is, makes no
// view over it, states its guarantee, and --adopt has nothing to run: 18.16
// has neither non_replicated_deduplication_window nor the insert token. A
// table that is missing is made as the relay's.
func TestMigrateAdoptsExistingTable(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	for _, stmt := range []string{"DROP TABLE event_log_dedup", "DROP TABLE event_log",
		`CREATE TABLE event_log (event_type String, event_date_time DateTime, environment String, event_context String, metadata_version Int32 DEFAULT 1)
		ENGINE = MergeTree() PARTITION BY toYYYYMM(event_date_time) ORDER BY (event_date_time, event_type)`} {
		if err := e.CH.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	b, err := e.CH.PrepareBatch(ctx, "INSERT INTO event_log (event_type, environment, event_context)")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append("old", "production", "{}"); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	before := createQuery(ctx, t, e, "event_log")
	for _, adopt := range []bool{false, true} {
		var out bytes.Buffer
		gs, err := migrate.ClickHouseTables(ctx, e.CH, migrate.Options{Layout: topology.Layout{Topology: topology.Single},
			Tables: []string{"event_log", "events_new"}, Adopt: adopt, Out: &out}, zerolog.Nop())
		if err != nil {
			t.Fatalf("migrate (adopt %t): %v", adopt, err)
		}
		text := out.String()
		t.Logf("relay migrate (adopt %t) printed:\n%s", adopt, text)
		for _, want := range []string{
			"clickhouse table event_log: exists, kept as it is; at least once: a replay after a crash is a visible duplicate (MergeTree without insert deduplication; this server has no non_replicated_deduplication_window nor insert_deduplication_token (22.2+)",
			"clickhouse table events_new: ",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("migrate printed\n%s\nwant it to hold %q", text, want)
			}
		}
		if strings.Contains(text, "running:") || strings.Contains(text, "ALTER") {
			t.Errorf("migrate on 18.16 names or runs an ALTER:\n%s", text)
		}
		if said := strings.Contains(text, "--adopt: no statement raises it on this server"); said != adopt {
			t.Errorf("with --adopt %t, migrate says there is nothing to run: %t\n%s", adopt, said, text)
		}
		if len(gs) != 2 || gs[0].Level != chsink.AtLeastOnce || gs[1].Level != chsink.ExactlyOnceFinal {
			t.Errorf("guarantees = %+v, want event_log at least once, events_new exactly once through FINAL", gs)
		}
	}
	if after := createQuery(ctx, t, e, "event_log"); after != before {
		t.Errorf("migrate changed event_log:\n%s\nwas\n%s", after, before)
	}
	var views, rows uint64
	if err := e.CH.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'event_log_dedup'").Scan(&views); err != nil || views != 0 {
		t.Errorf("event_log_dedup: %d (%v), want none over a MergeTree", views, err)
	}
	if err := e.CH.QueryRow(ctx, "SELECT count() FROM event_log").Scan(&rows); err != nil || rows != 1 {
		t.Errorf("event_log holds %d rows (%v), want its 1 old row", rows, err)
	}
	if err := e.CH.Exec(ctx, "SELECT count() FROM events_new_dedup"); err != nil {
		t.Errorf("the new table's view: %v", err)
	}
}

func createQuery(ctx context.Context, t *testing.T, e *testenv.Env, table string) string {
	t.Helper()
	var q string
	if err := e.CH.QueryRow(ctx, "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = ?", table).Scan(&q); err != nil {
		t.Fatal(err)
	}
	return q
}

// On a current server (the 26.5 engine) the original table's guarantee is
// raised by one ALTER: migrate names it, --adopt prints and runs it and
// then states exactly once; nothing else of the table changes.
func TestConformanceAdopt(t *testing.T) {
	eng := testenv.NewEngine(t)
	eng.Database(t)
	ctx := context.Background()
	eng.Exec(t, `CREATE TABLE event_log (event_type String, event_date_time DateTime64(6), environment String, event_context String, metadata_version Int32 DEFAULT 1)
		ENGINE = MergeTree() PARTITION BY toYYYYMM(event_date_time) ORDER BY (event_date_time, event_type)`)
	eng.Exec(t, `CREATE TABLE replacing (event_id UUID, event_type String, event_date_time DateTime64(6)) ENGINE = ReplacingMergeTree ORDER BY (event_type, event_id)`)
	upgrade := "ALTER TABLE `event_log` MODIFY SETTING non_replicated_deduplication_window = 1000"
	run := func(adopt bool) ([]chsink.Guarantee, string) {
		t.Helper()
		var out bytes.Buffer
		gs, err := migrate.ClickHouseTables(ctx, eng.Conn(), migrate.Options{Layout: topology.Layout{Topology: topology.Single},
			Tables: []string{"event_log", "replacing"}, Adopt: adopt, Out: &out}, zerolog.Nop())
		if err != nil {
			t.Fatalf("migrate (adopt %t): %v", adopt, err)
		}
		t.Logf("relay migrate (adopt %t) printed:\n%s", adopt, out.String())
		return gs, out.String()
	}
	gs, text := run(false)
	if gs[0].Level != chsink.AtLeastOnce || gs[0].Upgrade != upgrade || !strings.Contains(text, "`relay migrate --adopt` runs: "+upgrade) {
		t.Errorf("before --adopt: %+v\n%s\nwant at least once, raised by %s", gs[0], text, upgrade)
	}
	if gs[1].Level != chsink.ExactlyOnceFinal || gs[1].Upgrade == "" {
		t.Errorf("a ReplacingMergeTree ordered by event_id: %+v, want exactly once through FINAL with an upgrade", gs[1])
	}
	if strings.Contains(eng.Rows(t, "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = 'event_log'")[0][0].(string), "deduplication") {
		t.Error("migrate without --adopt changed event_log's settings")
	}
	gs, text = run(true)
	if !strings.Contains(text, "  running: "+upgrade+"\n") || gs[0].Level != chsink.ExactlyOnce || gs[1].Level != chsink.ExactlyOnce {
		t.Errorf("with --adopt: %+v\n%s\nwant the ALTER printed, then exactly once for both", gs, text)
	}
	if !strings.Contains(text, "clickhouse table event_log: now exactly once (non_replicated_deduplication_window = 1000") {
		t.Errorf("with --adopt, migrate printed\n%s\nwant the new guarantee", text)
	}
	if n := eng.Rows(t, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name IN ('event_log_dedup', 'replacing_dedup')")[0][0].(uint64); n != 0 {
		t.Errorf("%d views made over adopted tables, want none", n)
	}
	// The insert token now drops a repeat: the guarantee is real.
	for range 2 {
		eng.Exec(t, "INSERT INTO event_log (event_type, event_date_time) SETTINGS insert_deduplication_token = 'slot:0/1:0/2' VALUES ('a', now64(6))")
	}
	if n := eng.Rows(t, "SELECT count() FROM event_log")[0][0].(uint64); n != 1 {
		t.Errorf("event_log holds %d rows after one insert repeated with its token, want 1", n)
	}
}
