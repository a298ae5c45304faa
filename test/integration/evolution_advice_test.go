package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestRefusalAdviceWorks follows, step by step, the advice of each refusal
// of an outbox change the relay cannot carry: an unmapped type (inet),
// changed or left out of the publication, and a column named like one the
// relay fills in ClickHouse (commit_lsn), renamed. Each time: the relay
// exits 5 naming the column and the steps, nothing of the change is
// deleted, and after the steps a restart delivers every row exactly once.
func TestRefusalAdviceWorks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, column, pgType, want string
		fix                        []string
	}{
		{name: "inet retyped", column: "ip", pgType: "inet", want: "outbox_event.ip has type",
			fix: []string{"ALTER TABLE outbox_event ALTER COLUMN ip TYPE text USING ip::text"}},
		{name: "inet left out of the publication", column: "ip", pgType: "inet", want: "outbox_event.ip has type",
			fix: []string{"ALTER PUBLICATION $PUB SET TABLE outbox_event (id, event_type, event_date_time, environment, event_context, metadata_version, user_id)"}},
		{name: "commit_lsn renamed", column: "commit_lsn", pgType: "bigint", want: "the name of a column the relay fills",
			fix: []string{"ALTER TABLE outbox_event RENAME COLUMN commit_lsn TO app_commit_lsn"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := testenv.New(t)
			ctx := context.Background()
			p := startRelay(t, e)
			waitLog(t, p, logStreaming, 30*time.Second)
			faultExec(ctx, t, e, `INSERT INTO outbox_event (event_type, environment, event_context) VALUES ('before', 'test', '{}')`)
			e.WaitDelivered(t, 1, time.Minute, p)
			faultExec(ctx, t, e, fmt.Sprintf("ALTER TABLE outbox_event ADD COLUMN %s %s", tc.column, tc.pgType))
			value := "'10.0.0.1'"
			if tc.pgType == "bigint" {
				value = "42"
			}
			faultExec(ctx, t, e, fmt.Sprintf(`INSERT INTO outbox_event (event_type, environment, event_context, %s)
				SELECT 'after', 'test', '{}', %s FROM generate_series(1, 5)`, tc.column, value))
			if code := faultExitCode(t, p, time.Minute); code != evoExitSchema {
				t.Fatalf("relay exited %d, want %d:\n%s", code, evoExitSchema, p.Output())
			}
			out := p.Output()
			for _, want := range []string{tc.want, "outbox_event." + tc.column, "pg_drop_replication_slot"} {
				if !strings.Contains(out, want) {
					t.Fatalf("the refusal does not say %q:\n%s", want, out)
				}
			}
			if n, err := e.OutboxRows(ctx); err != nil || n != 5 {
				t.Fatalf("outbox_event holds %d rows (%v), want the 5 refused", n, err)
			}
			// The advice: the change, then the slot dropped, then a restart.
			for _, sql := range tc.fix {
				faultExec(ctx, t, e, strings.ReplaceAll(sql, "$PUB", e.Publication))
			}
			// The walsender of the stopped relay may outlive it for a moment.
			testenv.Eventually(t, 30*time.Second, "the slot dropped", func() error {
				_, err := e.PG.Exec(ctx, "SELECT pg_drop_replication_slot($1)", e.Slot)
				return err
			})
			p2 := startRelay(t, e)
			faultExpectExactlyOnce(t, e, 6, time.Minute, p2)
			if n, err := e.OutboxRows(ctx); err != nil || n != 0 {
				t.Fatalf("outbox_event holds %d rows (%v) after delivery, want 0", n, err)
			}
		})
	}
}
