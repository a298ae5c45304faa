package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
)

// A list cut by --limit says that more match: in JSON by total and
// truncated, on a terminal by a line on stderr (stdout stays the table).
func TestDeadLetterListSaysMoreMatch(t *testing.T) {
	t.Parallel()
	e := testenv.NewPostgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, `INSERT INTO outbox_dead_letter
		(id, event_type, event_date_time, environment, event_context, metadata_version, error)
		SELECT gen_random_uuid(), 'x', now(), 'test', '{}', 1, 'rejected' FROM generate_series(1, 3)`); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := Main(ctx, append([]string{"deadletter", "list"}, args...), []string{"DATABASE_URL=" + e.DatabaseURL}, &stdout, &stderr); code != 0 {
			t.Fatalf("deadletter list %v: exit %d\n%s", args, code, stderr.String())
		}
		return stdout.String(), stderr.String()
	}

	out, _ := run("--json", "--type", "x", "--limit", "2")
	var got struct {
		Total       int64             `json:"total"`
		Truncated   bool              `json:"truncated"`
		DeadLetters []json.RawMessage `json:"dead_letters"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("list --json printed %q: %v", out, err)
	}
	if got.Total != 3 || !got.Truncated || len(got.DeadLetters) != 2 {
		t.Errorf("list --json --limit 2 of 3: total %d, truncated %t, %d letters; want 3, true, 2", got.Total, got.Truncated, len(got.DeadLetters))
	}
	out, _ = run("--json")
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Total != 3 || got.Truncated || len(got.DeadLetters) != 3 {
		t.Errorf("list --json of 3: %q (%v), want all 3 and truncated false", out, err)
	}

	out, hint := run("--limit", "2")
	if !strings.Contains(hint, "1 more match") || strings.Contains(out, "more") {
		t.Errorf("list --limit 2 of 3: stdout\n%s\nstderr\n%s\nwant the hint on stderr only", out, hint)
	}
}

// A negative age matches everything in SQL: refused, as replay and discard
// refuse it.
func TestDeadLetterListRefusesNegativeAge(t *testing.T) {
	for _, flag := range []string{"--newer-than", "--older-than"} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), []string{"deadletter", "list", flag, "-5h"},
			[]string{"DATABASE_URL=postgres://u@127.0.0.1:1/db"}, &stdout, &stderr)
		if code != ExitUsage || !strings.Contains(stderr.String(), "must be positive") {
			t.Errorf("list %s -5h: exit %d, stderr %q; want %d and \"must be positive\"", flag, code, stderr.String(), ExitUsage)
		}
	}
}
