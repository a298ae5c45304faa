package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/testenv"
)

// Log lines (LOG_FORMAT=json) the spine tests wait for or look for.
const (
	logStreaming         = `"message":"streaming"`
	logFlushed           = `"message":"flushed"`
	logStoppedClean      = `"message":"relay stopped cleanly"`
	logReplStopped       = `"message":"replication stopped"`
	logBackfillResumed   = `"message":"backfill resumed"`
	logBackfillDone      = `"message":"backfill done"`
	logRowsLeft          = `"message":"delivered rows left in the outbox table"`
	logStoppedBeforeSink = `"message":"stopped before buffered events reached the sink; they will be streamed again"`
	logReconnecting      = `"message":"stream interrupted; reconnecting"`
	logSinkRetrying      = `"message":"sink write failed; retrying"`
	spineEventType       = "spine"
	spineEnvironment     = "test"
)

// startRelay runs `relay run` on e with RelayEnv(extra...).
func startRelay(t *testing.T, e *testenv.Env, extra ...string) *testenv.Process {
	t.Helper()
	return testenv.Start(t, relayBin, e.RelayEnv(extra...), "run")
}

// waitLog waits until p printed a line containing s; it fails at once when
// p exits.
func waitLog(t *testing.T, p *testenv.Process, s string, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, "relay log "+s, func() error {
		if strings.Contains(p.Output(), s) {
			return nil
		}
		if p.Exited() {
			t.Fatalf("relay exited before logging %s:\n%s", s, p.Output())
		}
		return fmt.Errorf("not logged yet")
	})
}

// spineExecer runs a statement: the pool or a transaction.
type spineExecer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// insertTagged inserts one spine event whose event_context is {"tag": tag}.
func insertTagged(ctx context.Context, db spineExecer, tag string) error {
	_, err := db.Exec(ctx, `INSERT INTO outbox_event (event_type, environment, event_context)
		VALUES ($1, $2, jsonb_build_object('tag', $3::text))`, spineEventType, spineEnvironment, tag)
	return err
}

// spineTags reads the "tag" of every event in event_log, FINAL (the
// documented read path) or not, as tag -> number of rows.
func spineTags(ctx context.Context, e *testenv.Env, final bool) (map[string]int, error) {
	q := "SELECT event_context FROM event_log"
	if final {
		q += " FINAL"
	}
	rows, err := e.CH.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		var v struct {
			Tag string `json:"tag"`
		}
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return nil, fmt.Errorf("event_context %q: %w", raw, err)
		}
		out[v.Tag]++
	}
	return out, rows.Err()
}

// spineDateTime64 reports whether event_log.event_date_time is
// DateTime64 (ClickHouse >= 20.1) rather than DateTime + event_date_time_us.
func spineDateTime64(ctx context.Context, e *testenv.Env) (bool, error) {
	var typ string
	err := e.CH.QueryRow(ctx, `SELECT type FROM system.columns
		WHERE database = currentDatabase() AND table = 'event_log' AND name = 'event_date_time'`).Scan(&typ)
	if err != nil {
		return false, fmt.Errorf("read type of event_date_time: %w", err)
	}
	return strings.HasPrefix(typ, "DateTime64"), nil
}

// runRelayCmd runs the relay binary to completion with exactly env and
// returns its exit code and combined output.
func runRelayCmd(t *testing.T, timeout time.Duration, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, relayBin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("relay %v did not exit within %s:\n%s", args, timeout, out)
	}
	if err == nil {
		return 0, string(out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("relay %v: %v", args, err)
	}
	return ee.ExitCode(), string(out)
}

// mib formats a byte count for messages.
func spineMiB(n int64) string { return strconv.FormatFloat(float64(n)/(1<<20), 'f', 2, 64) + " MiB" }

// spineStopMerges stops background merges of the test's event_log, so that
// count() without FINAL still shows a row written twice when the test reads
// it (a merge would collapse the copies).
func spineStopMerges(ctx context.Context, t *testing.T, e *testenv.Env) {
	t.Helper()
	if err := e.CH.Exec(ctx, "SYSTEM STOP MERGES event_log"); err != nil {
		t.Fatalf("stop merges of event_log: %v", err)
	}
}
