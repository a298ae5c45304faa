package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestStreamsBadInput: each mistake in a streams configuration is a clear
// error before anything is read from the slot, and the outbox rows stay
// where they are; a routed value that makes no valid table name is a dead
// letter that names it, and the stream goes on.
func TestStreamsBadInput(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	faultExec(ctx, t, e, djangoOutboxDDL)
	faultExec(ctx, t, e, `CREATE TABLE other_outbox (id uuid PRIMARY KEY, event_type text NOT NULL, environment text NOT NULL,
		event_context jsonb NOT NULL, amount text)`)
	faultExec(ctx, t, e, `ALTER TABLE outbox_event ADD COLUMN amount integer`)
	faultExec(ctx, t, e, `ALTER PUBLICATION `+e.Publication+` ADD TABLE core_outboxevent, other_outbox`)
	if err := e.CH.Exec(ctx, `CREATE TABLE typed_log (event_id UUID, event_type Int32, event_date_time DateTime, environment String,
		event_context String, metadata_version Int32) ENGINE = MergeTree ORDER BY event_date_time`); err != nil {
		t.Fatal(err)
	}
	faultInsert(ctx, t, e, "kept", 10)
	dir := t.TempDir()
	tests := []struct {
		name, yaml string
		env        []string
		want       []string
	}{
		{name: "missing table", yaml: "streams:\n  - name: app\n    outbox: core_outbox_event\n    clickhouse_table: event_log\n",
			want: []string{`stream "app"`, `"core_outbox_event" does not exist`}},
		{name: "missing column", env: []string{"RELAY_OUTBOX_TABLE=core_outboxevent", "RELAY_OUTBOX_COLUMNS=event_date_time=occurred_at"},
			want: []string{`event_date_time is read from column "occurred_at", which the table does not have`}},
		{name: "incompatible ClickHouse type", env: []string{"CLICKHOUSE_TABLE=typed_log"},
			want: []string{"typed_log", "event_type"}},
		{name: "two streams into one table with conflicting columns",
			yaml: "streams:\n  - name: a\n    outbox: outbox_event\n    clickhouse_table: event_log\n  - name: b\n    outbox: other_outbox\n    clickhouse_table: event_log\n",
			want: []string{`streams "a" and "b" both write ClickHouse table event_log`, `"amount"`}},
		{name: "YAML typo", yaml: "streams:\n  - name: app\n    outbox: outbox_event\n    clickhouse_tabel: event_log\n",
			want: []string{"relay.yaml:4", `clickhouse_tabel`}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if tt.yaml != "" {
				file := filepath.Join(dir, fmt.Sprint(i), "relay.yaml")
				if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(tt.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				env = append(env, "RELAY_CONFIG="+file)
			}
			code, out := runRelayCmd(t, time.Minute, e.RelayEnv(env...), "run")
			if code != 2 {
				t.Errorf("relay run: exit %d, want 2 (a configuration error)\n%s", code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("relay run's error does not contain %q:\n%s", w, out)
				}
			}
		})
	}
	// Nothing was read from the slot nor deleted.
	if n, err := e.OutboxRows(ctx); err != nil || n != 10 {
		t.Errorf("outbox rows %d (%v), want the 10 kept", n, err)
	}
	var slots int
	if err := e.PG.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, e.Slot).Scan(&slots); err != nil || slots != 0 {
		t.Errorf("%d slots (%v): a refused configuration created one", slots, err)
	}

	t.Run("routed value that makes no table name", func(t *testing.T) {
		faultExec(ctx, t, e, `DELETE FROM outbox_event`)
		faultExec(ctx, t, e, `INSERT INTO outbox_event (event_type, environment, event_context) VALUES
			('ok.one', 'test', '{}'), ('', 'test', '{"empty":true}'), ('ok.two', 'test', '{}'),
			(repeat('x', 300), 'test', '{"long":true}')`)
		p := faultStart(t, relayBin, e, "CLICKHOUSE_TABLE=ev_{event_type}")
		testenv.Eventually(t, time.Minute, "two events delivered, two dead-lettered", func() error {
			faultAlive(t, p, "while routing")
			var dead int
			if err := e.PG.QueryRow(ctx, `SELECT count(*) FROM outbox_dead_letter`).Scan(&dead); err != nil {
				return err
			}
			n, err := e.OutboxRows(ctx)
			if err != nil {
				return err
			}
			if dead != 2 || n != 0 {
				return fmt.Errorf("%d dead letters, %d outbox rows", dead, n)
			}
			return nil
		})
		var errs string
		if err := e.PG.QueryRow(ctx, `SELECT string_agg(error, ' | ' ORDER BY error) FROM outbox_dead_letter`).Scan(&errs); err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"event_type is empty", "ClickHouse table names here stop at 200"} {
			if !strings.Contains(errs, w) {
				t.Errorf("dead letters' errors %q do not contain %q", errs, w)
			}
		}
		for _, table := range []string{"ev_ok_one", "ev_ok_two"} {
			var n uint64
			if err := e.CH.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&n); err != nil || n != 1 {
				t.Errorf("%s: %d rows (%v), want 1", table, n, err)
			}
		}
	})
}
