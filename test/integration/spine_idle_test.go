package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// spineLagSampler records the largest slot lag seen while it runs.
type spineLagSampler struct {
	mu   sync.Mutex
	max  int64
	err  error
	stop chan struct{}
	done chan struct{}
}

func spineSampleLag(e *testenv.Env, every time.Duration) *spineLagSampler {
	s := &spineLagSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			s.sample(e)
			select {
			case <-s.stop:
				s.sample(e)
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *spineLagSampler) sample(e *testenv.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lag, err := e.SlotLag(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.err = err
		return
	}
	s.max = max(s.max, lag)
}

// Stop ends sampling and returns the largest lag seen.
func (s *spineLagSampler) Stop() (int64, error) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max, s.err
}

// TestIdleOutboxBusyDatabaseDoesNotPinWAL writes tens of MB of WAL into a
// table outside the publication while the outbox is idle: the slot's
// confirmed position must follow the server's WAL (keepalive skip-ahead),
// and an outbox event written afterwards is still delivered.
func TestIdleOutboxBusyDatabaseDoesNotPinWAL(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := startRelay(t, e, "RELAY_STATUS_INTERVAL=1s")
	spineInsert(ctx, t, e.PG, "before")
	e.WaitDelivered(t, 1, 30*time.Second, p)

	mustExec(ctx, t, e.PG, `CREATE TABLE spine_busy (id int, pad text)`)
	var startLSN string
	if err := e.PG.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&startLSN); err != nil {
		t.Fatal(err)
	}
	sampler := spineSampleLag(e, 20*time.Millisecond)
	for i := 0; i < 3; i++ {
		// ~1 KiB rows, below the TOAST threshold: uncompressed in the WAL.
		mustExec(ctx, t, e.PG, `INSERT INTO spine_busy SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 10000) g`)
	}
	var written int64
	if err := e.PG.QueryRow(ctx, "SELECT (pg_current_wal_lsn() - $1::pg_lsn)::bigint", startLSN).Scan(&written); err != nil {
		t.Fatal(err)
	}
	if written < 20<<20 {
		t.Fatalf("only %s of WAL written; the test needs at least 20 MiB", spineMiB(written))
	}
	lagAfter, err := e.SlotLag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s of WAL outside the publication; slot lag right after: %s", spineMiB(written), spineMiB(lagAfter))

	start := time.Now()
	testenv.Eventually(t, 30*time.Second, "slot lag under 1 MiB with an idle outbox", func() error {
		if p.Exited() {
			t.Fatalf("relay exited:\n%s", p.Output())
		}
		lag, err := e.SlotLag(ctx)
		if err == nil && lag >= 1<<20 {
			err = fmt.Errorf("lag %s", spineMiB(lag))
		}
		return err
	})
	t.Logf("lag under 1 MiB %s after the writes", time.Since(start).Round(time.Millisecond))
	peak, err := sampler.Stop()
	if err != nil {
		t.Fatalf("sampling slot lag: %v", err)
	}
	peak = max(peak, lagAfter)
	if peak <= 1<<20 {
		t.Fatalf("the slot lag never exceeded 1 MiB (peak %s) while %s of WAL were written: the test measured nothing", spineMiB(peak), spineMiB(written))
	}
	t.Logf("peak lag while writing: %s", spineMiB(peak))

	// Skipping ahead must not skip an outbox event.
	spineInsert(ctx, t, e.PG, "after")
	c := e.WaitDelivered(t, 2, 30*time.Second, p)
	if c.Final != 2 {
		t.Fatalf("event_log FINAL has %d rows, want 2", c.Final)
	}
	got, err := spineTags(ctx, e, true)
	if err != nil {
		t.Fatal(err)
	}
	if got["before"] != 1 || got["after"] != 1 {
		t.Fatalf("event_log tags %v, want before and after once each", got)
	}
}
