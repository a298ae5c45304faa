package integration

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestSIGTERMDuringBackfillLosesNothing stops the relay while it is still
// delivering the rows of a new slot's snapshot, then restarts it: the rows
// not yet delivered must still arrive, although the slot now exists (and its
// confirmed position is past those rows' commits).
func TestSIGTERMDuringBackfillLosesNothing(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	const total = 20000
	mustExec(ctx, t, e.PG, `INSERT INTO outbox_event (event_type, environment, event_context)
		SELECT $1, $2, jsonb_build_object('n', g) FROM generate_series(1, $3::int) g`,
		spineEventType, spineEnvironment, total)
	// A small byte budget (a few hundred of these events in flight) keeps the
	// relay from having the whole snapshot decoded and queued by the time
	// SIGTERM arrives: what is queued is still flushed on shutdown.
	env := []string{"CH_OUTBOX_BATCH_SIZE=200", "RELAY_BATCH_BYTES=65536", "RELAY_SHUTDOWN_TIMEOUT=10s"}

	first := startRelay(t, e, env...)
	waitLog(t, first, logFlushed, 30*time.Second)
	if err := first.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := first.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0:\n%s", code, first.Output())
	}
	before, err := e.ClickHouseCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.Distinct >= total {
		t.Fatalf("all %d rows were delivered before SIGTERM: the test did not stop the relay mid-backfill", total)
	}
	t.Logf("%d of %d snapshot rows delivered before SIGTERM", before.Distinct, total)

	second := startRelay(t, e, env...)
	testenv.Eventually(t, 45*time.Second, fmt.Sprintf("all %d snapshot rows in ClickHouse after the restart", total), func() error {
		if second.Exited() {
			t.Fatalf("relay exited:\n%s", second.Output())
		}
		c, err := e.ClickHouseCounts(ctx)
		if err == nil && c.Final != total {
			n, _ := e.OutboxRows(ctx)
			err = fmt.Errorf("event_log FINAL has %d of %d; outbox_event still holds %d rows", c.Final, total, n)
		}
		return err
	})
	testenv.Eventually(t, 10*time.Second, "outbox_event emptied", func() error {
		n, err := e.OutboxRows(ctx)
		if err == nil && n != 0 {
			err = fmt.Errorf("%d delivered rows still in outbox_event", n)
		}
		return err
	})
	if err := second.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := second.Wait(30 * time.Second); code != 0 {
		t.Fatalf("second relay: exit code %d after SIGTERM", code)
	}
}
