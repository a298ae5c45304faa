package integration

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestFaultBackfillBeforeSlot commits events before the relay ever ran (no
// slot yet) and more while it backfills and streams: each arrives exactly
// once, the early ones through the backfill of the new slot's snapshot.
func TestFaultBackfillBeforeSlot(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	const early = 5000
	faultInsert(ctx, t, e, "before-slot", early)
	if s, err := readFaultSlot(ctx, e); err != nil || s.Exists {
		t.Fatalf("slot exists before the first start (%v)", err)
	}
	p := faultStart(t, relayBin, e, "CH_OUTBOX_BATCH_SIZE=500")
	prod := startFaultProducer(e, "during", 3, 10*time.Millisecond)
	prod.stopOnCleanup(t)
	waitLog(t, p, `"message":"backfill done"`, time.Minute)
	m := regexp.MustCompile(`"events":(\d+),[^\n]*"message":"backfill done"`).FindStringSubmatch(p.Output())
	if n, err := strconv.Atoi(m[1]); err != nil || n < early {
		t.Errorf("the backfill delivered %s events, want at least the %d committed before the slot existed", m[1], early)
	}
	faultWaitFlushes(t, e, p, 3)
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	c := faultExpectExactlyOnce(t, e, early+committed, 2*time.Minute, p)
	if c.Rows != c.Final {
		t.Errorf("%d rows for %d events: backfill and stream overlapped", c.Rows, c.Final)
	}
}

// TestFaultSlotDroppedWhileRunning drops the slot under a running relay
// (its walsender terminated, then pg_drop_replication_slot until it wins
// the race with the reconnect) while transactions commit. The relay must
// recreate the slot and backfill the outbox table: nothing is lost and
// nothing shows twice through FINAL.
func TestFaultSlotDroppedWhileRunning(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := faultStart(t, relayBin, e)
	waitLog(t, p, faultLogStreaming, 30*time.Second)
	prod := startFaultProducer(e, "load", 3, 5*time.Millisecond)
	prod.stopOnCleanup(t)
	faultWaitFlushes(t, e, p, 3)

	attempts := 0
	testenv.Eventually(t, 30*time.Second, "the slot dropped", func() error {
		faultAlive(t, p, "while its slot was dropped")
		attempts++
		if _, err := e.PG.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE slot_name = $1 AND active_pid IS NOT NULL`, e.Slot); err != nil {
			return err
		}
		_, err := e.PG.Exec(ctx, "SELECT pg_drop_replication_slot($1)", e.Slot)
		return err
	})
	droppedAt := time.Now()
	t.Logf("slot dropped after %d attempts", attempts)
	testenv.Eventually(t, time.Minute, "the slot recreated and streamed", func() error {
		faultAlive(t, p, "after its slot was dropped")
		if strings.Count(p.Output(), faultLogSlotCreated) < 2 {
			return errors.New("not recreated yet")
		}
		s, err := readFaultSlot(ctx, e)
		if err == nil && s.ActivePID == 0 {
			err = errors.New("recreated slot not streamed yet")
		}
		return err
	})
	t.Logf("slot recreated and streamed %s after the drop", time.Since(droppedAt).Round(time.Millisecond))
	faultWaitFlushes(t, e, p, 3)
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	c := faultExpectExactlyOnce(t, e, committed, 2*time.Minute, p)
	t.Logf("committed %d events; ClickHouse rows %d (backfilled again %d), FINAL %d", committed, c.Rows, c.Rows-c.Distinct, c.Final)
}

// TestFaultSlotInvalidated lets the slot of a stopped relay lose its WAL
// (max_slot_wal_keep_size = 1MB, WAL switched and checkpointed until the
// slot's wal_status is 'lost') while events are committed before, during
// and after. The restarted relay must say loudly that the slot is lost,
// recreate it and backfill: every event arrives exactly once through
// FINAL.
//
// Not parallel: max_slot_wal_keep_size is lowered server-wide meanwhile.
func TestFaultSlotInvalidated(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	p := faultStart(t, relayBin, e)
	faultInsert(ctx, t, e, "delivered", 100)
	e.WaitDelivered(t, 100, time.Minute, p)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := faultExitCode(t, p, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}

	restore := faultServerSetting(t, e, "max_slot_wal_keep_size", "1MB")
	faultInsert(ctx, t, e, "before-loss", 200)
	faultExec(ctx, t, e, "CREATE TABLE fault_churn (pad text)")
	during, churned := 0, 0
	testenv.Eventually(t, 2*time.Minute, "the stopped relay's slot lost (wal_status 'lost')", func() error {
		s, err := readFaultSlot(ctx, e)
		if err != nil || s.WALStatus == "lost" {
			return err
		}
		if churned >= 256 {
			t.Fatalf("slot still %q after %d MiB of WAL with max_slot_wal_keep_size = 1MB", s.WALStatus, churned)
		}
		// ~4 MiB of WAL, a segment switch and a checkpoint per round.
		for _, sql := range []string{
			"INSERT INTO fault_churn SELECT repeat(md5(g::text), 32) FROM generate_series(1, 4000) g",
			"SELECT pg_switch_wal()",
			"CHECKPOINT",
		} {
			if _, err := e.PG.Exec(ctx, sql); err != nil {
				return err
			}
		}
		churned += 4
		faultInsert(ctx, t, e, "during-loss", 10)
		during += 10
		return fmt.Errorf("slot %q after %d MiB", s.WALStatus, churned)
	})
	t.Logf("slot lost after about %d MiB of WAL; %d events committed meanwhile", churned, during)
	restore()
	faultInsert(ctx, t, e, "after-loss", 200)

	p2 := faultStart(t, relayBin, e)
	waitLog(t, p2, faultLogSlotLost, 30*time.Second)
	if !faultLoggedAt(p2.Output(), faultLogSlotLost, "error") {
		t.Errorf("the lost slot was not reported at level error:\n%s", p2.Output())
	}
	want := int64(100 + 200 + during + 200)
	faultExpectExactlyOnce(t, e, want, 2*time.Minute, p2)
	if s, err := readFaultSlot(ctx, e); err != nil || s.WALStatus == "lost" || s.ActivePID == 0 {
		t.Errorf("slot after recovery: %+v (%v), want a streamed slot that is not lost", s, err)
	}
}

// faultLoggedAt reports whether a JSON log line containing msg has level.
func faultLoggedAt(out, msg, level string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, msg) && strings.Contains(line, `"level":"`+level+`"`) {
			return true
		}
	}
	return false
}
