package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
)

// streamsConfig is the three streams of TestThreeStreamsKillStorm: the
// Django outbox into its own table, a billing outbox under a column map
// into another, and outbox_event routed by event_type, one table each.
const streamsConfig = `# three outbox tables, one slot
streams:
  - name: app
    outbox: public.core_outboxevent
    ignore: [processed]
    clickhouse_table: app_events
  - name: billing
    outbox: billing.outbox
    columns: {id: ref, event_type: kind, event_context: body, event_date_time: at}
    constants: {environment: "${BILLING_ENV}", metadata_version: "3"}
    clickhouse_table: billing_events
  - name: routed
    outbox: outbox_event
    clickhouse_table: "events_{event_type}"
    max_tables: 5
`

// streamsTypes are the routed stream's event types: five tables.
var streamsTypes = []string{"user.created", "user.deleted", "order.paid", "order.refunded", "page.viewed"}

// streamsCounts are the events committed per destination table.
type streamsCounts struct {
	mu     sync.Mutex
	tables map[string]int64
}

func (c *streamsCounts) add(table string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tables[table] += n
}

// TestThreeStreamsKillStorm: one relay, a config file with three streams
// — two outbox tables, and one routed by event_type into five tables —
// 100,000 events (RELAY_STREAMS_EVENTS) in transactions that touch
// several outbox tables, the relay SIGKILLed every 2–4 s. Each table holds
// exactly its events (plain count() on the replicated topology, through
// FINAL on a single 18.16 server), and the server has one slot.
func TestThreeStreamsKillStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("minutes of load per topology")
	}
	t.Parallel()
	testenv.Skip(t)
	want := int64(100_000)
	if v := os.Getenv("RELAY_STREAMS_EVENTS"); v != "" {
		if _, err := fmt.Sscan(v, &want); err != nil {
			t.Fatalf("RELAY_STREAMS_EVENTS=%q: %v", v, err)
		}
	}
	for _, topo := range streamsTopologies {
		t.Run(string(topo), func(t *testing.T) {
			streamsStorm(t, topo, want)
		})
	}
}

func streamsStorm(t *testing.T, topo topology.Topology, want int64) {
	e := testenv.NewOn(t, topo)
	ctx := context.Background()
	faultExec(ctx, t, e, djangoOutboxDDL)
	faultExec(ctx, t, e, `CREATE SCHEMA billing`)
	faultExec(ctx, t, e, `CREATE TABLE billing.outbox (ref text PRIMARY KEY, kind text NOT NULL, body jsonb NOT NULL, at timestamptz NOT NULL DEFAULT now())`)
	file := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(file, []byte(streamsConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	settings := []string{"RELAY_CONFIG=" + file, "BILLING_ENV=prod", "CH_OUTBOX_BATCH_SIZE=5000"}
	if code, out := runRelayCmd(t, 3*time.Minute, e.RelayEnv(settings...), "migrate"); code != 0 {
		t.Fatalf("relay migrate: exit %d\n%s", code, out)
	}

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("random seed %d", seed)
	counts := &streamsCounts{tables: map[string]int64{}}
	txRand := rand.New(rand.NewPCG(seed, 1))
	prod := startProducer(e, 0, func(i int) (string, []any, int) {
		a, b, r := 1+txRand.IntN(20), txRand.IntN(10), 1+txRand.IntN(20)
		typ := streamsTypes[txRand.IntN(len(streamsTypes))]
		// One statement, one transaction, three outbox tables.
		sql := `WITH a AS (INSERT INTO core_outboxevent (event_type, event_date_time, environment, event_context, metadata_version)
				SELECT 'app.event', now(), 'prod', jsonb_build_object('tx', $1::int, 'n', g), 1 FROM generate_series(1, $2::int) g RETURNING 1),
			b AS (INSERT INTO billing.outbox (ref, kind, body)
				SELECT 'INV-' || $1::int || '-' || g, 'invoice', jsonb_build_object('tx', $1::int, 'n', g) FROM generate_series(1, $3::int) g RETURNING 1)
			INSERT INTO outbox_event (event_type, environment, event_context)
				SELECT $5::text, 'prod', jsonb_build_object('tx', $1::int, 'n', g) FROM generate_series(1, $4::int) g`
		// Counted before the commit: a transaction that fails stops the
		// producer and fails the test.
		counts.add("app_events", int64(a))
		counts.add("billing_events", int64(b))
		counts.add("events_"+sanitizeType(typ), int64(r))
		return sql, []any{i, a, b, r, typ}, a + b + r
	})
	prod.stopOnCleanup(t)

	backlog := func() int64 {
		var n int64
		if err := e.PG.QueryRow(ctx, `SELECT (SELECT count(*) FROM core_outboxevent) + (SELECT count(*) FROM billing.outbox) + (SELECT count(*) FROM outbox_event)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	kills := faultKillStorm(t, e, rng, settings, func(kills int) bool {
		if prod.committed.Load() >= want {
			if _, err := prod.stop(); err != nil {
				t.Fatal(err)
			}
		}
		return prod.committed.Load() < want || kills < 5 || backlog() > 1000
	}, func(p *testenv.Process, kills int) {
		if kills > 0 {
			return
		}
		// The first start creates the slot and delivers its snapshot
		// (the backfill, slowed here by the routed tables made ON
		// CLUSTER): backfilled rows carry no batch identity, and one
		// killed mid-way is delivered again (collapsed through FINAL
		// only; README, Delivery guarantee). The kills start once it is done.
		testenv.Eventually(t, 2*time.Minute, "the first start's backfill done", func() error {
			faultAlive(t, p, "during the backfill")
			var pending bool
			if err := e.PG.QueryRow(ctx, `SELECT backfill_pending FROM outbox_relay_state WHERE slot = $1`, e.Slot).Scan(&pending); err != nil {
				return err
			}
			if pending {
				return errors.New("backfill pending")
			}
			return nil
		})
	})
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	p := faultStart(t, relayBin, e, settings...)
	final := ""
	if topo == topology.Single {
		final = " FINAL"
	}
	err = testenv.Poll(4*time.Minute, func() error {
		faultAlive(t, p, "while draining")
		if n := backlog(); n != 0 {
			return fmt.Errorf("%d rows in the outbox tables", n)
		}
		counts.mu.Lock()
		defer counts.mu.Unlock()
		for table, n := range counts.tables {
			var got uint64
			if err := e.CH.QueryRow(ctx, "SELECT count() FROM "+table+final).Scan(&got); err != nil {
				return fmt.Errorf("%s: %w", table, err)
			}
			if got != uint64(n) {
				return fmt.Errorf("%s holds %d events, want %d", table, got, n)
			}
		}
		return nil
	})
	if err != nil {
		for table := range counts.tables {
			var dups string
			_ = e.CH.QueryRow(ctx, "SELECT toString(groupArray(5)(tuple(event_id, c, lsns, at))) FROM (SELECT event_id, count() AS c, groupArray(commit_lsn) AS lsns, groupArray(relayed_at) AS at FROM "+
				table+" GROUP BY event_id HAVING c > 1)").Scan(&dups)
			t.Logf("%s repeated: %s", table, dups)
		}
		t.Fatalf("every table holds exactly its events: %v\n%s", err, p.Output())
	}
	var total int64
	for table, n := range counts.tables {
		total += n
		var rows, distinct uint64
		if err := e.CH.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM "+table).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d events, %d rows without FINAL", table, n, rows)
		if topo != topology.Single && rows != uint64(n) {
			t.Errorf("%s: count() = %d without FINAL, want %d: a replay repeated rows", table, rows, n)
		}
		if distinct != uint64(n) {
			t.Errorf("%s: uniqExact(event_id) = %d, want %d", table, distinct, n)
		}
	}
	if total != committed || len(counts.tables) != 2+len(streamsTypes) {
		t.Errorf("counted %d events in %d tables, committed %d", total, len(counts.tables), committed)
	}
	var slots int
	if err := e.PG.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots`).Scan(&slots); err != nil {
		t.Fatal(err)
	}
	var ours int
	if err := e.PG.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()`).Scan(&ours); err != nil || ours != 1 {
		t.Errorf("%d slots for this database (%v), want one for the three streams", ours, err)
	}
	t.Logf("%s: %d events in %d transactions under %d kills", topo, committed, prod.txs.Load(), kills)
}

// sanitizeType is the routed table's part for an event type (the relay's
// sanitizing: letters, digits and underscores kept, the rest underscores).
func sanitizeType(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

var streamsTopologies = []topology.Topology{topology.Single, topology.Replicated}
