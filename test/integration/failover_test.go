package integration

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outbox-relay/relay/internal/standby"
	"github.com/outbox-relay/relay/internal/status"
	"github.com/outbox-relay/relay/internal/testenv"
)

// On PostgreSQL 17 relay run creates a failover slot, and with
// RELAY_SLOT_FAILOVER=false turns the flag off on the existing slot; relay
// status names what a failover would miss. On 15 (no failover slots) the
// relay runs as before and status says failover needs 17.
// Version-dependent: it checks what DATABASE_URL's server can do, so it
// runs in both passes of make test.
func TestFailoverSlotFlag(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	p := startRelay(t, e)
	waitLog(t, p, logStreaming, time.Minute)
	if err := insertTagged(ctx, e.PG, "f1"); err != nil {
		t.Fatal(err)
	}
	e.WaitDelivered(t, 1, time.Minute, p)

	if testenv.ServerVersionNum(t, e.ServerDatabaseURL) < 170000 {
		_, r, out := relayStatus(t, e.RelayEnv())
		if r == nil || r.Failover == nil || r.Failover.Supported || r.Failover.Ready || !strings.Contains(r.Failover.Missing, "PostgreSQL 17") {
			t.Fatalf("PostgreSQL 15: want failover unsupported and not ready, naming PostgreSQL 17:\n%s", out)
		}
		return
	}
	if got := slotFailoverFlag(ctx, t, e); !got {
		t.Fatal("relay run created the slot with failover = false; want true on PostgreSQL 17")
	}
	// No standby is configured on this server: not ready, and the missing
	// setting is named.
	_, r, out := relayStatus(t, e.RelayEnv())
	if r == nil || r.Failover == nil || !r.Failover.SlotFailover || r.Failover.Ready ||
		!strings.Contains(r.Failover.Missing, "synchronized_standby_slots") {
		t.Fatalf("want slot_failover true, not ready, missing synchronized_standby_slots:\n%s", out)
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(time.Minute); code != 0 {
		t.Fatalf("relay exit %d:\n%s", code, p.Output())
	}
	p = startRelay(t, e, "RELAY_SLOT_FAILOVER=false")
	waitLog(t, p, logStreaming, time.Minute)
	if got := slotFailoverFlag(ctx, t, e); got {
		t.Fatalf("RELAY_SLOT_FAILOVER=false left the slot's failover flag on:\n%s", p.Output())
	}
	_, r, out = relayStatus(t, e.RelayEnv())
	if r == nil || r.Failover.Ready || !strings.Contains(r.Failover.Missing, "RELAY_SLOT_FAILOVER") {
		t.Fatalf("want not ready, missing the slot's failover flag (RELAY_SLOT_FAILOVER):\n%s", out)
	}
}

func slotFailoverFlag(ctx context.Context, t *testing.T, e *testenv.Env) bool {
	t.Helper()
	var failover bool
	if err := e.PG.QueryRow(ctx, "SELECT failover FROM pg_replication_slots WHERE slot_name = $1", e.Slot).Scan(&failover); err != nil {
		t.Fatalf("read the slot's failover flag: %v", err)
	}
	return failover
}

// On the PostgreSQL 17 failover pair, relay status says "failover-ready:
// yes" while the standby streams from the slot named in
// synchronized_standby_slots, and "no" naming the setting when the
// primary's synchronized_standby_slots leaves it out; the standby holds a
// synchronized copy of the relay's slot.
func TestFailoverReadinessOnPair(t *testing.T) {
	pair := testenv.NeedFailoverPair(t)
	e := testenv.NewAt(t, pair.Primary)
	ctx := context.Background()
	p := startRelay(t, e)
	waitLog(t, p, logStreaming, time.Minute)
	if err := insertTagged(ctx, e.PG, "pair"); err != nil {
		t.Fatal(err)
	}
	e.WaitDelivered(t, 1, time.Minute, p)

	ready := waitStatus(t, e.RelayEnv(), statusExitOK, time.Minute, func(r *status.Report) error {
		if r.Failover == nil || !r.Failover.Ready {
			return fmt.Errorf("failover %+v", r.Failover)
		}
		return nil
	})
	if len(ready.Failover.Standbys) != 1 || ready.Failover.Standbys[0].Name != pair.StandbySlot || ready.Failover.Standbys[0].State != "streaming" {
		t.Errorf("standby slots %+v, want %s streaming", ready.Failover.Standbys, pair.StandbySlot)
	}
	code, table := runRelayCmd(t, 30*time.Second, e.RelayEnv(), "status")
	if !regexp.MustCompile(`(?m)^\s+failover-ready\s+yes$`).MatchString(table) {
		t.Errorf("relay status (exit %d) has no failover-ready line:\n%s", code, table)
	}
	waitSyncedSlot(t, pair.Standby, e.Slot)

	restore := pairSetting(t, pair.Primary, "synchronized_standby_slots", "")
	defer restore()
	notReady := waitStatus(t, e.RelayEnv(), statusExitOK, time.Minute, func(r *status.Report) error {
		if r.Failover.Ready || !strings.Contains(r.Failover.Missing, "synchronized_standby_slots") {
			return fmt.Errorf("failover %+v", r.Failover)
		}
		return nil
	})
	t.Logf("without the standby in synchronized_standby_slots: failover-ready %s", status.FailoverLine(notReady.Failover))
	_, table = runRelayCmd(t, 30*time.Second, e.RelayEnv(), "status")
	if !regexp.MustCompile(`(?m)^\s+failover-ready\s+no: missing synchronized_standby_slots`).MatchString(table) {
		t.Errorf("relay status table does not say failover-ready no, missing synchronized_standby_slots:\n%s", table)
	}
}

// waitSyncedSlot waits until the standby of standbyURL holds a synced copy
// of slot (pg_replication_slots.synced, not temporary: usable once
// promoted).
func waitSyncedSlot(t *testing.T, standbyURL, slot string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, standbyURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	testenv.Eventually(t, 2*time.Minute, "a synced copy of the slot on the standby", func() error {
		var synced, temporary bool
		err := conn.QueryRow(ctx, "SELECT synced, temporary FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&synced, &temporary)
		if errors.Is(err, pgx.ErrNoRows) {
			return errors.New("no slot on the standby yet")
		}
		if err != nil {
			return err
		}
		if !synced || temporary {
			return fmt.Errorf("synced %t temporary %t", synced, temporary)
		}
		return nil
	})
}

// pairSetting sets a server setting of the pair's primary (ALTER SYSTEM,
// reload); restore sets it back.
func pairSetting(t *testing.T, url, name, value string) (restore func()) {
	t.Helper()
	ctx := context.Background()
	set := func(v string) {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close(ctx) }()
		if _, err := conn.Exec(ctx, "ALTER SYSTEM SET "+pgx.Identifier{name}.Sanitize()+" = "+quoteFaultLiteral(v)); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
	}
	set(value)
	return func() {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Error(err)
			return
		}
		defer func() { _ = conn.Close(ctx) }()
		if _, err := conn.Exec(ctx, "ALTER SYSTEM RESET "+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Error(err)
		}
		if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Error(err)
		}
	}
}

// The relay's own writes on a failover slot's primary wait for the standby
// (package standby): at once while it streams, and until the caller gives
// up while a slot of synchronized_standby_slots has no standby.
func TestStandbyWaiterOnPair(t *testing.T) {
	pair := testenv.NeedFailoverPair(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pair.Primary)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	w := standby.New(pool)
	emit := func(ctx context.Context) error {
		_, err := w.Exec(ctx, "SELECT pg_logical_emit_message(false, 'relay_test', 'x')")
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := emit(wctx); err != nil {
		t.Fatalf("a write with the standby streaming: %v", err)
	}

	absent := testenv.RandomName("relay_absent_")
	if _, err := pool.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", absent); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", absent) })
	restore := pairSetting(t, pair.Primary, "synchronized_standby_slots", pair.StandbySlot+", "+absent)
	defer restore()
	testenv.Eventually(t, 10*time.Second, "the new synchronized_standby_slots in force", func() error {
		var v string
		if err := pool.QueryRow(ctx, "SELECT current_setting('synchronized_standby_slots')").Scan(&v); err != nil {
			return err
		}
		if !strings.Contains(v, absent) {
			return fmt.Errorf("synchronized_standby_slots = %q", v)
		}
		return nil
	})
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := emit(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a write with a standby slot nobody streams from returned %v, want it to wait until the deadline", err)
	}
}
