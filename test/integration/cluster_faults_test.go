package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
)

// Faults of the ClickHouse cluster (scripts/services.sh cluster-up: 2
// shards × 2 replicas and ZooKeeper) under a running relay. Each test has
// the shared cluster to itself (testenv.NewOnAlone) and restarts what it
// stopped. Exactly-once without FINAL is the business of the replay tests;
// these check that nothing is lost, nothing is acknowledged while
// ClickHouse refuses, and the relay delivers everything afterwards without
// a restart.

// clusterRows is count() FINAL and uniqExact(event_id) of db.table on
// replica i alone.
func clusterRows(t *testing.T, c *testenv.Cluster, i int, db, table string) (final, distinct uint64, err error) {
	conn := c.Conn(t, i)
	defer func() { _ = conn.Close() }()
	err = conn.QueryRow(context.Background(), fmt.Sprintf("SELECT count(), uniqExact(event_id) FROM %s.%s FINAL", db, table)).Scan(&final, &distinct)
	return final, distinct, err
}

// clusterWaitRows waits until replica i holds at least n distinct events.
func clusterWaitRows(t *testing.T, e *testenv.Env, i int, n uint64, p *testenv.Process) {
	t.Helper()
	testenv.Eventually(t, time.Minute, fmt.Sprintf("replica %d holds %d events", i, n), func() error {
		faultAlive(t, p, "while waiting for rows")
		_, d, err := clusterRows(t, e.Cluster, i, e.Name, e.Layout.LocalTable("event_log"))
		if err == nil && d < n {
			err = fmt.Errorf("%d events", d)
		}
		return err
	})
}

// clusterOutage holds a fault for d once the relay has logged a failed
// insert: the relay stays up and confirms nothing (the confirmed position
// is read once the write that was in flight when the fault began has had
// its first seconds).
func clusterOutage(t *testing.T, e *testenv.Env, p *testenv.Process, retriesBefore int, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	testenv.Eventually(t, time.Minute, "the relay retries a failed insert", func() error {
		faultAlive(t, p, "during the outage")
		if strings.Count(p.Output(), faultLogSinkRetrying) > retriesBefore {
			return nil
		}
		return fmt.Errorf("no new %s", faultLogSinkRetrying)
	})
	settle := 3 * time.Second
	faultHold(t, settle, 500*time.Millisecond, func() { faultAlive(t, p, "during the outage") })
	base, err := readFaultSlot(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	faultHold(t, d-settle, time.Second, func() {
		faultAlive(t, p, "during the outage")
		s, err := readFaultSlot(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		if s.Confirmed != base.Confirmed {
			t.Fatalf("confirmed_flush_lsn moved from %d to %d while ClickHouse refused every insert", base.Confirmed, s.Confirmed)
		}
	})
}

// The replica the relay inserts into is killed (SIGKILL) mid-stream: the
// relay goes on through the other replica; relay status shows the dead one;
// restarted, it catches up with everything.
func TestClusterReplicaKilled(t *testing.T) {
	e := testenv.NewOnAlone(t, topology.Replicated)
	c := e.Cluster
	p := startRelay(t, e)
	waitLog(t, p, faultLogStreaming, 30*time.Second)
	prod := startFaultProducer(e, "replica", 20, 20*time.Millisecond)
	prod.stopOnCleanup(t)
	clusterWaitRows(t, e, 1, 200, p)

	c.Services(t, "stop-replica", "1", "--kill")
	t.Cleanup(func() { c.Services(t, "start-replica", "1") })
	_, before, err := clusterRows(t, c, 2, e.Name, "event_log")
	if err != nil {
		t.Fatal(err)
	}
	clusterWaitRows(t, e, 2, before+200, p) // delivered through replica 2

	code, r, out := relayStatus(t, e.RelayEnv())
	if r == nil || len(r.Replicas) != len(c.Replicas) {
		t.Fatalf("relay status (exit %d) lists no replicas:\n%s", code, out)
	}
	host1 := testenv.Host(t, c.Replicas[0])
	for _, rep := range r.Replicas {
		if rep.Host == host1 && (rep.Answers || code != statusExitWarning) {
			t.Errorf("relay status exit %d, replica %s answers=%v; want WARNING and not answering", code, host1, rep.Answers)
		}
		if rep.Host != host1 && (!rep.Answers || rep.DelaySeconds == nil) {
			t.Errorf("relay status: replica %s answers=%v delay=%v, want it answering with a delay", rep.Host, rep.Answers, rep.DelaySeconds)
		}
	}

	c.Services(t, "start-replica", "1")
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	faultExpectExactlyOnce(t, e, committed, 2*time.Minute, p)
	for _, i := range []int{1, 2} {
		testenv.Eventually(t, time.Minute, fmt.Sprintf("replica %d holds each of the %d events", i, committed), func() error {
			final, distinct, err := clusterRows(t, c, i, e.Name, "event_log")
			if err == nil && (final != uint64(committed) || distinct != uint64(committed)) {
				err = fmt.Errorf("FINAL %d, distinct %d", final, distinct)
			}
			return err
		})
	}
	faultAlive(t, p, "after the replica came back")
}

// ZooKeeper is stopped for 30 s under load: every insert fails (the
// replicated table is read-only), the relay retries, confirms nothing, and
// delivers everything once ZooKeeper is back, without a restart.
func TestClusterZooKeeperDown(t *testing.T) {
	e := testenv.NewOnAlone(t, topology.Replicated)
	c := e.Cluster
	p := startRelay(t, e)
	waitLog(t, p, faultLogStreaming, 30*time.Second)
	prod := startFaultProducer(e, "zookeeper", 10, 50*time.Millisecond)
	prod.stopOnCleanup(t)
	clusterWaitRows(t, e, 1, 100, p)

	retries := strings.Count(p.Output(), faultLogSinkRetrying)
	c.Services(t, "stop-zookeeper")
	t.Cleanup(func() { c.Services(t, "start-zookeeper") })
	clusterOutage(t, e, p, retries, 30*time.Second)
	c.Services(t, "start-zookeeper")

	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	faultExpectExactlyOnce(t, e, committed, 3*time.Minute, p)
	faultAlive(t, p, "after ZooKeeper came back")
}

// A whole shard (both its replicas) is down under load: the synchronous
// Distributed insert fails, the relay retries and confirms nothing; the
// shard back, everything is delivered without a restart.
func TestClusterShardDown(t *testing.T) {
	e := testenv.NewOnAlone(t, topology.Sharded)
	c := e.Cluster
	p := startRelay(t, e)
	waitLog(t, p, faultLogStreaming, 30*time.Second)
	prod := startFaultProducer(e, "shard", 10, 50*time.Millisecond)
	prod.stopOnCleanup(t)
	clusterWaitRows(t, e, 3, 50, p)

	retries := strings.Count(p.Output(), faultLogSinkRetrying)
	c.Services(t, "stop-replica", "3")
	c.Services(t, "stop-replica", "4")
	t.Cleanup(func() { c.Services(t, "start-replica", "3"); c.Services(t, "start-replica", "4") })
	clusterOutage(t, e, p, retries, 15*time.Second)
	c.Services(t, "start-replica", "3")
	c.Services(t, "start-replica", "4")

	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	faultExpectExactlyOnce(t, e, committed, 3*time.Minute, p)
	faultAlive(t, p, "after the shard came back")
}
