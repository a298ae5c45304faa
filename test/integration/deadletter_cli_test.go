package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/deadletter"
	"github.com/outbox-relay/relay/internal/testenv"
)

// Exit codes of relay deadletter (internal/cli).
const (
	dlExitOK      = 0
	dlExitFailure = 1
	dlExitUsage   = 2
)

// TestDeadLetterCommands walks an operator through a poison event: the
// relay sets it aside, status warns, list and show find it, the cause is
// fixed, a replay killed before and after its commit neither loses nor
// duplicates it, the finished replay has the running relay deliver it
// exactly once, and discard removes another one for good. Every step checks
// its exit code.
func TestDeadLetterCommands(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	fpBin, err := testenv.BuildRelay(t.TempDir(), "failpoints")
	if err != nil {
		t.Fatalf("build relay with failpoints: %v", err)
	}
	p := faultStart(t, relayBin, e)
	env := e.RelayEnv()

	// Two poison events (a date event_log cannot store) among good ones.
	poison := dlCommitPoison(ctx, t, e, "poison", 2, 4)
	e.WaitDelivered(t, 4, time.Minute, p)
	dlWaitLetters(t, env, 2)

	code, r, out := relayStatus(t, env)
	if code != statusExitWarning || r == nil || r.DeadLetters == nil || *r.DeadLetters != 2 ||
		!hasReason(r, "WARNING: 2 events ClickHouse rejected") {
		t.Fatalf("status with 2 dead letters: exit %d, want %d with the dead-letter warning:\n%s", code, statusExitWarning, out)
	}

	// list: the table names both; filters by type and age.
	code, out = dlRun(t, env, "deadletter", "list")
	if code != dlExitOK || !strings.Contains(out, poison[0].String()) || !strings.Contains(out, poison[1].String()) ||
		!strings.Contains(out, "poison") {
		t.Fatalf("deadletter list: exit %d:\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--type", "poison"}, 2},
		{[]string{"--type", "other,nope"}, 0},
		{[]string{"--newer-than", "1h"}, 2},
		{[]string{"--older-than", "1h"}, 0},
		{[]string{"--limit", "1"}, 1},
	} {
		ls := dlList(t, env, tc.args...)
		if len(ls) != tc.want {
			t.Errorf("deadletter list --json %v: %d letters, want %d", tc.args, len(ls), tc.want)
		}
	}
	ls := dlList(t, env)
	if len(ls) != 2 || ls[0].Error == "" || ls[0].PayloadBytes == 0 || ls[0].Context != nil {
		t.Fatalf("deadletter list --json: %+v", ls)
	}

	// show: the whole row, payload included; unknown and malformed ids.
	code, out = dlRun(t, env, "deadletter", "show", poison[0].String())
	if code != dlExitOK || !strings.Contains(out, `"tag": "poison"`) || !strings.Contains(out, "1800-01-01") {
		t.Errorf("deadletter show: exit %d:\n%s", code, out)
	}
	if code, out = dlRun(t, env, "deadletter", "show", uuid.NewString()); code != dlExitFailure {
		t.Errorf("deadletter show of an unknown id: exit %d, want %d:\n%s", code, dlExitFailure, out)
	}
	if code, out = dlRun(t, env, "deadletter", "show", "not-a-uuid"); code != dlExitUsage {
		t.Errorf("deadletter show of a malformed id: exit %d, want %d:\n%s", code, dlExitUsage, out)
	}
	for _, args := range [][]string{{"replay"}, {"replay", "--all", "--type", "poison"}, {"discard", "--all"}} {
		if code, out = dlRun(t, env, append([]string{"deadletter"}, args...)...); code != dlExitUsage {
			t.Errorf("deadletter %v: exit %d, want %d:\n%s", args, code, dlExitUsage, out)
		}
	}

	// Fix the cause: the timestamp, in the dead-letter rows.
	faultExec(ctx, t, e, `UPDATE outbox_dead_letter SET event_date_time = '2024-06-01T00:00:00Z'`)

	// Killed before its commit: nothing moved.
	fpEnv := append(e.RelayEnv(), "RELAY_FAILPOINT=deadletter-replay-before-commit")
	if code, out = dlRunBin(t, fpBin, fpEnv, "deadletter", "replay", "--all"); code != -1 {
		t.Fatalf("replay with the before-commit failpoint: exit %d, want death by SIGKILL:\n%s", code, out)
	}
	dlWaitLetters(t, env, 2)
	if n, err := e.OutboxRows(ctx); err != nil || n != 0 {
		t.Fatalf("after a replay killed before commit: outbox_event has %d rows (%v), want 0", n, err)
	}

	// Killed after its commit: everything moved, once.
	fpEnv = append(e.RelayEnv(), "RELAY_FAILPOINT=deadletter-replay-after-commit")
	if code, out = dlRunBin(t, fpBin, fpEnv, "deadletter", "replay", poison[0].String()); code != -1 {
		t.Fatalf("replay with the after-commit failpoint: exit %d, want death by SIGKILL:\n%s", code, out)
	}
	// Run again, the same replay finds nothing to move and says so.
	if code, out = dlRun(t, env, "deadletter", "replay", poison[0].String()); code != dlExitFailure ||
		!strings.Contains(out, "already replayed") {
		t.Fatalf("repeated replay of a replayed id: exit %d, want %d:\n%s", code, dlExitFailure, out)
	}
	code, out = dlRun(t, env, "deadletter", "replay", "--type", "poison")
	if code != dlExitOK || !strings.Contains(out, "replayed "+poison[1].String()) || !strings.Contains(out, "1 dead letters moved") {
		t.Fatalf("deadletter replay --type poison: exit %d:\n%s", code, out)
	}
	if code, out = dlRun(t, env, "deadletter", "replay", "--all"); code != dlExitOK || !strings.Contains(out, "0 dead letters moved") {
		t.Fatalf("deadletter replay --all with nothing left: exit %d:\n%s", code, out)
	}

	// The running relay delivers both exactly once: no second row, not even
	// one that FINAL would hide.
	e.WaitDelivered(t, 6, time.Minute, p)
	dlWaitLetters(t, env, 0)
	dlExpectOnce(ctx, t, e, poison)

	// Discard another poison event: refused without --yes off a terminal,
	// done with it.
	other := dlCommitPoison(ctx, t, e, "poison-again", 1, 1)
	e.WaitDelivered(t, 7, time.Minute, p)
	dlWaitLetters(t, env, 1)
	if code, out = dlRun(t, env, "deadletter", "discard", other[0].String()); code != dlExitUsage || !strings.Contains(out, "--yes") {
		t.Errorf("discard without --yes off a terminal: exit %d, want %d:\n%s", code, dlExitUsage, out)
	}
	dlWaitLetters(t, env, 1)
	if code, out = dlRun(t, env, "deadletter", "discard", "--yes", "--type", "poison-again"); code != dlExitOK ||
		!strings.Contains(out, "1 dead letters discarded") {
		t.Fatalf("deadletter discard --yes: exit %d:\n%s", code, out)
	}
	dlWaitLetters(t, env, 0)
	if code, out = dlRun(t, env, "deadletter", "discard", "--yes", other[0].String()); code != dlExitFailure {
		t.Errorf("discard of a discarded id: exit %d, want %d:\n%s", code, dlExitFailure, out)
	}
	code, r, out = relayStatus(t, env)
	if r == nil || r.DeadLetters == nil || *r.DeadLetters != 0 || slices.ContainsFunc(r.Reasons, func(s string) bool {
		return strings.Contains(s, "outbox_dead_letter")
	}) {
		t.Errorf("status after discard: exit %d:\n%s", code, out)
	}
	var inCH uint64
	if err := e.CH.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM event_log WHERE toString(event_id) = '%s'", other[0])).Scan(&inCH); err != nil || inCH != 0 {
		t.Errorf("the discarded event is in ClickHouse %d times (%v)", inCH, err)
	}
}

// dlCommitPoison commits good events and, among them, bad ones (tagged tag,
// event_type tag) that event_log cannot store; it returns the bad ones' ids.
// good must be at least bad.
func dlCommitPoison(ctx context.Context, t *testing.T, e *testenv.Env, tag string, bad, good int) []uuid.UUID {
	t.Helper()
	tx, err := e.PG.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var ids []uuid.UUID
	for i := range bad + good {
		typ, when := "good", "2024-01-01T00:00:00Z"
		if i%2 == 1 && len(ids) < bad { // good >= bad: every bad one between good ones
			typ, when = tag, faultTooOld
		}
		var id uuid.UUID
		if err := tx.QueryRow(ctx, `INSERT INTO outbox_event (event_type, environment, event_context, event_date_time)
			VALUES ($1, 'test', jsonb_build_object('tag', $1::text, 'i', $2::int), $3::timestamptz) RETURNING id`,
			typ, i, when).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if typ == tag {
			ids = append(ids, id)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if len(ids) != bad {
		t.Fatalf("committed %d poison events, want %d", len(ids), bad)
	}
	return ids
}

func dlRun(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	return dlRunBin(t, relayBin, env, args...)
}

// dlRunBin runs bin with stdin from /dev/null (not a terminal) and returns
// its exit code (-1 when a signal killed it) and output.
func dlRunBin(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdin = nil // /dev/null
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("relay %v did not exit within a minute:\n%s", args, out)
	}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("relay %v: %v", args, err)
	}
	return 0, string(out)
}

func dlList(t *testing.T, env []string, args ...string) []deadletter.Letter {
	t.Helper()
	code, out := dlRun(t, env, append([]string{"deadletter", "list", "--json"}, args...)...)
	var list struct {
		DeadLetters []deadletter.Letter `json:"dead_letters"`
		Total       int64               `json:"total"`
		Truncated   bool                `json:"truncated"`
	}
	if code != dlExitOK {
		t.Fatalf("deadletter list --json %v: exit %d:\n%s", args, code, out)
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("deadletter list --json %v printed %q: %v", args, out, err)
	}
	if list.Truncated != (list.Total > int64(len(list.DeadLetters))) {
		t.Errorf("deadletter list --json %v: total %d, %d shown, truncated %t", args, list.Total, len(list.DeadLetters), list.Truncated)
	}
	return list.DeadLetters
}

// dlWaitLetters waits until deadletter list --json shows n letters.
func dlWaitLetters(t *testing.T, env []string, n int) {
	t.Helper()
	testenv.Eventually(t, time.Minute, fmt.Sprintf("%d dead letters", n), func() error {
		if got := len(dlList(t, env)); got != n {
			return fmt.Errorf("%d dead letters", got)
		}
		return nil
	})
}

// dlExpectOnce checks that each id has exactly one row in event_log.
func dlExpectOnce(ctx context.Context, t *testing.T, e *testenv.Env, ids []uuid.UUID) {
	t.Helper()
	for _, id := range ids {
		var rows uint64
		q := fmt.Sprintf("SELECT count() FROM event_log WHERE toString(event_id) = '%s'", id)
		if err := e.CH.QueryRow(ctx, q).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != 1 {
			t.Errorf("event %s is in event_log %d times, want exactly once", id, rows)
		}
	}
}
