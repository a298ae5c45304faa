package integration

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestSIGTERMWaitsForInFlightBatch sends SIGTERM while a batch INSERT has
// reached ClickHouse but its answer is still on the way (a proxy holds the
// responses for a second, far less than the shutdown grace period). A clean
// stop waits for the answer, acknowledges the batch and deletes its rows:
// nothing is streamed (and written) again by the next start.
func TestSIGTERMWaitsForInFlightBatch(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	const (
		events = 2000
		grace  = 10 * time.Second
		held   = time.Second
	)
	spineStopMerges(ctx, t, e)
	chURL, err := url.Parse(e.ClickHouse)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewFaultProxy(t, chURL.Host)
	chURL.Host = proxy.Addr()
	// One batch holding the whole transaction, commit included: flushed by
	// age, not by count, so its acknowledgement travels with it.
	p := startRelay(t, e, "CLICKHOUSE_URL="+chURL.String(), "RELAY_SHUTDOWN_TIMEOUT="+grace.String(),
		fmt.Sprintf("CH_OUTBOX_BATCH_SIZE=%d", 5*events), "CH_OUTBOX_PROCESSING_FREQUENCY_SEC=1")
	waitLog(t, p, logStreaming, 30*time.Second)
	waitLog(t, p, logFlushed, 30*time.Second) // the new slot's (empty) snapshot is delivered

	// The batch's data (~100 bytes an event) passes; the answer is held.
	proxy.HoldResponsesAfter(16 << 10)
	spineInsertTxs(ctx, t, e, 1, events, "in-flight")
	testenv.Eventually(t, 30*time.Second, "the batch stored in ClickHouse, its answer held", func() error {
		if p.Exited() {
			t.Fatalf("relay exited:\n%s", p.Output())
		}
		c, err := e.ClickHouseCounts(ctx)
		if err == nil && (c.Rows != events || !proxy.ResponsesHeld()) {
			err = fmt.Errorf("%d rows in ClickHouse, responses held: %t", c.Rows, proxy.ResponsesHeld())
		}
		return err
	})

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	release := time.AfterFunc(held, proxy.Resume)
	defer release.Stop()
	code := p.Wait(grace + 10*time.Second)
	out := p.Output()
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0:\n%s", code, out)
	}
	if strings.Contains(out, logStoppedBeforeSink) {
		t.Errorf("SIGTERM cancelled the INSERT in flight instead of waiting (grace %s) for ClickHouse's answer, "+
			"which came %s later: log %s", grace, held, logStoppedBeforeSink)
	}
	if n, err := e.OutboxRows(ctx); err != nil {
		t.Fatal(err)
	} else if n != 0 {
		t.Errorf("%d rows of the stored batch still in outbox_event after a clean stop", n)
	}
	spineFinalStatusApplied(ctx, t, e, out)

	// The next start must not write the batch again.
	again := startRelay(t, e)
	e.WaitDelivered(t, events, 30*time.Second, again)
	marker := "after-restart"
	spineInsert(ctx, t, e.PG, marker)
	testenv.Eventually(t, 30*time.Second, "marker after the restart delivered", func() error {
		tags, err := spineTags(ctx, e, true)
		if err == nil && tags[marker] != 1 {
			err = fmt.Errorf("marker not delivered yet")
		}
		return err
	})
	c, err := e.ClickHouseCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Rows != events+1 {
		t.Errorf("count()=%d uniqExact(event_id)=%d, want %d: the batch in flight at SIGTERM was written twice", c.Rows, c.Distinct, events+1)
	}
}
