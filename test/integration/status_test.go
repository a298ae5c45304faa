package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/status"
	"github.com/outbox-relay/relay/internal/testenv"
)

// Exit codes of relay status (internal/cli).
const (
	statusExitOK       = 0
	statusExitError    = 1
	statusExitWarning  = 3
	statusExitCritical = 4
)

// relayStatus runs `relay status --json` with env and decodes its report.
func relayStatus(t *testing.T, env []string) (int, *status.Report, string) {
	t.Helper()
	code, out := runRelayCmd(t, 30*time.Second, env, "status", "--json")
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "{") {
			var r status.Report
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("relay status printed invalid JSON %q: %v", line, err)
			}
			return code, &r, out
		}
	}
	return code, nil, out
}

// waitStatus polls relay status until it exits with want and check accepts
// the report; it returns that report.
func waitStatus(t *testing.T, env []string, want int, timeout time.Duration, check func(*status.Report) error) *status.Report {
	t.Helper()
	var last *status.Report
	testenv.Eventually(t, timeout, fmt.Sprintf("relay status exit %d", want), func() error {
		code, r, out := relayStatus(t, env)
		if r == nil {
			return fmt.Errorf("exit %d without a report: %s", code, out)
		}
		last = r
		if code != want {
			return fmt.Errorf("exit %d, verdict %s, reasons %q", code, r.Verdict, r.Reasons)
		}
		if check != nil {
			return check(r)
		}
		return nil
	})
	return last
}

// A running relay with events flowing is OK; stopped, it is WARNING (slot
// inactive) and, once the undelivered events are older than the backlog
// warning limit, CRITICAL.
func TestStatusFollowsTheRelay(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := startRelay(t, e)
	waitLog(t, p, opsLogStreaming, 30*time.Second)
	for i := range 20 {
		if err := opsInsert(ctx, e.PG, fmt.Sprintf("status-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	e.WaitDelivered(t, 20, 30*time.Second, p)

	// Lag is measured against the whole server's WAL, which parallel tests
	// write too: judge only by the backlog here.
	env := e.RelayEnv("RELAY_STATUS_BACKLOG_WARN_SECONDS=1", "RELAY_STATUS_BACKLOG_CRIT_SECONDS=3",
		"RELAY_STATUS_LAG_WARN_BYTES=0", "RELAY_STATUS_LAG_CRIT_BYTES=0")
	r := waitStatus(t, env, statusExitOK, 30*time.Second, func(r *status.Report) error {
		if r.ClickHouseRows == nil || *r.ClickHouseRows < 20 {
			return fmt.Errorf("clickhouse_rows = %v, want >= 20", r.ClickHouseRows)
		}
		return nil
	})
	if r.Verdict != status.OK || len(r.Reasons) != 0 || !r.SlotExists || !r.Active || r.ActivePID == nil ||
		r.Slot != e.Slot || r.Plugin != "pgoutput" || r.WALStatus != "reserved" || r.LagBytes == nil ||
		r.RetainedWALBytes == nil || r.ConfirmedFlushLSN == nil || r.BacklogRows != 0 || !r.ClickHouseReachable ||
		r.ClickHouseVersion == "" || r.ClickHouseNewestEvent == nil || !r.PublicationExists || !r.PublicationHasTable {
		t.Errorf("report of a healthy relay: %+v", r)
	}
	if age := time.Since(*r.ClickHouseNewestEvent); age < 0 || age > 5*time.Minute {
		t.Errorf("newest event in ClickHouse is %s old, want about now (event_date_time_us handled?)", age)
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(time.Minute); code != 0 {
		t.Fatalf("relay exit code %d after SIGTERM:\n%s", code, p.Output())
	}
	r = waitStatus(t, env, statusExitWarning, 30*time.Second, nil)
	if r.Active || !hasReason(r, "WARNING: slot is inactive") {
		t.Errorf("stopped relay, empty backlog: active=%v reasons %q", r.Active, r.Reasons)
	}

	for i := range 5 {
		if err := opsInsert(ctx, e.PG, fmt.Sprintf("waiting-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	r = waitStatus(t, env, statusExitCritical, 30*time.Second, nil)
	if r.BacklogRows != 5 || r.OldestBacklogAgeSeconds == nil || *r.OldestBacklogAgeSeconds < 1 ||
		!hasReason(r, "CRITICAL: slot is inactive") {
		t.Errorf("stopped relay, old backlog: rows=%d age=%v reasons %q", r.BacklogRows, r.OldestBacklogAgeSeconds, r.Reasons)
	}
}

func hasReason(r *status.Report, prefix string) bool {
	for _, s := range r.Reasons {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// Without a slot (the relay never ran) status is CRITICAL; an unreachable
// ClickHouse is CRITICAL too; an unreachable PostgreSQL is an error.
func TestStatusMissingSlotAndUnreachableServers(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)

	code, r, out := relayStatus(t, e.RelayEnv())
	if code != statusExitCritical || r == nil {
		t.Fatalf("no slot: exit %d, want %d:\n%s", code, statusExitCritical, out)
	}
	if r.SlotExists || r.WALStatus != status.WALStatusMissing || r.LagBytes != nil || !hasReason(r, "CRITICAL: replication slot") {
		t.Errorf("no slot: %+v", r)
	}

	// The table for people says the same.
	code, out = runRelayCmd(t, 30*time.Second, e.RelayEnv(), "status")
	if code != statusExitCritical || !strings.Contains(out, "VERDICT") || !strings.Contains(out, "does not exist") {
		t.Errorf("table output: exit %d:\n%s", code, out)
	}

	chDown := testenv.ReplaceHost(t, e.ClickHouse, testenv.FreeAddr(t))
	code, r, out = relayStatus(t, e.RelayEnv("CLICKHOUSE_URL="+chDown))
	if code != statusExitCritical || r == nil || r.ClickHouseReachable || !hasReason(r, "CRITICAL: ClickHouse is unreachable") {
		t.Errorf("ClickHouse down: exit %d:\n%s", code, out)
	}

	pgDown := testenv.ReplaceHost(t, e.DatabaseURL, testenv.FreeAddr(t))
	code, out = runRelayCmd(t, 30*time.Second, e.RelayEnv("DATABASE_URL="+pgDown), "status", "--json")
	if code != statusExitError || !strings.Contains(out, "PostgreSQL") {
		t.Errorf("PostgreSQL down: exit %d, want %d:\n%s", code, statusExitError, out)
	}

	code, out = runRelayCmd(t, 30*time.Second, e.RelayEnv("RELAY_STATUS_LAG_WARN_BYTES=lots"), "status")
	if code != 2 || !strings.Contains(out, "RELAY_STATUS_LAG_WARN_BYTES") {
		t.Errorf("bad threshold: exit %d, want 2:\n%s", code, out)
	}
}

// --watch refreshes until interrupted, then exits 0.
func TestStatusWatchUntilInterrupted(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	p := testenv.Start(t, relayBin, e.RelayEnv(), "status", "--json", "--watch=200ms")
	testenv.Eventually(t, 30*time.Second, "three refreshes", func() error {
		if p.Exited() {
			t.Fatalf("relay status --watch exited:\n%s", p.Output())
		}
		n := 0
		sc := bufio.NewScanner(strings.NewReader(p.Output()))
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), `{"schema_version":1`) {
				n++
			}
		}
		if n < 3 {
			return fmt.Errorf("%d reports so far", n)
		}
		return nil
	})
	if err := p.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d after Ctrl-C, want 0:\n%s", code, p.Output())
	}
}

// Helpers of the status and admin tests (ops-prefixed: the package's other
// tests keep their own).

// opsLogStreaming is the relay's log line once the stream is up.
const opsLogStreaming = `"message":"streaming"`

// opsExecer runs a statement (the pool).
type opsExecer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// opsInsert inserts one outbox event whose event_context is {"tag": tag}.
func opsInsert(ctx context.Context, db opsExecer, tag string) error {
	_, err := db.Exec(ctx, `INSERT INTO outbox_event (event_type, environment, event_context)
		VALUES ('ops', 'test', jsonb_build_object('tag', $1::text))`, tag)
	return err
}

// opsExec runs sql or fails the test.
func opsExec(ctx context.Context, t *testing.T, db opsExecer, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
