package integration

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
)

// A privilege the relay lacks is an operator's problem, wherever it shows:
// without DELETE on outbox_event (the cleanup) or INSERT on
// outbox_dead_letter, the relay stops with PostgreSQL's "permission denied"
// and the README's advice, instead of retrying forever; nothing it could
// not finish is confirmed, so a restart with the grant delivers the rest.
func TestMissingPrivilegeStopsTheRelay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, revoke, want string
		poison             bool
	}{
		{"delete on outbox_event", "REVOKE DELETE ON outbox_event FROM %s", "delete delivered rows", false},
		{"insert on outbox_dead_letter", "REVOKE INSERT ON outbox_dead_letter FROM %s", "outbox_dead_letter", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			role := testenv.RandomName("relay_np_")
			t.Cleanup(func() { dropRole(role) })
			e := testenv.New(t)
			ctx := context.Background()
			db := pgx.Identifier{e.Name}.Sanitize()
			for _, sql := range []string{
				"CREATE ROLE " + role + " LOGIN REPLICATION",
				"GRANT CONNECT ON DATABASE " + db + " TO " + role,
				"GRANT SELECT, DELETE ON outbox_event TO " + role,
				"GRANT SELECT, INSERT, UPDATE ON outbox_relay_state TO " + role,
				"GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_relay_batch TO " + role,
				"GRANT INSERT ON outbox_dead_letter TO " + role,
				strings.ReplaceAll(tc.revoke, "%s", role),
			} {
				opsExec(ctx, t, e.PG, sql)
			}
			u, err := url.Parse(e.DatabaseURL)
			if err != nil {
				t.Fatal(err)
			}
			u.User = url.User(role)
			p := startRelay(t, e, "DATABASE_URL="+u.String())
			waitLog(t, p, logStreaming, 30*time.Second)
			when := "2024-01-01T00:00:00Z"
			if tc.poison {
				when = "1900-01-01T00:00:00Z" // ClickHouse rejects it: a dead letter
			}
			opsExec(ctx, t, e.PG, `INSERT INTO outbox_event (event_type, environment, event_context, event_date_time)
				VALUES ('np', 'test', '{}', $1)`, when)
			if code := p.Wait(time.Minute); code == 0 || code == -1 {
				t.Fatalf("relay exit code %d, want a failure:\n%s", code, p.Output())
			}
			out := p.Output()
			if !strings.Contains(out, "permission denied") || !strings.Contains(out, tc.want) ||
				!strings.Contains(out, "Least-privilege role") {
				t.Fatalf("relay's last words do not name the missing privilege (%q) and the advice:\n%s", tc.want, out)
			}
			if strings.Contains(out, "retrying") {
				t.Fatalf("relay retried an error only a grant can fix:\n%s", out)
			}
			rows, err := e.OutboxRows(ctx)
			if err != nil || rows != 1 {
				t.Fatalf("outbox rows after the stop = %d (%v), want the undeleted 1", rows, err)
			}
		})
	}
}
