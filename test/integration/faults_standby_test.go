package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestFaultTwoRelaysOneSlot runs two relays on one slot under load: the
// second stands by. The active one is killed with SIGKILL: the standby
// takes over within 30 s. The dead one comes back (now standing by) and
// the new leader is frozen with SIGSTOP for three times
// wal_sender_timeout, so PostgreSQL ends its walsender and the other relay
// takes the slot; after SIGCONT the frozen one must stand by. Nothing is
// lost, nothing shows twice through FINAL, and in the end exactly one
// relay streams.
//
// Not parallel: wal_sender_timeout is lowered server-wide to 3 s.
func TestFaultTwoRelaysOneSlot(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	faultServerSetting(t, e, "wal_sender_timeout", "3s")

	a := faultStart(t, relayBin, e)
	waitLog(t, a, faultLogStreaming, 30*time.Second)
	b := faultStart(t, relayBin, e)
	waitLog(t, b, faultLogStandingBy, 30*time.Second)
	if strings.Contains(b.Output(), faultLogStreaming) {
		t.Fatalf("the second relay streams from a slot the first one holds:\n%s", b.Output())
	}
	prod := startFaultProducer(e, "load", 3, 5*time.Millisecond)
	prod.stopOnCleanup(t)
	faultWaitFlushes(t, e, a, 3)
	if got := faultStreamer(ctx, t, e, a, b); got != a {
		t.Fatal("the standby owns the replication connection")
	}

	// kill -9 the leader: the standby takes over.
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	a.Wait(10 * time.Second)
	waitLog(t, b, faultLogStreaming, 30*time.Second)
	takeover := time.Since(killedAt)
	t.Logf("standby took over %s after the leader was killed", takeover.Round(time.Millisecond))
	if takeover > 30*time.Second {
		t.Errorf("takeover took %s, want under 30 s", takeover)
	}
	faultWaitFlushes(t, e, b, 3)

	// The killed relay comes back and stands by.
	a2 := faultStart(t, relayBin, e)
	waitLog(t, a2, faultLogStandingBy, 30*time.Second)

	// Freeze the leader past wal_sender_timeout.
	if err := b.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	t.Cleanup(func() { _ = b.Signal(syscall.SIGCONT) })
	var tookOver time.Duration
	faultHold(t, 3*faultSenderTimeout, 100*time.Millisecond, func() {
		faultAlive(t, a2, "while the leader was frozen")
		if tookOver == 0 && strings.Contains(a2.Output(), faultLogStreaming) {
			tookOver = time.Since(stoppedAt)
		}
	})
	if tookOver == 0 {
		t.Fatalf("the standby did not take the slot while the leader was frozen for %s (wal_sender_timeout %s)",
			3*faultSenderTimeout, faultSenderTimeout)
	}
	t.Logf("the standby streams %s after the leader was frozen", tookOver.Round(time.Millisecond))
	if err := b.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the thawed relay standing by", func() error {
		faultAlive(t, b, "after SIGCONT")
		out := b.Output()
		if strings.LastIndex(out, faultLogStandingBy) < strings.LastIndex(out, faultLogStreaming) {
			return errors.New("its last word is still streaming")
		}
		return nil
	})
	faultWaitFlushes(t, e, a2, 3)
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	c := faultExpectExactlyOnce(t, e, committed, 2*time.Minute, a2, b)
	t.Logf("committed %d events; ClickHouse rows %d (replayed %d), FINAL %d", committed, c.Rows, c.Rows-c.Distinct, c.Final)
	if got := faultStreamer(ctx, t, e, a2, b); got != a2 {
		t.Errorf("the relay streaming at the end is not the one that took over")
	}
}

// faultStreamer finds which of procs owns the slot's walsender (by the
// client port of its replication connection) and fails unless exactly one
// walsender of outbox-relay serves the test's database.
func faultStreamer(ctx context.Context, t *testing.T, e *testenv.Env, procs ...*testenv.Process) *testenv.Process {
	t.Helper()
	var found *testenv.Process
	testenv.Eventually(t, 10*time.Second, "exactly one relay streaming", func() error {
		found = nil
		rows, err := e.PG.Query(ctx, `SELECT r.client_port FROM pg_stat_replication r
			JOIN pg_replication_slots s ON s.active_pid = r.pid
			WHERE s.database = current_database()`)
		if err != nil {
			return err
		}
		ports, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return err
		}
		if len(ports) != 1 {
			return fmt.Errorf("%d walsenders serve the test's database", len(ports))
		}
		for _, p := range procs {
			if p.Exited() {
				continue
			}
			mine, err := testenv.LocalTCPPorts(p.Pid())
			if err != nil {
				return err
			}
			if mine[int(ports[0])] {
				if found != nil {
					return errors.New("two relays hold the replication connection's port")
				}
				found = p
			}
		}
		if found == nil {
			return fmt.Errorf("no relay owns client port %d of the walsender", ports[0])
		}
		return nil
	})
	return found
}
