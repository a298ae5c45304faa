package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/procfs"
	"github.com/outbox-relay/relay/internal/testenv"
)

// TestFaultHugeTransactionAndEvents sends one transaction of 100,000 events
// and 20 events of 5 MiB each through a relay with RELAY_BATCH_BYTES=8 MiB:
// everything arrives exactly once, the big events intact, and the relay's
// peak RSS stays within the byte budget (2 x 8 MiB held) plus a margin.
func TestFaultHugeTransactionAndEvents(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	const (
		batchBytes = 8 << 20
		bigTx      = 100_000
		huge       = 20
		hugeBytes  = 5 << 20
	)
	p := faultStart(t, relayBin, e, fmt.Sprintf("RELAY_BATCH_BYTES=%d", batchBytes))
	waitLog(t, p, faultLogStreaming, 30*time.Second)

	start := time.Now()
	faultInsert(ctx, t, e, "big-tx", bigTx)
	for i := range huge / 5 {
		faultExec(ctx, t, e, `INSERT INTO outbox_event (event_type, environment, event_context)
			SELECT 'fault', 'test', jsonb_build_object('tag', 'huge', 'tx', $1::int, 'n', g, 'pad', repeat('x', $2::int))
			FROM generate_series(1, 5) g`, i, hugeBytes)
	}
	t.Logf("committed in %s", time.Since(start).Round(time.Millisecond))
	c := faultExpectExactlyOnce(t, e, bigTx+huge, 3*time.Minute, p)
	t.Logf("delivered %d events (rows %d) %s after the first commit", c.Final, c.Rows, time.Since(start).Round(time.Millisecond))

	var n, shortest uint64
	err := e.CH.QueryRow(ctx, `SELECT count(), min(length(event_context)) FROM event_log FINAL
		WHERE position(event_context, '"tag": "huge"') > 0`).Scan(&n, &shortest)
	if err != nil {
		t.Fatal(err)
	}
	if n != huge || shortest < hugeBytes {
		t.Errorf("ClickHouse holds %d huge events, the shortest %d bytes; want %d of at least %d", n, shortest, huge, hugeBytes)
	}
	peak, err := procfs.PeakRSS(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	const limit = 2*2*batchBytes + 150<<20
	t.Logf("relay peak RSS (VmHWM) %s with RELAY_BATCH_BYTES=%s (limit %s)", faultMiB(peak), faultMiB(batchBytes), faultMiB(limit))
	if peak > limit {
		t.Errorf("relay peak RSS %s exceeds %s", faultMiB(peak), faultMiB(limit))
	}
}
