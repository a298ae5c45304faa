package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
)

// Log line of a restarted relay that rebuilt a recorded batch.
const exactlyOnceLogRebuilt = `"message":"rebuilt a recorded batch; writing it again with the same identity"`

// TestExactlyOnceFailpoints kills the relay (SIGKILL from inside, binary
// built with -tags failpoints) between two steps of a batch while
// transactions commit, restarts it and checks what ClickHouse holds:
//
//   - after-pending: the range is recorded, nothing written;
//   - after-sink-write: ClickHouse has the batch, the record is not done;
//     the restarted relay rebuilds it and inserts it again with the same
//     identity: on a replicated table (and on each shard's) ClickHouse
//     drops the repeat, and count() without FINAL equals the events
//     committed;
//   - after-delete: the record is done (rows deleted, same transaction),
//     the LSN not confirmed: the rebuilt batch is not inserted again.
//
// A single 18.16 table has no insert deduplication: there the repeat is
// collapsed through FINAL only (and a batch written alongside a done one
// may repeat too). Merges are stopped, so that count() shows every row
// ever inserted (ReplacingMergeTree merges would collapse a repeat, too).
func TestExactlyOnceFailpoints(t *testing.T) {
	t.Parallel()
	testenv.Skip(t)
	bin, err := testenv.BuildRelay(t.TempDir(), "failpoints")
	if err != nil {
		t.Fatalf("build relay with failpoints: %v", err)
	}
	for _, topo := range []topology.Topology{topology.Single, topology.Replicated, topology.Sharded} {
		t.Run(string(topo), func(t *testing.T) {
			for _, point := range []string{"after-pending", "after-sink-write", "after-delete"} {
				t.Run(point, func(t *testing.T) {
					exactlyOnceFailpoint(t, bin, topo, point)
				})
			}
		})
	}
}

func exactlyOnceFailpoint(t *testing.T, bin string, topo topology.Topology, point string) {
	e := testenv.NewOn(t, topo)
	ctx := context.Background()
	// Merges would collapse a repeated row too (ReplacingMergeTree): with
	// them stopped, count() shows every row ever inserted.
	stopMerges(t, e)
	prod := startFaultProducer(e, "load", 3, 5*time.Millisecond)
	prod.stopOnCleanup(t)
	p := faultStart(t, bin, e, "RELAY_FAILPOINT="+point, "RELAY_FAILPOINT_SKIP=3")
	if code := faultExitCode(t, p, time.Minute); code != -1 {
		t.Fatalf("exit code %d, want death by SIGKILL at %s:\n%s", code, point, p.Output())
	}
	var pending, done int
	if err := e.PG.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT done), count(*) FILTER (WHERE done)
		FROM outbox_relay_batch WHERE slot = $1`, e.Slot).Scan(&pending, &done); err != nil {
		t.Fatal(err)
	}
	t.Logf("died at %s: %d batch records pending, %d done", point, pending, done)
	if pending == 0 && point != "after-delete" {
		t.Errorf("died at %s with no pending batch record", point)
	}

	p2 := faultStart(t, relayBin, e)
	if point != "after-pending" || pending > 0 {
		// The batch it died in is rebuilt from its record.
		testenv.Eventually(t, time.Minute, "the restarted relay rebuilds a recorded batch", func() error {
			faultAlive(t, p2, "while rebuilding")
			if !strings.Contains(p2.Output(), exactlyOnceLogRebuilt) {
				return fmt.Errorf("no %s in its log yet", exactlyOnceLogRebuilt)
			}
			return nil
		})
	}
	if point == "after-delete" && !strings.Contains(p2.Output(), `"done":true`) {
		t.Errorf("died after a batch was done, but the restarted relay rebuilt no done batch:\n%s", p2.Output())
	}
	faultWaitFlushes(t, e, p2, 2)
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	c := faultExpectExactlyOnce(t, e, committed, 2*time.Minute, p2)
	t.Logf("%s, %s: committed %d events; ClickHouse rows %d (repeated %d), FINAL %d", topo, point, committed, c.Rows, c.Rows-c.Distinct, c.Final)
	if topo != topology.Single {
		expectNoRepeat(t, e, committed)
	} else if point == "after-sink-write" && c.Rows == c.Distinct {
		// The control: without insert deduplication the replay shows.
		t.Errorf("a single 18.16 table shows no repeated row after a replay of a written batch; is the count blind?")
	}
}

// stopMerges stops merges of the test's event_log on the single server,
// or of its local tables on every server of the cluster.
func stopMerges(t *testing.T, e *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	if e.Cluster == nil {
		if err := e.CH.Exec(ctx, "SYSTEM STOP MERGES "+e.Name+".event_log"); err != nil {
			t.Fatal(err)
		}
		return
	}
	table := "event_log"
	if e.Layout.Topology == topology.Sharded {
		table = "event_log_local"
	}
	for i := range e.Cluster.Replicas {
		conn := e.Cluster.Conn(t, i+1)
		err := conn.Exec(ctx, "SYSTEM STOP MERGES "+e.Name+"."+table)
		_ = conn.Close()
		if err != nil {
			t.Fatalf("stop merges on replica %d: %v", i+1, err)
		}
	}
}

// expectNoRepeat checks count() without FINAL: every event is stored once.
func expectNoRepeat(t *testing.T, e *testenv.Env, committed int64) {
	t.Helper()
	c, err := e.ClickHouseCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Rows != uint64(committed) || c.Distinct != uint64(committed) {
		t.Errorf("count() = %d, uniqExact(event_id) = %d without FINAL; want both = %d committed", c.Rows, c.Distinct, committed)
	}
}

// exactlyOnceEvents is how many events the kill storm commits
// (RELAY_EXACTLY_ONCE_EVENTS, default 200,000).
func exactlyOnceEvents(t *testing.T) int64 {
	n := int64(200_000)
	if v := os.Getenv("RELAY_EXACTLY_ONCE_EVENTS"); v != "" {
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil || n <= 0 {
			t.Fatalf("RELAY_EXACTLY_ONCE_EVENTS=%q: want a positive number", v)
		}
	}
	return n
}

// TestExactlyOnceKillStorm commits RELAY_EXACTLY_ONCE_EVENTS events
// (200,000 by default) in transactions of 1 to 100 events while the relay
// is SIGKILLed every 2–4 s and started again. In the end the outbox is
// empty, the slot's lag small, and ClickHouse holds every committed event:
// on the replicated and sharded topologies count() without FINAL =
// uniqExact(event_id) = committed; on a single 18.16 server (no insert
// deduplication) the same through FINAL.
func TestExactlyOnceKillStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("minutes of load per topology")
	}
	t.Parallel()
	testenv.Skip(t)
	for _, topo := range []topology.Topology{topology.Single, topology.Replicated, topology.Sharded} {
		t.Run(string(topo), func(t *testing.T) {
			exactlyOnceStorm(t, topo, exactlyOnceEvents(t))
		})
	}
}

// exactlyOnceBacklog is how many events are still in the outbox.
func exactlyOnceBacklog(t *testing.T, e *testenv.Env) int64 {
	t.Helper()
	n, err := e.OutboxRows(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func exactlyOnceStorm(t *testing.T, topo topology.Topology, want int64) {
	e := testenv.NewOn(t, topo)
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("random seed %d", seed)

	txRand := rand.New(rand.NewPCG(seed, 1))
	prod := startProducer(e, 0, func(i int) (string, []any, int) {
		n := 1 + txRand.IntN(100)
		return `INSERT INTO outbox_event (event_type, environment, event_context)
			SELECT 'storm', 'test', jsonb_build_object('tx', $1::int, 'n', g)
			FROM generate_series(1, $2::int) g`, []any{i, n}, n
	})
	prod.stopOnCleanup(t)

	env := []string{"CH_OUTBOX_BATCH_SIZE=5000", "CH_OUTBOX_PROCESSING_FREQUENCY_SEC=0.2"}
	start := time.Now()
	// Kill on until the producer is done and the relay (killed) has
	// delivered nearly everything: the drain happens under the kills too.
	kills := faultKillStorm(t, e, rng, env, func(kills int) bool {
		if prod.committed.Load() >= want {
			if _, err := prod.stop(); err != nil {
				t.Fatal(err)
			}
		}
		return prod.committed.Load() < want || kills < 5 || exactlyOnceBacklog(t, e) > 1000
	}, nil)
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	produced := time.Since(start)
	p := faultStart(t, relayBin, e, env...)
	c := faultExpectExactlyOnce(t, e, committed, 3*time.Minute, p)
	t.Logf("%s: %d events committed and delivered under %d kills in %s, the rest %s later; ClickHouse rows %d (repeated %d), FINAL %d",
		topo, committed, kills, produced.Round(time.Millisecond), (time.Since(start) - produced).Round(time.Millisecond), c.Rows, c.Rows-c.Distinct, c.Final)
	if topo != topology.Single {
		expectNoRepeat(t, e, committed)
	}
	testenv.Eventually(t, time.Minute, "the slot's lag below 1 MiB", func() error {
		lag, err := e.SlotLag(ctx)
		if err != nil {
			return err
		}
		if lag > 1<<20 {
			return fmt.Errorf("lag %d bytes", lag)
		}
		return nil
	})
}
