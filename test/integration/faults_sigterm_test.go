package integration

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestFaultSIGTERMDuringSlowFlush sends SIGTERM while a flush waits on a
// stalled ClickHouse (proxy paused) and lets ClickHouse answer again one
// second later, well within RELAY_SHUTDOWN_TIMEOUT: the relay must finish
// that flush (events in ClickHouse, rows deleted) and exit 0 promptly, in
// five rounds (the shutdown races the end of the flush). A last relay then
// finds nothing left to do: every event is in ClickHouse exactly once
// through FINAL.
func TestFaultSIGTERMDuringSlowFlush(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	const (
		grace  = 10 * time.Second
		stall  = time.Second
		rounds = 5
	)
	proxy := testenv.NewFaultProxy(t, testenv.Host(t, e.ClickHouse))
	env := []string{"CLICKHOUSE_URL=" + testenv.ReplaceHost(t, e.ClickHouse, proxy.Addr()), "RELAY_SHUTDOWN_TIMEOUT=" + grace.String()}
	want := int64(0)
	for round := 1; round <= rounds; round++ {
		p := faultStart(t, relayBin, e, env...)
		faultInsert(ctx, t, e, fmt.Sprintf("before-%d", round), 10)
		want += 10
		e.WaitDelivered(t, uint64(want), time.Minute, p)

		proxy.Pause()
		faultInsert(ctx, t, e, fmt.Sprintf("in-flight-%d", round), 100)
		want += 100
		// The batch is due 0.2 s after it arrived: give the flush time to
		// reach the stalled ClickHouse.
		faultHold(t, 1500*time.Millisecond, 100*time.Millisecond, func() { faultAlive(t, p, "while ClickHouse stalled") })
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		termAt := time.Now()
		faultHold(t, stall, 100*time.Millisecond, func() {})
		proxy.Resume()
		// Once ClickHouse answers, the flush ends at once: the shutdown
		// should not take more than a few seconds more.
		if faultPoll(grace/2, func() error {
			if p.Exited() {
				return nil
			}
			return fmt.Errorf("running")
		}) != nil {
			t.Errorf("round %d: the relay still runs %s after SIGTERM although ClickHouse answered %s after it "+
				"(RELAY_SHUTDOWN_TIMEOUT %s): it waits out the grace period instead of stopping once the flush is done\n%s",
				round, time.Since(termAt).Round(time.Millisecond), stall, grace, faultStacks(t, p))
		} else {
			code := faultExitCode(t, p, time.Second)
			t.Logf("round %d: exit code %d %s after SIGTERM (ClickHouse answered again after %s)", round, code, time.Since(termAt).Round(time.Millisecond), stall)
			if code != 0 {
				t.Errorf("round %d: exit code %d after SIGTERM, want 0", round, code)
			}
		}
		c, err := e.ClickHouseCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := e.OutboxRows(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Distinct != uint64(want) || rows != 0 {
			t.Errorf("round %d: after the shutdown ClickHouse holds %d events and outbox_event %d rows, want %d and 0: "+
				"the flush in progress at SIGTERM was not finished although ClickHouse answered within the grace period", round, c.Distinct, rows, want)
			for _, line := range []string{faultLogStoppedBeforeSink, faultLogRowsLeft} {
				if strings.Contains(p.Output(), line) {
					t.Errorf("the relay logged %s", line)
				}
			}
		}
	}
	faultInsert(ctx, t, e, "after", 10)
	p := faultStart(t, relayBin, e, env...)
	faultExpectExactlyOnce(t, e, want+10, time.Minute, p)
}
