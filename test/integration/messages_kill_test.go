package integration

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/payload"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
)

// startMessageProducer commits a transaction of perTx messages of prefix
// every pace, in one statement (what outbox.WithMessages sends).
func startMessageProducer(e *testenv.Env, prefix string, perTx int, pace time.Duration) *producer {
	return startProducer(e, pace, func(i int) (string, []any, int) {
		ps := make([][]byte, perTx)
		for n := range ps {
			ps[n] = payload.Append(nil, payload.Fields{ID: uuid.New(), OccurredAtMicros: time.Now().UnixMicro(), MetadataVersion: 1,
				Type: []byte("fault"), Environment: []byte("test"), Context: fmt.Appendf(nil, `{"tx":%d,"n":%d}`, i, n)}, nil)
		}
		return `SELECT count(pg_logical_emit_message(true, $1::text, m.p)) FROM unnest($2::bytea[]) WITH ORDINALITY AS m(p, ord)`,
			[]any{prefix, ps}, perTx
	})
}

// TestMessageModeKill9Every2To4s kills the relay with SIGKILL every 2-4 s
// while transactions of messages keep committing. Every committed message
// is in ClickHouse once through FINAL (the documented read path on a
// non-replicated table), none is missing; on a replicated table the range
// identified batches make it once even without FINAL, as for rows.
func TestMessageModeKill9Every2To4s(t *testing.T) {
	t.Parallel()
	testenv.Skip(t)
	for _, topo := range []topology.Topology{topology.Single, topology.Replicated} {
		t.Run(string(topo), func(t *testing.T) {
			t.Parallel()
			messageKillStorm(t, topo)
		})
	}
}

func messageKillStorm(t *testing.T, topo topology.Topology) {
	e := testenv.NewOn(t, topo)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("random seed %d", seed)
	env := []string{"RELAY_MESSAGE_PREFIX=" + msgPrefix, "CH_OUTBOX_BATCH_SIZE=200", "CH_OUTBOX_PROCESSING_FREQUENCY_SEC=0.1"}

	// The slot must exist before the first message: a message emitted
	// without it is gone by design.
	p := faultStart(t, relayBin, e, env...)
	waitLog(t, p, logStreaming, 30*time.Second)
	prod := startMessageProducer(e, msgPrefix, 5, 5*time.Millisecond)
	prod.stopOnCleanup(t)
	const kills = 10
	for kill := range kills {
		if kill > 0 {
			p = faultStart(t, relayBin, e, env...)
		}
		faultHold(t, 2*time.Second+time.Duration(rng.IntN(2000))*time.Millisecond, 50*time.Millisecond, func() {
			faultAlive(t, p, fmt.Sprintf("before kill %d", kill+1))
		})
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.Wait(10 * time.Second)
	}
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	if committed == 0 {
		t.Fatal("the producer committed nothing")
	}
	p = faultStart(t, relayBin, e, env...)
	c := faultExpectExactlyOnce(t, e, committed, 2*time.Minute, p)
	t.Logf("%s: committed %d messages; ClickHouse rows %d (replayed %d), FINAL %d", topo, committed, c.Rows, c.Rows-c.Distinct, c.Final)
	if topo != topology.Single {
		expectNoRepeat(t, e, committed)
	}
}
