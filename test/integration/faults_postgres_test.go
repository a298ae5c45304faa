package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestFaultPostgresConnectionCut cuts every connection between the relay and
// PostgreSQL (a proxy goes down for 3 s, as in a server restart) three
// times while transactions commit: the relay reconnects by itself each
// time and every event arrives exactly once through FINAL.
func TestFaultPostgresConnectionCut(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	proxy := testenv.NewFaultProxy(t, testenv.Host(t, e.DatabaseURL))
	p := faultStart(t, relayBin, e, "DATABASE_URL="+testenv.ReplaceHost(t, e.DatabaseURL, proxy.Addr()))
	waitLog(t, p, faultLogStreaming, 30*time.Second)
	prod := startFaultProducer(e, "load", 3, 5*time.Millisecond)
	prod.stopOnCleanup(t)

	for cut := 1; cut <= 3; cut++ {
		faultWaitFlushes(t, e, p, 2)
		streams := strings.Count(p.Output(), faultLogStreaming)
		proxy.Down()
		faultHold(t, 3*time.Second, 100*time.Millisecond, func() { faultAlive(t, p, fmt.Sprintf("during cut %d", cut)) })
		proxy.Up()
		upAt := time.Now()
		testenv.Eventually(t, time.Minute, fmt.Sprintf("the relay streaming again after cut %d", cut), func() error {
			faultAlive(t, p, "after the cut")
			if n := strings.Count(p.Output(), faultLogStreaming); n <= streams {
				return fmt.Errorf("still %d streaming sessions", n)
			}
			return nil
		})
		t.Logf("cut %d: streaming again %s after PostgreSQL came back", cut, time.Since(upAt).Round(time.Millisecond))
	}
	faultWaitFlushes(t, e, p, 2)
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	c := faultExpectExactlyOnce(t, e, committed, 2*time.Minute, p)
	t.Logf("committed %d events; ClickHouse rows %d, FINAL %d", committed, c.Rows, c.Final)
}

// TestFaultWalsenderKilled terminates the slot's walsender
// (pg_terminate_backend) three times while transactions commit: the relay
// reconnects with a new walsender each time and every event arrives
// exactly once through FINAL.
func TestFaultWalsenderKilled(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := faultStart(t, relayBin, e)
	waitLog(t, p, faultLogStreaming, 30*time.Second)
	prod := startFaultProducer(e, "load", 3, 5*time.Millisecond)
	prod.stopOnCleanup(t)

	for kill := 1; kill <= 3; kill++ {
		faultWaitFlushes(t, e, p, 2)
		old := faultWaitActive(t, e, 30*time.Second, p)
		var ok bool
		if err := e.PG.QueryRow(ctx, "SELECT pg_terminate_backend($1)", old).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_terminate_backend(%d) = %v, %v", old, ok, err)
		}
		killedAt := time.Now()
		testenv.Eventually(t, time.Minute, fmt.Sprintf("a new walsender after killing %d", old), func() error {
			faultAlive(t, p, "after its walsender was killed")
			s, err := readFaultSlot(ctx, e)
			if err != nil {
				return err
			}
			if s.ActivePID == 0 || s.ActivePID == old {
				return fmt.Errorf("active_pid %d", s.ActivePID)
			}
			return nil
		})
		t.Logf("walsender %d killed; a new one streams %s later", old, time.Since(killedAt).Round(time.Millisecond))
	}
	faultWaitFlushes(t, e, p, 2)
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	c := faultExpectExactlyOnce(t, e, committed, 2*time.Minute, p)
	t.Logf("committed %d events; ClickHouse rows %d, FINAL %d", committed, c.Rows, c.Final)
}
