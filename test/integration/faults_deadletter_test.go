package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// Timestamps no event_log can store: before 1900 (DateTime64) and 1970
// (DateTime), after 2262 (DateTime64, as the relay checks it) and 2106
// (DateTime).
const (
	faultTooOld = "1800-01-01T00:00:00Z"
	faultTooNew = "2300-01-01T00:00:00Z"
)

// faultDeadLetterCase is one transaction, with the positions of the events
// ClickHouse cannot store.
type faultDeadLetterCase struct {
	name   string
	events int
	bad    map[int]string // position -> event_date_time
}

// TestFaultDeadLetter commits transactions containing events ClickHouse
// cannot store (event_date_time out of range) under a streaming relay:
// each such event is moved to outbox_dead_letter with the error, the rest
// of its batch is delivered, outbox_relay_dead_letter_events_total counts
// it, and the relay keeps streaming.
func TestFaultDeadLetter(t *testing.T) {
	t.Parallel()
	cases := []faultDeadLetterCase{
		{name: "two poison events among good ones", events: 12, bad: map[int]string{3: faultTooOld, 9: faultTooNew}},
		{name: "two adjacent poison events after two good ones", events: 4, bad: map[int]string{2: faultTooOld, 3: faultTooNew}},
		{name: "a transaction of two poison events only", events: 2, bad: map[int]string{0: faultTooOld, 1: faultTooNew}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			faultDeadLetterRun(t, tc)
		})
	}
}

func faultDeadLetterRun(t *testing.T, tc faultDeadLetterCase) {
	e := testenv.New(t)
	ctx := context.Background()
	admin := testenv.FreeAddr(t)
	p := faultStart(t, relayBin, e, "RELAY_ADMIN_ADDR="+admin)
	faultInsert(ctx, t, e, "before", 10)
	e.WaitDelivered(t, 10, time.Minute, p)

	tx, err := e.PG.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for i := range tc.events {
		when, ok := tc.bad[i]
		tag := "poison"
		if !ok {
			when, tag = "2024-01-01T00:00:00Z", "good"
		}
		if _, err := tx.Exec(ctx, `INSERT INTO outbox_event (event_type, environment, event_context, event_date_time)
			VALUES ('fault', 'test', jsonb_build_object('tag', $1::text, 'i', $2::int), $3::timestamptz)`, tag, i, when); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// The transaction's batch alone first, then more events.
	testenv.Eventually(t, time.Minute, "the poison events dead-lettered", func() error {
		faultAlive(t, p, "after events ClickHouse cannot store")
		var n int
		if err := e.PG.QueryRow(ctx, "SELECT count(*) FROM outbox_dead_letter").Scan(&n); err != nil {
			return err
		}
		if rows, err := e.OutboxRows(ctx); err != nil || n != len(tc.bad) || rows != 0 {
			return fmt.Errorf("%d dead letters, %d rows in outbox_event (%w)", n, rows, err)
		}
		return nil
	})
	faultInsert(ctx, t, e, "after", 10)
	good := 10 + tc.events - len(tc.bad) + 10
	faultExpectExactlyOnce(t, e, int64(good), time.Minute, p)

	rows, err := e.PG.Query(ctx, `SELECT (event_context->>'i')::int, event_date_time, error, failed_at IS NOT NULL
		FROM outbox_dead_letter ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			i       int
			at      time.Time
			reason  string
			stamped bool
		)
		if err := rows.Scan(&i, &at, &reason, &stamped); err != nil {
			t.Fatal(err)
		}
		n++
		want, ok := tc.bad[i]
		if !ok || at.UTC().Format(time.RFC3339) != want || !stamped || !strings.Contains(reason, "event_date_time") {
			t.Errorf("dead letter i=%d event_date_time=%s failed_at set=%v error=%q; want one of %v with an error naming event_date_time",
				i, at.UTC().Format(time.RFC3339), stamped, reason, tc.bad)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(tc.bad) {
		t.Errorf("outbox_dead_letter holds %d events, want %d", n, len(tc.bad))
	}
	if got := faultMetric(t, admin, "outbox_relay_dead_letter_events_total"); got != float64(len(tc.bad)) {
		t.Errorf("outbox_relay_dead_letter_events_total = %v, want %d", got, len(tc.bad))
	}
	faultAlive(t, p, "after dead-lettering")
}

// TestFaultSinkSchemaProblemHalts drops event_log in ClickHouse under a
// streaming relay and commits events: a schema problem is no bad event, so
// the relay must stop with a clear error and exit code 1, dead-letter
// nothing, delete nothing and confirm nothing past the events.
func TestFaultSinkSchemaProblemHalts(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := faultStart(t, relayBin, e)
	faultInsert(ctx, t, e, "before", 10)
	e.WaitDelivered(t, 10, time.Minute, p)
	if err := e.CH.Exec(ctx, "DROP TABLE event_log"); err != nil {
		t.Fatal(err)
	}
	faultInsert(ctx, t, e, "after-drop", 10)
	after := faultCurrentLSN(ctx, t, e)
	code := faultExitCode(t, p, time.Minute)
	out := p.Output()
	if code != 1 {
		t.Errorf("exit code %d after event_log was dropped, want 1", code)
	}
	if !strings.Contains(out, "event_log") {
		t.Errorf("the relay's error does not name event_log:\n%s", out)
	}
	t.Logf("exit code %d; error: %s", code, faultErrorLine(out))
	var dead int
	if err := e.PG.QueryRow(ctx, "SELECT count(*) FROM outbox_dead_letter").Scan(&dead); err != nil || dead != 0 {
		t.Errorf("outbox_dead_letter holds %d events (%v), want none: a schema problem is not a bad event", dead, err)
	}
	if n, err := e.OutboxRows(ctx); err != nil || n != 10 {
		t.Errorf("outbox_event holds %d rows (%v), want the 10 undelivered", n, err)
	}
	if s, err := readFaultSlot(ctx, e); err != nil || s.Confirmed >= after {
		t.Errorf("confirmed_flush_lsn %d (%v) is past the undelivered events (committed before %d)", s.Confirmed, err, after)
	}
}

// faultMetric reads an unlabelled sample from the admin server's /metrics.
func faultMetric(t *testing.T, addr, name string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in /metrics", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(fmt.Errorf("%s: %w", name, err))
	}
	return v
}
