package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/outbox-relay/relay/internal/status"
	"github.com/outbox-relay/relay/internal/testenv"
)

// relay status reads the stream settings as relay run does: with an
// application's own outbox table and ClickHouse table, both the table and
// the JSON (top level and streams) are about those, with the guarantee the
// table gives (a plain MergeTree on 18.16: at least once).
func TestStatusOfAConfiguredStream(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	if _, err := e.PG.Exec(ctx, `CREATE TABLE app_outboxevent (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		event_type text NOT NULL, created_at timestamptz NOT NULL, event_context jsonb NOT NULL);
		INSERT INTO app_outboxevent (event_type, created_at, event_context) VALUES ('a', now(), '{}'), ('b', now(), '{}')`); err != nil {
		t.Fatal(err)
	}
	if err := e.CH.Exec(ctx, `CREATE TABLE app_log (event_type String, event_date_time DateTime) ENGINE = MergeTree ORDER BY event_date_time`); err != nil {
		t.Fatal(err)
	}
	env := []string{"DATABASE_URL=" + e.DatabaseURL, "CLICKHOUSE_URL=" + e.ClickHouse, "RELAY_SLOT=" + e.Slot,
		"RELAY_PUBLICATION=" + e.Publication, "RELAY_OUTBOX_TABLE=app_outboxevent", "CLICKHOUSE_TABLE=app_log",
		"RELAY_OUTBOX_COLUMNS=event_date_time=created_at"}
	run := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		// No slot yet: CRITICAL.
		if code := Main(ctx, append([]string{"status"}, args...), env, &stdout, &stderr); code != ExitCritical {
			t.Fatalf("status %v: exit %d, want %d\n%s%s", args, code, ExitCritical, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	var r status.Report
	if err := json.Unmarshal([]byte(run("--json")), &r); err != nil {
		t.Fatal(err)
	}
	if r.OutboxTable != "app_outboxevent" || r.ClickHouseTable != "app_log" || r.BacklogRows != 2 || len(r.Streams) != 1 {
		t.Fatalf("status --json: outbox %q, table %q, backlog %d, %d streams", r.OutboxTable, r.ClickHouseTable, r.BacklogRows, len(r.Streams))
	}
	s := r.Streams[0]
	if s.Name != "default" || s.Outbox != "app_outboxevent" || s.BacklogRows != 2 || s.InPublication || len(s.Tables) != 1 ||
		s.Tables[0].Name != "app_log" || s.Tables[0].Rows == nil || *s.Tables[0].Rows != 0 || !strings.HasPrefix(s.Tables[0].Guarantee, "at least once") {
		t.Errorf("status --json streams[0]: %+v", s)
	}
	out := run()
	for _, re := range []string{`BACKLOG\n\s+table\s+app_outboxevent\n\s+rows\s+2\n`, `CLICKHOUSE\n\s+table\s+app_log\n`,
		`guarantee\s+at least once: a replay after a crash is a visible duplicate`, `publication\s+\S+ \(without app_outboxevent\)`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status lacks %s:\n%s", re, out)
		}
	}
}
