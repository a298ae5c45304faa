package integration

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// The relay is killed with SIGKILL repeatedly while events are written; in
// the end every committed event is in ClickHouse exactly once through the
// read path (FINAL), and the outbox table is empty.
func TestKill9UnderLoad(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var committed atomic.Int64
	producerDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if ctx.Err() != nil || committed.Load() >= 20_000 {
				producerDone <- nil
				return
			}
			_, err := e.PG.Exec(ctx, `INSERT INTO outbox_event (event_type, environment, event_context)
				SELECT 'load', 'test', jsonb_build_object('tx', $1::int, 'n', g) FROM generate_series(1, 20) g`, i)
			if err != nil {
				producerDone <- fmt.Errorf("producer: %w", err)
				return
			}
			committed.Add(20)
		}
	}()

	env := e.RelayEnv("CH_OUTBOX_BATCH_SIZE=500", "CH_OUTBOX_PROCESSING_FREQUENCY_SEC=0.1")
	for kill := 0; kill < 8; kill++ {
		p := testenv.Start(t, relayBin, env, "run")
		// Kill once this incarnation has delivered something new.
		before, err := e.ClickHouseCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, time.Minute, "progress before the kill", func() error {
			if p.Exited() {
				t.Fatalf("relay exited:\n%s", p.Output())
			}
			c, err := e.ClickHouseCounts(ctx)
			if err != nil {
				return err
			}
			if c.Rows <= before.Rows {
				return fmt.Errorf("no new rows yet (%d)", c.Rows)
			}
			return nil
		})
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.Wait(10 * time.Second)
	}
	if err := <-producerDone; err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, relayBin, env, "run")
	want := uint64(committed.Load())
	c := e.WaitDelivered(t, want, 2*time.Minute, p)
	testenv.Eventually(t, time.Minute, "FINAL shows each event once", func() error {
		c, err := e.ClickHouseCounts(ctx)
		if err != nil {
			return err
		}
		if c.Final != want {
			return fmt.Errorf("FINAL count %d, want %d (rows %d)", c.Final, want, c.Rows)
		}
		return nil
	})
	t.Logf("committed %d, rows %d (replays %d), distinct %d", want, c.Rows, c.Rows-c.Distinct, c.Distinct)
}
