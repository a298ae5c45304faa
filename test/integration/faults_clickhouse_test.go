package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/procfs"
	"github.com/outbox-relay/relay/internal/testenv"
)

// TestFaultClickHouseDownUnderLoad cuts ClickHouse off (proxy down) for
// 20 s while about 50 MB of events commit. The relay must keep its
// replication connection (same walsender), confirm nothing to PostgreSQL
// while ClickHouse is away, keep its memory within the byte budget
// (RELAY_BATCH_BYTES=1 MiB: at most 2 MiB of events held), and deliver
// everything exactly once after ClickHouse is back.
func TestFaultClickHouseDownUnderLoad(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	const (
		batchBytes = 1 << 20
		outage     = 20 * time.Second
		txs, perTx = 50, 100
		padChars   = 10 << 10 // ~10 KiB of event_context per event: ~50 MB in all
	)
	proxy := testenv.NewFaultProxy(t, testenv.Host(t, e.ClickHouse))
	p := faultStart(t, relayBin, e, "CLICKHOUSE_URL="+testenv.ReplaceHost(t, e.ClickHouse, proxy.Addr()),
		fmt.Sprintf("RELAY_BATCH_BYTES=%d", batchBytes))
	faultInsert(ctx, t, e, "warm-up", 10)
	e.WaitDelivered(t, 10, time.Minute, p)
	walsender := faultWaitActive(t, e, 10*time.Second, p)

	proxy.Down()
	downAt := time.Now()
	// One event in flight first: from then on nothing may be confirmed,
	// not even an idle keepalive position.
	faultInsert(ctx, t, e, "first-in-outage", 1)
	waitLog(t, p, faultLogSinkRetrying, 30*time.Second)
	before, err := readFaultSlot(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		faultAlive(t, p, "while ClickHouse was down")
		s, err := readFaultSlot(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		if s.ActivePID != walsender {
			t.Fatalf("the slot's walsender changed from %d to %d while ClickHouse was down: the relay lost its replication connection",
				walsender, s.ActivePID)
		}
		if s.Confirmed != before.Confirmed {
			t.Fatalf("confirmed_flush_lsn moved from %d to %d while ClickHouse was down: the relay acknowledged events ClickHouse does not hold",
				before.Confirmed, s.Confirmed)
		}
	}
	startLSN := faultCurrentLSN(ctx, t, e)
	for i := range txs {
		faultExec(ctx, t, e, `INSERT INTO outbox_event (event_type, environment, event_context)
			SELECT 'fault', 'test', jsonb_build_object('tag', 'outage', 'tx', $1::int, 'n', g, 'pad', repeat(md5(g::text), $3::int / 32))
			FROM generate_series(1, $2::int) g`, i, perTx, padChars)
		check()
	}
	t.Logf("committed %d events (%s of WAL) in %s of the outage", txs*perTx,
		faultMiB(faultCurrentLSN(ctx, t, e)-startLSN), time.Since(downAt).Round(time.Millisecond))
	faultHold(t, outage-time.Since(downAt), 250*time.Millisecond, check)
	if c, err := e.ClickHouseCounts(ctx); err != nil || c.Distinct != 10 {
		t.Fatalf("ClickHouse holds %d distinct events (%v) through the downed proxy, want the 10 of the warm-up", c.Distinct, err)
	}
	peakOutage, err := procfs.PeakRSS(p.Pid())
	if err != nil {
		t.Fatal(err)
	}

	proxy.Up()
	upAt := time.Now()
	want := int64(10 + 1 + txs*perTx)
	faultExpectExactlyOnce(t, e, want, 2*time.Minute, p)
	t.Logf("outage %s; all %d events delivered %s after ClickHouse came back",
		upAt.Sub(downAt).Round(time.Millisecond), want, time.Since(upAt).Round(time.Millisecond))
	peak, err := procfs.PeakRSS(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	const limit = 2*2*batchBytes + 100<<20
	t.Logf("relay peak RSS (VmHWM): %s at the end of the outage, %s after catching up (limit %s)",
		faultMiB(peakOutage), faultMiB(peak), faultMiB(limit))
	if peak > limit {
		t.Errorf("relay peak RSS %s exceeds %s with RELAY_BATCH_BYTES=%d", faultMiB(peak), faultMiB(limit), batchBytes)
	}
	if s, err := readFaultSlot(ctx, e); err != nil || s.ActivePID != walsender {
		t.Errorf("walsender after the outage = %d (%v), want the same %d as before", s.ActivePID, err, walsender)
	}
}
