package integration

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outbox-relay/relay/internal/payload"
	"github.com/outbox-relay/relay/internal/standby"
	"github.com/outbox-relay/relay/internal/testenv"
	"github.com/outbox-relay/relay/internal/topology"
)

// Log lines of a failover.
const (
	logResumedSynced = `"message":"resuming from a failover slot synchronized from the former primary"`
	logSlotCreated   = `"message":"replication slot was missing: created it`
	logEventsLost    = `events may have been lost`
	logRebuiltBatch  = `"message":"rebuilt a recorded batch; writing it again with the same identity"`
	logRebuiltOther  = `"message":"a recorded batch came out different`
)

// failoverEvents is how many events each failover scenario commits.
const failoverEvents = 50_000

// A primary failover on PostgreSQL 17 with a failover slot: 50,000 events
// are committed while the primary is SIGKILLed mid-stream and its physical
// standby promoted. The relay, given both servers with
// target_session_attrs=read-write, reconnects to the promoted standby and
// streams on from the slot it synchronized: every event arrives, no backfill
// runs, and a plain count() on the replicated topology equals the events
// committed (no FINAL). In message mode nothing is lost either.
//
// Version-dependent: PostgreSQL 17's failover pair (scripts/services.sh
// pg17-pair-up); the pair is made anew after each run.
func TestFailoverResumesOnPromotedStandby(t *testing.T) {
	for _, mode := range []string{"table", "message"} {
		t.Run(mode, func(t *testing.T) { failoverScenario(t, failoverRun{mode: mode, failoverSlot: true}) })
	}
}

// Without a failover slot, as on PostgreSQL 15 and 16 (here: 17 with
// RELAY_SLOT_FAILOVER=false), the promoted standby has no slot: the relay
// creates one and backfills from the outbox table. In table mode nothing is
// lost; events delivered but not yet deleted arrive again and collapse in
// FINAL.
func TestFailoverWithoutFailoverSlotBackfills(t *testing.T) {
	failoverScenario(t, failoverRun{mode: "table"})
}

// The same on a real PostgreSQL 15 primary and its synchronous physical
// standby (scripts/services.sh pg15-pair-up), which cannot keep a logical
// slot across a promotion: the relay reconnects to the promoted standby,
// finds no slot, creates it and backfills, and every committed event
// arrives (counted through FINAL and uniqExact).
//
// Version-dependent: PostgreSQL 15's pair; made anew after each run.
func TestFailoverOnPostgres15Backfills(t *testing.T) {
	failoverScenario(t, failoverRun{mode: "table", pg15: true})
}

// The worst timing of a failover for exactly-once delivery: the relay dies
// just after ClickHouse took a batch (failpoint after-sink-write: its
// record pending, its rows not deleted, its position not confirmed) and the
// primary dies with it. The relay started on the promoted standby streams
// from the synchronized slot, which may be behind the primary's, and must
// rebuild that batch and the ones before it from their records (on the
// standby: the relay's writes wait for it), so that ClickHouse drops them as
// repeats: a plain count() still equals the events committed.
func TestFailoverWorstTiming(t *testing.T) {
	testenv.NeedFailoverPair(t)
	bin, err := testenv.BuildRelay(t.TempDir(), "failpoints")
	if err != nil {
		t.Fatalf("build relay with failpoints: %v", err)
	}
	failoverScenario(t, failoverRun{mode: "table", failoverSlot: true, failpointBin: bin})
}

// failoverRun is one failover scenario.
type failoverRun struct {
	mode string // "table" or "message"
	// failoverSlot: the relay's slot is a failover slot (else
	// RELAY_SLOT_FAILOVER=false).
	failoverSlot bool
	// failpointBin, when set, is a relay binary that dies at
	// after-sink-write just before the primary does; a new relay resumes
	// on the promoted standby.
	failpointBin string
	// pg15: on the PostgreSQL 15 pair (else 17's).
	pg15 bool
}

// failoverScenario kills the pair's primary mid-stream and checks what the
// relay delivered.
func failoverScenario(t *testing.T, run failoverRun) {
	mode, failpointBin := run.mode, run.failpointBin
	need, version := testenv.NeedFailoverPair, 17
	if run.pg15 {
		need, version = testenv.NeedPostgres15Pair, 15
	}
	pair := need(t)
	if v := testenv.ServerVersionNum(t, pair.Primary) / 10000; v != version {
		t.Fatalf("the pair's primary runs PostgreSQL %d, want %d", v, version)
	}
	if os.Getenv("RELAY_SERVICES_DIR") == "" {
		t.Skip("RELAY_SERVICES_DIR not set: the test kills the pair's primary through scripts/services.sh")
	}
	e := testenv.NewOnAt(t, topology.Replicated, pair.Primary)
	// Registered after NewOnAt's cleanups, so it runs before them: the
	// databases are dropped on the new pair (as good as gone with the old).
	t.Cleanup(func() { pair.Renew(t) })
	ctx := context.Background()
	both := bothServers(t, pair, e.Name)
	extra := []string{"DATABASE_URL=" + both}
	if !run.failoverSlot {
		extra = append(extra, "RELAY_SLOT_FAILOVER=false")
	}
	if mode == "message" {
		extra = append(extra, "RELAY_MESSAGE_PREFIX="+msgPrefix)
	}
	var p *testenv.Process
	if failpointBin == "" {
		p = startRelay(t, e, extra...)
	} else {
		p = testenv.Start(t, failpointBin, e.RelayEnv(append(extra, "RELAY_FAILPOINT=after-sink-write", "RELAY_FAILPOINT_SKIP=20")...), "run")
	}
	waitLog(t, p, logStreaming, time.Minute)
	// The standby holds the slot before the failover (the relay's first
	// confirmation makes the copy persistent).
	prod := newFailoverProducer(t, both, mode)
	prod.commit(ctx, t, 100)
	e.WaitDelivered(t, 100, time.Minute, p)
	if run.failoverSlot {
		waitSyncedSlot(t, pair.Standby, e.Slot)
	}

	done := make(chan error, 1)
	go func() { done <- prod.run(ctx, failoverEvents) }()
	if failpointBin == "" {
		testenv.Eventually(t, 2*time.Minute, "a third of the events in ClickHouse", func() error {
			c, err := e.ClickHouseCounts(ctx)
			if err != nil {
				return err
			}
			if c.Distinct < failoverEvents/3 {
				return fmt.Errorf("%d delivered", c.Distinct)
			}
			return nil
		})
	} else if code := p.Wait(2 * time.Minute); code != -1 || !p.Exited() {
		t.Fatalf("the relay did not die at its failpoint (exit %d):\n%s", code, tail(p.Output(), 40))
	}
	before := len(p.Output())
	pair.KillPrimary(t)
	promote(t, pair.Standby)
	t.Logf("promoted at %s; the relay had confirmed %s", walPosition(t, pair.Standby), lastLogged(p.Output(), "acked_lsn"))
	if failpointBin != "" {
		p, before = startRelay(t, e, extra...), 0
	}
	if err := <-done; err != nil {
		t.Fatalf("producer: %v", err)
	}
	acked, uncertain := prod.outcome()
	t.Logf("%s mode: %d events acknowledged, %d in transactions cut by the failover", mode, len(acked), len(uncertain))

	var tags map[string]int
	testenv.Eventually(t, 3*time.Minute, "every acknowledged event in ClickHouse", func() error {
		if p.Exited() {
			t.Fatalf("relay exited:\n%s", p.Output())
		}
		var err error
		if tags, err = spineTags(ctx, e, false); err != nil {
			return err
		}
		missing := 0
		for tag := range acked {
			if tags[tag] == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d acknowledged events missing, e.g. transactions %s", missing, prod.missingWhere(tags, 5))
		}
		return nil
	})
	if mode == "table" {
		// The new primary's outbox empties: every delete is done there.
		testenv.Eventually(t, time.Minute, "the outbox table empty on the new primary", func() error {
			n, err := rowsOn(ctx, pair.Standby, e.Name)
			if err != nil {
				return err
			}
			if n != 0 {
				return fmt.Errorf("%d rows", n)
			}
			return nil
		})
	}
	c, err := e.ClickHouseCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := p.Output()[before:] // what the relay logged since the failover
	if !run.failoverSlot {
		// The slot was not on the standby: created again, and the table's
		// rows backfilled; repeats collapse in FINAL.
		t.Logf("without a failover slot: count() %d, FINAL %d, distinct %d, acknowledged %d", c.Rows, c.Final, c.Distinct, len(acked))
		if !strings.Contains(out, logSlotCreated) || !strings.Contains(out, logBackfillDone) {
			t.Errorf("want the slot created again and a backfill after the failover:\n%s", tail(out, 40))
		}
		if c.Final != c.Distinct || c.Distinct < uint64(len(acked)) {
			t.Errorf("FINAL %d, distinct %d, acknowledged %d: want FINAL = distinct >= acknowledged", c.Final, c.Distinct, len(acked))
		}
		return
	}
	if tags, err = spineTags(ctx, e, false); err != nil {
		t.Fatal(err)
	}
	for tag, n := range tags {
		if n != 1 {
			t.Errorf("event %s has %d rows in event_log (plain SELECT), want 1", tag, n)
		}
		if !acked[tag] && !uncertain[tag] {
			t.Errorf("event %s in event_log was never committed", tag)
		}
	}
	if c.Rows != c.Distinct || c.Rows < uint64(len(acked)) {
		t.Errorf("count() = %d, uniqExact(event_id) = %d, acknowledged %d: want count() = the events committed", c.Rows, c.Distinct, len(acked))
	}
	if !strings.Contains(out, logResumedSynced) {
		t.Errorf("the relay did not log that it resumed from the synchronized slot:\n%s", tail(out, 40))
	}
	if failpointBin != "" {
		// The batch ClickHouse took when the relay died, at least, was
		// written again with its recorded identity, and none differently.
		rebuilt := strings.Count(out, logRebuiltBatch)
		t.Logf("the relay on the promoted standby rebuilt %d recorded batches", rebuilt)
		if rebuilt == 0 || strings.Contains(out, logRebuiltOther) {
			t.Errorf("want recorded batches rebuilt with their identity, none differently:\n%s", tail(out, 40))
		}
	}
	for _, bad := range []string{logBackfillDone, logBackfillResumed, logSlotCreated, logEventsLost} {
		if strings.Contains(out, bad) {
			t.Errorf("the relay logged %s after the failover:\n%s", bad, tail(out, 40))
		}
	}
}

// bothServers is a URL of db naming the pair's two servers, for the one
// that accepts writes.
func bothServers(t *testing.T, pair testenv.FailoverPair, db string) string {
	t.Helper()
	u, err := url.Parse(pair.Primary)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = testenv.Host(t, pair.Primary) + "," + testenv.Host(t, pair.Standby)
	u.Path = "/" + db
	q := u.Query()
	q.Set("target_session_attrs", "read-write")
	u.RawQuery = q.Encode()
	return u.String()
}

// promote promotes the standby of url and waits until it accepts writes.
func promote(t *testing.T, standbyURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, standbyURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_promote: %t, %v", ok, err)
	}
}

// rowsOn counts outbox_event on the server of serverURL, database db.
func rowsOn(ctx context.Context, serverURL, db string) (int64, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return 0, err
	}
	u.Path = "/" + db
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close(ctx) }()
	var n int64
	err = conn.QueryRow(ctx, "SELECT count(*) FROM outbox_event").Scan(&n)
	return n, err
}

// walPosition is pg_current_wal_lsn() of the server of url.
func walPosition(t *testing.T, url string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err.Error()
	}
	defer func() { _ = conn.Close(ctx) }()
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return err.Error()
	}
	return lsn
}

// lastLogged is the last value of key in the JSON log out.
func lastLogged(out, key string) string {
	i := strings.LastIndex(out, `"`+key+`":"`)
	if i < 0 {
		return "-"
	}
	v := out[i+len(key)+4:]
	return v[:strings.IndexByte(v, '"')]
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// failoverProducer commits tagged events (rows, or messages in message
// mode) in transactions of 100 through the read-write server of both, each
// acknowledged only once the standby has it (as with synchronous
// replication): a commit the failover cut is "uncertain".
type failoverProducer struct {
	pool *pgxpool.Pool
	w    *standby.Waiter
	mode string
	next int

	mu        sync.Mutex
	acked     map[string]bool
	uncertain map[string]bool
	// where says where each transaction (by its first tag) committed:
	// server port and WAL position, for the failure messages.
	where map[string]string
}

func newFailoverProducer(t *testing.T, both, mode string) *failoverProducer {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), both)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &failoverProducer{pool: pool, w: standby.New(pool), mode: mode, acked: map[string]bool{}, uncertain: map[string]bool{}, where: map[string]string{}}
}

// commit commits n events or fails t.
func (p *failoverProducer) commit(ctx context.Context, t *testing.T, n int) {
	t.Helper()
	tags := p.tags(n)
	if err := p.tx(ctx, tags); err != nil {
		t.Fatalf("commit %d events: %v", n, err)
	}
	p.record(tags, true)
}

// run commits until total more events are acknowledged; a transaction that
// fails (the primary is gone, the standby not promoted yet) is retried with
// new events once a primary takes writes again, for up to two minutes.
func (p *failoverProducer) run(ctx context.Context, total int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for done := 0; done < total; {
		tags := p.tags(min(100, total-done))
		if err := p.tx(ctx, tags); err != nil {
			p.record(tags, false)
			if time.Now().After(deadline) {
				return fmt.Errorf("no commit for 2 minutes: %w", err)
			}
			if err := testenv.Poll(time.Until(deadline), func() error { return p.writable(ctx) }); err != nil {
				return fmt.Errorf("no writable primary for 2 minutes: %w", err)
			}
			continue
		}
		p.record(tags, true)
		done += len(tags)
	}
	return nil
}

func (p *failoverProducer) tags(n int) []string {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = fmt.Sprintf("fo%06d", p.next)
		p.next++
	}
	return tags
}

func (p *failoverProducer) record(tags []string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tag := range tags {
		if ok {
			p.acked[tag] = true
		} else {
			p.uncertain[tag] = true
		}
	}
}

// missingWhere describes up to n acknowledged transactions of which tags
// has no event.
func (p *failoverProducer) missingWhere(tags map[string]int, n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for first, at := range p.where {
		if p.acked[first] && tags[first] == 0 && len(out) < n {
			out = append(out, first+" at "+at)
		}
	}
	return strings.Join(out, ", ")
}

// outcome returns the acknowledged and the uncertain events' tags.
func (p *failoverProducer) outcome() (acked, uncertain map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked, p.uncertain
}

// tx commits one transaction of tags, then waits for the standby.
// writable reports whether the pool reaches a server that takes writes.
func (p *failoverProducer) writable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var recovery bool
	if err := p.pool.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&recovery); err != nil {
		return err
	}
	if recovery {
		return errors.New("the server is a standby")
	}
	return nil
}

func (p *failoverProducer) tx(ctx context.Context, tags []string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if p.mode == "table" {
			_, err := tx.Exec(ctx, `INSERT INTO outbox_event (event_type, environment, event_context)
				SELECT $1, $2, jsonb_build_object('tag', tag) FROM unnest($3::text[]) AS tag`, spineEventType, spineEnvironment, tags)
			return err
		}
		b := &pgx.Batch{}
		for _, tag := range tags {
			pl := payload.Append(nil, payload.Fields{ID: uuid.New(), OccurredAtMicros: time.Now().UnixMicro(), MetadataVersion: 1,
				Type: []byte(spineEventType), Environment: []byte(spineEnvironment), Context: []byte(`{"tag":"` + tag + `"}`)}, nil)
			b.Queue("SELECT pg_logical_emit_message(true, $1::text, $2::bytea)", msgPrefix, pl)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return err
	}
	var at string
	if err := p.pool.QueryRow(ctx, "SELECT inet_server_port() || ' ' || pg_current_wal_lsn()").Scan(&at); err == nil {
		p.mu.Lock()
		p.where[tags[0]] = at
		p.mu.Unlock()
	}
	if err := p.w.Wait(ctx); err != nil {
		return errors.Join(errors.New("committed, not known to be on the standby"), err)
	}
	return nil
}
