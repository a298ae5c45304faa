package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestFaultKill9TwentyTimes kills the relay with SIGKILL 20 times in a row
// while transactions keep committing, each time at a random moment: after
// a random number (1-3) of new flushes seen in ClickHouse plus a random
// delay of up to 250 ms. The first incarnations die during the backfill of
// the new slot. In the end every committed event is in ClickHouse once
// through FINAL and the outbox table is empty.
func TestFaultKill9TwentyTimes(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("random seed %d", seed)

	// Rows before the first start: the first kills hit the backfill.
	faultInsert(ctx, t, e, "before-slot", 3000)
	prod := startFaultProducer(e, "load", 5, 5*time.Millisecond)
	prod.stopOnCleanup(t)

	env := []string{"CH_OUTBOX_BATCH_SIZE=200", "CH_OUTBOX_PROCESSING_FREQUENCY_SEC=0.1"}
	start := time.Now()
	for kill := range 20 {
		p := faultStart(t, relayBin, e, env...)
		flushes := 1 + rng.IntN(3)
		faultWaitFlushes(t, e, p, flushes)
		faultHold(t, time.Duration(rng.IntN(250))*time.Millisecond, 25*time.Millisecond, func() {
			faultAlive(t, p, fmt.Sprintf("before kill %d", kill+1))
		})
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.Wait(10 * time.Second)
	}
	t.Logf("20 kills in %s", time.Since(start).Round(time.Millisecond))
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	want := committed + 3000
	p := faultStart(t, relayBin, e, env...)
	c := faultExpectExactlyOnce(t, e, want, 2*time.Minute, p)
	t.Logf("committed %d events; ClickHouse rows %d (replayed %d), FINAL %d", want, c.Rows, c.Rows-c.Distinct, c.Final)
}
