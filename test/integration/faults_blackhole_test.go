package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// The black-hole tests lower wal_sender_timeout server-wide to 3 s, so they
// are not parallel (parallel tests start only after them).
const faultSenderTimeout = 3 * time.Second

// faultBlackhole starts a relay whose every PostgreSQL connection goes
// through a fault proxy, with a producer committing in the background, and
// black-holes the network (proxy paused, sockets open) for hole, longer
// than wal_sender_timeout. It returns once the hole is over and PostgreSQL
// has ended the walsender the relay used.
func faultBlackhole(t *testing.T, e *testenv.Env, hole time.Duration) (*testenv.Process, *testenv.FaultProxy, *producer) {
	t.Helper()
	ctx := context.Background()
	faultServerSetting(t, e, "wal_sender_timeout", "3s")
	proxy := testenv.NewFaultProxy(t, testenv.Host(t, e.DatabaseURL))
	p := faultStart(t, relayBin, e, "DATABASE_URL="+testenv.ReplaceHost(t, e.DatabaseURL, proxy.Addr()))
	waitLog(t, p, faultLogStreaming, 30*time.Second)
	prod := startFaultProducer(e, "load", 3, 10*time.Millisecond)
	prod.stopOnCleanup(t)
	faultWaitFlushes(t, e, p, 3)
	walsender := faultWaitActive(t, e, 10*time.Second, p)

	proxy.Pause()
	gone := false
	faultHold(t, hole, 100*time.Millisecond, func() {
		faultAlive(t, p, "during the network black hole")
		s, err := readFaultSlot(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		gone = gone || s.ActivePID != walsender
	})
	if !gone {
		t.Fatalf("walsender %d still serves the slot after %s of black hole (wal_sender_timeout %s): the hole was not real",
			walsender, hole, faultSenderTimeout)
	}
	if c, err := e.ClickHouseCounts(ctx); err == nil {
		t.Logf("black hole of %s over; walsender %d gone; ClickHouse holds %d events", hole, walsender, c.Distinct)
	}
	return p, proxy, prod
}

// faultWaitResumed waits up to limit for events committed after the black
// hole to reach ClickHouse, then for everything committed to arrive
// exactly once. what describes how the hole ended, for the messages.
func faultWaitResumed(t *testing.T, e *testenv.Env, p *testenv.Process, prod *producer, proxy *testenv.FaultProxy, limit time.Duration, what string) {
	t.Helper()
	ctx := context.Background()
	healed := time.Now()
	faultInsert(ctx, t, e, "after-hole", 1)
	err := faultPoll(limit, func() error {
		faultAlive(t, p, "after the black hole")
		n, err := clickHouseFaultTags(ctx, e, "after-hole")
		if err != nil || n > 0 {
			return err
		}
		s, _ := readFaultSlot(ctx, e)
		rows, _ := e.OutboxRows(ctx)
		return fmt.Errorf("slot active_pid %d, %d rows waiting in outbox_event, %d proxied connections, %d reconnects logged",
			s.ActivePID, rows, proxy.Conns(), strings.Count(p.Output(), faultLogReconnecting))
	})
	if err != nil {
		t.Fatalf("%s: an event committed afterwards is not in ClickHouse %s later: the relay hangs on its dead connections (%v)\n%s",
			what, limit, err, faultStacks(t, p))
	}
	t.Logf("%s: delivering again %s later", what, time.Since(healed).Round(time.Millisecond))
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	faultExpectExactlyOnce(t, e, committed+1, 2*time.Minute, p)
}

// clickHouseFaultTags counts the events tagged tag in event_log FINAL.
func clickHouseFaultTags(ctx context.Context, e *testenv.Env, tag string) (uint64, error) {
	var n uint64
	// event_context is jsonb's text form: {"n": 1, "tag": "x"}.
	err := e.CH.QueryRow(ctx, "SELECT count() FROM event_log FINAL WHERE position(event_context, ?) > 0", `"tag": "`+tag+`"`).Scan(&n)
	return n, err
}

// TestFaultBlackholeHealed black-holes the network between the relay and
// PostgreSQL for 10 s (over three times wal_sender_timeout), then heals it:
// the relay must stream again, without any manual step, within 60 s, and
// every event arrives exactly once through FINAL.
func TestFaultBlackholeHealed(t *testing.T) {
	e := testenv.New(t)
	p, proxy, prod := faultBlackhole(t, e, 10*time.Second)
	proxy.Resume()
	faultWaitResumed(t, e, p, prod, proxy, 60*time.Second, "black hole healed")
}

// TestFaultBlackholeConnectionsNeverAnswer black-holes the network for 10 s
// and then heals it for new connections only: the connections open during
// the hole stay silent forever, as when a firewall or NAT between the relay
// and PostgreSQL dropped their state (no RST ever comes back). The server
// ended its side long ago (wal_sender_timeout), so the relay must notice by
// itself that nothing arrives any more, reconnect, and stream again within
// 60 s; every event arrives exactly once through FINAL.
func TestFaultBlackholeConnectionsNeverAnswer(t *testing.T) {
	e := testenv.New(t)
	p, proxy, prod := faultBlackhole(t, e, 10*time.Second)
	n := proxy.Sever()
	proxy.Resume()
	t.Logf("%d connections severed for good; new ones are forwarded", n)
	faultWaitResumed(t, e, p, prod, proxy, 60*time.Second, "black hole healed for new connections only")
	if !strings.Contains(p.Output(), faultLogReconnecting) {
		t.Error("the relay delivered again without logging a reconnect")
	}
}
