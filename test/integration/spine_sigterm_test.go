package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// startSpineProducer commits small transactions (1-3 events) back to back
// until stopped.
func startSpineProducer(e *testenv.Env) *producer {
	return startProducer(e, 0, func(i int) (string, []any, int) {
		n := 1 + i%3
		return `INSERT INTO outbox_event (event_type, environment, event_context)
			SELECT $1, $2, jsonb_build_object('tx', $3::int, 'n', g) FROM generate_series(1, $4::int) g`,
			[]any{spineEventType, spineEnvironment, i, n}, n
	})
}

// TestSIGTERMMidStreamLosesAndRepeatsNothing stops the relay with SIGTERM
// while transactions keep committing, several times, then lets a last relay
// catch up: every committed event arrives exactly once, even counted
// without FINAL, and the outbox ends empty.
func TestSIGTERMMidStreamLosesAndRepeatsNothing(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	const (
		grace  = 10 * time.Second
		rounds = 3
	)
	spineStopMerges(ctx, t, e)
	env := []string{"RELAY_SHUTDOWN_TIMEOUT=" + grace.String()}
	var (
		prod    *producer
		outputs []string
		seen    uint64
	)
	for round := 1; round <= rounds; round++ {
		p := startRelay(t, e, env...)
		waitLog(t, p, logStreaming, 30*time.Second)
		if prod == nil {
			// Mid-stream: the slot and its (empty) backfill exist before the
			// first event commits (TestSIGTERMDuringBackfill covers the rest).
			prod = startSpineProducer(e)
			t.Cleanup(func() { _, _ = prod.stop() })
		}
		testenv.Eventually(t, 30*time.Second, fmt.Sprintf("round %d: more events delivered while the producer writes", round), func() error {
			if p.Exited() {
				t.Fatalf("relay exited:\n%s", p.Output())
			}
			c, err := e.ClickHouseCounts(ctx)
			if err == nil && c.Distinct < seen+200 {
				err = fmt.Errorf("%d events in ClickHouse", c.Distinct)
			}
			if err == nil {
				seen = c.Distinct
			}
			return err
		})
		out := stopMidStream(ctx, t, e, p, prod, grace, round)
		outputs = append(outputs, out)
		// The next round waits for events delivered by its own relay.
		c, err := e.ClickHouseCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen = c.Distinct
	}
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	before, err := e.ClickHouseCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.Distinct >= uint64(committed) {
		t.Fatalf("ClickHouse already holds %d of %d events: the test did not stop the relay mid-stream", before.Distinct, committed)
	}
	t.Logf("committed %d events; %d delivered before the last start", committed, before.Distinct)

	last := startRelay(t, e, env...)
	var c testenv.Counts
	testenv.Eventually(t, 45*time.Second, fmt.Sprintf("all %d committed events in ClickHouse", committed), func() error {
		if last.Exited() {
			t.Fatalf("relay exited:\n%s", last.Output())
		}
		var err error
		if c, err = e.ClickHouseCounts(ctx); err == nil && c.Distinct < uint64(committed) {
			err = fmt.Errorf("%d distinct events", c.Distinct)
		}
		return err
	})
	if c.Rows != uint64(committed) || c.Distinct != uint64(committed) || c.Final != uint64(committed) {
		t.Errorf("count()=%d uniqExact(event_id)=%d FINAL=%d, want all %d: an event was written twice",
			c.Rows, c.Distinct, c.Final, committed)
		if strings.Contains(strings.Join(outputs, ""), logStoppedBeforeSink) {
			t.Errorf("a stopped relay logged %s: SIGTERM cancelled a ClickHouse INSERT in flight "+
				"(ClickHouse had stored it), so its batch was not acknowledged and is streamed again", logStoppedBeforeSink)
		}
	}
	testenv.Eventually(t, 10*time.Second, "outbox_event emptied after every event reached ClickHouse", func() error {
		n, err := e.OutboxRows(ctx)
		if err == nil && n != 0 {
			err = fmt.Errorf("%d delivered rows still in outbox_event", n)
		}
		return err
	})
	if err := last.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := last.Wait(grace + 10*time.Second); code != 0 {
		t.Fatalf("last relay: exit code %d after SIGTERM", code)
	}
	if err := spineNoDuplicateRows(ctx, e); err != nil {
		t.Error(err)
	}
}

// stopMidStream sends SIGTERM to p while prod writes and checks the clean
// stop: exit 0, the shutdown lines, no rows left behind, the final position
// confirmed. It returns p's output.
func stopMidStream(ctx context.Context, t *testing.T, e *testenv.Env, p *testenv.Process, prod *producer, grace time.Duration, round int) string {
	t.Helper()
	atSignal := prod.txs.Load()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code := p.Wait(grace + 10*time.Second)
	t.Logf("round %d: relay exited with %d %s after SIGTERM", round, code, time.Since(start).Round(time.Millisecond))
	out := p.Output()
	if code != 0 {
		t.Fatalf("round %d: exit code %d after SIGTERM, want 0:\n%s", round, code, out)
	}
	for _, line := range []string{logFlushed, logReplStopped, logStoppedClean} {
		if !strings.Contains(out, line) {
			t.Errorf("round %d: log of the stopped relay lacks %s", round, line)
		}
	}
	for _, line := range []string{logBackfillDone, logBackfillResumed} {
		if round > 1 && strings.Contains(out, line) {
			t.Errorf("round %d: the relay logged %s: the slot's snapshot was delivered again", round, line)
		}
	}
	if strings.Contains(out, logRowsLeft) {
		t.Errorf("round %d: the relay left delivered rows in outbox_event on shutdown (log %s): nothing deletes them later", round, logRowsLeft)
	}
	// The shutdown happened while transactions kept committing.
	testenv.Eventually(t, 10*time.Second, "producer still committing after the relay stopped", func() error {
		if n := prod.txs.Load(); n < atSignal+20 {
			return fmt.Errorf("%d transactions since SIGTERM", n-atSignal)
		}
		return nil
	})
	spineFinalStatusApplied(ctx, t, e, out)
	return out
}

// spineFinalStatusApplied compares the position the stopped relay says it
// confirmed (log "replication stopped") with the slot's confirmed_flush_lsn.
func spineFinalStatusApplied(ctx context.Context, t *testing.T, e *testenv.Env, out string) {
	t.Helper()
	var said string
	for _, line := range strings.Split(out, "\n") {
		var m struct {
			Message      string `json:"message"`
			ConfirmedLSN string `json:"confirmed_lsn"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Message == "replication stopped" {
			said = m.ConfirmedLSN
		}
	}
	if said == "" {
		t.Errorf("no confirmed_lsn in the relay's \"replication stopped\" line")
		return
	}
	var (
		active bool
		slot   string
		ok     bool
	)
	testenv.Eventually(t, 20*time.Second, "walsender of the stopped relay gone", func() error {
		err := e.PG.QueryRow(ctx, `SELECT active, confirmed_flush_lsn::text, confirmed_flush_lsn >= $2::pg_lsn
			FROM pg_replication_slots WHERE slot_name = $1`, e.Slot, said).Scan(&active, &slot, &ok)
		if err == nil && active {
			err = errors.New("slot still active")
		}
		return err
	})
	if !ok {
		t.Errorf("relay logged confirmed_lsn %s on shutdown, but the slot's confirmed_flush_lsn is %s: "+
			"the final standby status update never reached the walsender, so the last flushed transactions will be streamed (and written) again", said, slot)
	}
}

// spineNoDuplicateRows lists event ids stored more than once (without FINAL).
func spineNoDuplicateRows(ctx context.Context, e *testenv.Env) error {
	rows, err := e.CH.Query(ctx, `SELECT toString(event_id), count() AS n FROM event_log GROUP BY event_id HAVING n > 1 LIMIT 10`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var dups []string
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			return err
		}
		dups = append(dups, fmt.Sprintf("%s x%d", id, n))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(dups) > 0 {
		return errors.New("events stored more than once: " + strings.Join(dups, ", "))
	}
	return nil
}
