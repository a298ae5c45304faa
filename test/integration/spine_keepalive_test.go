package integration

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
)

// spineSetWalSenderTimeout sets wal_sender_timeout server-wide until the test
// ends and waits until new sessions see it.
func spineSetWalSenderTimeout(ctx context.Context, t *testing.T, e *testenv.Env, value string) {
	t.Helper()
	admin, err := pgx.Connect(ctx, e.ServerDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close(ctx) }()
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, e.ServerDatabaseURL)
		if err != nil {
			t.Errorf("restore wal_sender_timeout: %v", err)
			return
		}
		defer func() { _ = c.Close(cctx) }()
		if _, err := c.Exec(cctx, "ALTER SYSTEM RESET wal_sender_timeout"); err != nil {
			t.Errorf("restore wal_sender_timeout: %v", err)
		}
		if _, err := c.Exec(cctx, "SELECT pg_reload_conf()"); err != nil {
			t.Errorf("reload after restoring wal_sender_timeout: %v", err)
		}
	})
	if _, err := admin.Exec(ctx, "ALTER SYSTEM SET wal_sender_timeout = '"+value+"'"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "wal_sender_timeout = "+value, func() error {
		c, err := pgx.Connect(ctx, e.ServerDatabaseURL)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close(ctx) }()
		var got string
		if err := c.QueryRow(ctx, "SHOW wal_sender_timeout").Scan(&got); err != nil {
			return err
		}
		if got != value {
			return fmt.Errorf("still %s", got)
		}
		return nil
	})
}

// spineSlotPID is the walsender serving the test's slot (0 when none).
func spineSlotPID(ctx context.Context, e *testenv.Env) (int32, error) {
	var pid *int32
	err := e.PG.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", e.Slot).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) || pid == nil {
		return 0, err
	}
	return *pid, err
}

// TestKeepalivesWhileClickHouseStalls stalls ClickHouse (a paused proxy)
// for three times wal_sender_timeout while events stream: the relay must
// keep the replication connection alive (same walsender before and after),
// and deliver everything once ClickHouse answers again.
//
// Not parallel: wal_sender_timeout is lowered server-wide for the duration.
func TestKeepalivesWhileClickHouseStalls(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	const senderTimeout = 3 * time.Second
	spineSetWalSenderTimeout(ctx, t, e, "3s")

	chURL, err := url.Parse(e.ClickHouse)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewFaultProxy(t, chURL.Host)
	chURL.Host = proxy.Addr()
	p := testenv.Start(t, relayBin, e.RelayEnv("CLICKHOUSE_URL="+chURL.String(), "RELAY_STATUS_INTERVAL=1s"), "run")
	waitLog(t, p, logStreaming, 30*time.Second)
	var pidBefore int32
	testenv.Eventually(t, 10*time.Second, "walsender of the slot", func() error {
		var err error
		if pidBefore, err = spineSlotPID(ctx, e); err == nil && pidBefore == 0 {
			err = errors.New("slot not active")
		}
		return err
	})

	proxy.Pause()
	const txs, per = 50, 20
	spineInsertTxs(ctx, t, e, txs/2, per, "stalled-1")
	stall := time.NewTimer(3 * senderTimeout)
	defer stall.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	inserted := false
wait:
	for {
		select {
		case <-stall.C:
			break wait
		case <-tick.C:
			if p.Exited() {
				t.Fatalf("relay exited while ClickHouse stalled:\n%s", p.Output())
			}
			pid, err := spineSlotPID(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			if pid != pidBefore {
				t.Fatalf("walsender of the slot changed from %d to %d while ClickHouse stalled: "+
					"the relay stopped answering PostgreSQL (wal_sender_timeout %s)", pidBefore, pid, senderTimeout)
			}
			if !inserted {
				// More events mid-stall: the stream keeps flowing into the relay.
				spineInsertTxs(ctx, t, e, txs/2, per, "stalled-2")
				inserted = true
			}
		}
	}
	c, err := e.ClickHouseCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Rows != 0 {
		t.Fatalf("%d rows reached ClickHouse through the paused proxy: the stall was not real", c.Rows)
	}
	proxy.Resume()

	got := e.WaitDelivered(t, txs*per, 45*time.Second, p)
	if got.Final != txs*per {
		t.Fatalf("event_log FINAL has %d rows, want %d", got.Final, txs*per)
	}
	pidAfter, err := spineSlotPID(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if pidAfter != pidBefore {
		t.Fatalf("walsender of the slot was %d before the stall and is %d after: the replication connection did not survive", pidBefore, pidAfter)
	}
	if out := p.Output(); strings.Contains(out, logReconnecting) {
		t.Fatalf("the relay reconnected the stream during the stall:\n%s", out)
	}
}

// spineInsertTxs commits txs transactions of per events each, tagged tag.
func spineInsertTxs(ctx context.Context, t *testing.T, e *testenv.Env, txs, per int, tag string) {
	t.Helper()
	for i := 0; i < txs; i++ {
		mustExec(ctx, t, e.PG, `INSERT INTO outbox_event (event_type, environment, event_context)
			SELECT $1, $2, jsonb_build_object('tag', $3::text, 'tx', $4::int, 'n', g) FROM generate_series(1, $5::int) g`,
			spineEventType, spineEnvironment, tag, i, per)
	}
}
