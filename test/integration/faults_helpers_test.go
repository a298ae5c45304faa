package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
)

// Helpers of the fault-injection tests (faults_*_test.go). Their names
// start with fault so that they stay out of the way of the other files of
// the package.

// Log lines (LOG_FORMAT=json) the fault tests wait for.
const (
	faultLogStreaming    = `"message":"streaming"`
	faultLogFlushed      = `"message":"flushed"`
	faultLogReconnecting = `"message":"stream interrupted; reconnecting"`
	faultLogStandingBy   = `standing by`
	faultLogSinkRetrying = `"message":"sink write failed; retrying"`
	faultLogSlotLost     = `replication slot is lost`
	faultLogSlotCreated  = `replication slot was missing: created it`
	// The relay gave up on a batch or on deleting delivered rows.
	faultLogStoppedBeforeSink = `"message":"stopped before buffered events reached the sink; they will be streamed again"`
	faultLogRowsLeft          = `"message":"delivered rows left in the outbox table"`
)

// producer commits transactions until stopped and counts what it
// committed. Statements are never cancelled: one cancelled on the client
// may still commit on the server and would make the count wrong.
type producer struct {
	committed atomic.Int64
	txs       atomic.Int64
	stopc     chan struct{}
	once      sync.Once
	wg        sync.WaitGroup
	err       error
}

// producerTx is the i-th transaction: one INSERT statement and the number
// of events it writes.
type producerTx func(i int) (sql string, args []any, events int)

// startProducer commits tx(0), tx(1), ... every pace (back to back when
// pace is zero).
func startProducer(e *testenv.Env, pace time.Duration, tx producerTx) *producer {
	p := &producer{stopc: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var tick <-chan time.Time
		if pace > 0 {
			tk := time.NewTicker(pace)
			defer tk.Stop()
			tick = tk.C
		}
		for i := 0; ; i++ {
			select {
			case <-p.stopc:
				return
			default:
			}
			if tick != nil {
				select {
				case <-p.stopc:
					return
				case <-tick:
				}
			}
			sql, args, n := tx(i)
			if _, err := e.PG.Exec(context.Background(), sql, args...); err != nil {
				p.err = fmt.Errorf("producer tx %d: %w", i, err)
				return
			}
			p.committed.Add(int64(n))
			p.txs.Add(1)
		}
	}()
	return p
}

// startFaultProducer commits a transaction of perTx small events, tagged
// tag, every pace (back to back when pace is zero).
func startFaultProducer(e *testenv.Env, tag string, perTx int, pace time.Duration) *producer {
	return startProducer(e, pace, func(i int) (string, []any, int) {
		return `INSERT INTO outbox_event (event_type, environment, event_context)
			SELECT 'fault', 'test', jsonb_build_object('tag', $1::text, 'tx', $2::int, 'n', g)
			FROM generate_series(1, $3::int) g`, []any{tag, i, perTx}, perTx
	})
}

// stop ends the producer after its current transaction and returns how
// many events it committed.
func (p *producer) stop() (int64, error) {
	p.once.Do(func() { close(p.stopc) })
	p.wg.Wait()
	return p.committed.Load(), p.err
}

// stopOnCleanup stops p when the test ends, in case it failed early.
func (p *producer) stopOnCleanup(t *testing.T) {
	t.Cleanup(func() { _, _ = p.stop() })
}

// faultInsert commits one transaction of n events tagged tag.
func faultInsert(ctx context.Context, t *testing.T, e *testenv.Env, tag string, n int) {
	t.Helper()
	_, err := e.PG.Exec(ctx, `INSERT INTO outbox_event (event_type, environment, event_context)
		SELECT 'fault', 'test', jsonb_build_object('tag', $1::text, 'n', g) FROM generate_series(1, $2::int) g`, tag, n)
	if err != nil {
		t.Fatalf("insert %d events %q: %v", n, tag, err)
	}
}

// faultExec runs a statement on the test's database.
func faultExec(ctx context.Context, t *testing.T, e *testenv.Env, sql string, args ...any) {
	t.Helper()
	if _, err := e.PG.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// faultStart runs `relay run` from bin on e with RelayEnv(extra...).
func faultStart(t *testing.T, bin string, e *testenv.Env, extra ...string) *testenv.Process {
	t.Helper()
	return testenv.Start(t, bin, e.RelayEnv(extra...), "run")
}

// faultAlive fails the test when p has exited.
func faultAlive(t *testing.T, p *testenv.Process, when string) {
	t.Helper()
	if p.Exited() {
		t.Fatalf("relay exited %s:\n%s", when, p.Output())
	}
}

// faultHold keeps a fault in place for d: every tick it calls check, which
// fails the test when something is wrong (typically: the relay died).
func faultHold(t *testing.T, d, tick time.Duration, check func()) {
	t.Helper()
	end := time.NewTimer(d)
	defer end.Stop()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		select {
		case <-end.C:
			check()
			return
		case <-tk.C:
			check()
		}
	}
}

// faultExpectExactlyOnce waits until ClickHouse holds want distinct events
// and the outbox table is empty, then until event_log FINAL (the documented
// read path) counts exactly want rows. It returns the final counts.
func faultExpectExactlyOnce(t *testing.T, e *testenv.Env, want int64, timeout time.Duration, procs ...*testenv.Process) testenv.Counts {
	t.Helper()
	ctx := context.Background()
	c := e.WaitDelivered(t, uint64(want), timeout, procs...)
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("event_log FINAL counts each of the %d events once", want), func() error {
		var err error
		if c, err = e.ClickHouseCounts(ctx); err != nil {
			return err
		}
		if c.Distinct != uint64(want) {
			t.Fatalf("ClickHouse holds %d distinct events, %d were committed", c.Distinct, want)
		}
		if c.Final != uint64(want) {
			return fmt.Errorf("FINAL count %d, want %d (rows %d, distinct %d)", c.Final, want, c.Rows, c.Distinct)
		}
		return nil
	})
	if n, err := e.OutboxRows(ctx); err != nil || n != 0 {
		t.Fatalf("outbox_event holds %d rows (%v) after delivery, want 0", n, err)
	}
	return c
}

// faultSlot is the test slot's row of pg_replication_slots.
type faultSlot struct {
	Exists    bool
	ActivePID int32 // 0 when inactive
	Confirmed int64 // confirmed_flush_lsn as a byte position
	WALStatus string
}

func readFaultSlot(ctx context.Context, e *testenv.Env) (faultSlot, error) {
	var (
		s         faultSlot
		pid       *int32
		confirmed *int64
		walStatus *string
	)
	err := e.PG.QueryRow(ctx, `SELECT active_pid, (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint, wal_status
		FROM pg_replication_slots WHERE slot_name = $1`, e.Slot).Scan(&pid, &confirmed, &walStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	s.Exists = true
	if pid != nil {
		s.ActivePID = *pid
	}
	if confirmed != nil {
		s.Confirmed = *confirmed
	}
	if walStatus != nil {
		s.WALStatus = *walStatus
	}
	return s, nil
}

// faultWaitActive waits until a walsender streams the test's slot and
// returns its pid.
func faultWaitActive(t *testing.T, e *testenv.Env, timeout time.Duration, procs ...*testenv.Process) int32 {
	t.Helper()
	var pid int32
	testenv.Eventually(t, timeout, "a walsender streaming the slot", func() error {
		for _, p := range procs {
			faultAlive(t, p, "while waiting for its walsender")
		}
		s, err := readFaultSlot(context.Background(), e)
		if err != nil {
			return err
		}
		if s.ActivePID == 0 {
			return errors.New("slot not active")
		}
		pid = s.ActivePID
		return nil
	})
	return pid
}

// faultCurrentLSN is pg_current_wal_insert_lsn() as a byte position: past
// every record inserted so far (pg_current_wal_lsn() may lag behind the
// commit of an asynchronous commit).
func faultCurrentLSN(ctx context.Context, t *testing.T, e *testenv.Env) int64 {
	t.Helper()
	var lsn int64
	if err := e.PG.QueryRow(ctx, "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// faultServerSetting sets a server-wide parameter with ALTER SYSTEM and
// waits until new sessions see it. The returned restore (RESET) runs at the
// latest in t.Cleanup. Tests using it must not be parallel.
func faultServerSetting(t *testing.T, e *testenv.Env, name, value string) (restore func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alter := func(ctx context.Context, sql string) error {
		c, err := pgx.Connect(ctx, e.ServerDatabaseURL)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close(ctx) }()
		if _, err := c.Exec(ctx, sql); err != nil {
			return err
		}
		_, err = c.Exec(ctx, "SELECT pg_reload_conf()")
		return err
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := alter(cctx, "ALTER SYSTEM RESET "+pgx.Identifier{name}.Sanitize()); err != nil {
				t.Errorf("restore %s: %v", name, err)
			}
		})
	}
	t.Cleanup(restore)
	if err := alter(ctx, "ALTER SYSTEM SET "+pgx.Identifier{name}.Sanitize()+" = "+quoteFaultLiteral(value)); err != nil {
		t.Fatalf("set %s: %v", name, err)
	}
	testenv.Eventually(t, 10*time.Second, name+" = "+value, func() error {
		c, err := pgx.Connect(ctx, e.ServerDatabaseURL)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close(ctx) }()
		var got string
		if err := c.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
			return err
		}
		if got != value {
			return fmt.Errorf("still %s", got)
		}
		return nil
	})
	return restore
}

func quoteFaultLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// faultExitCode waits for p to exit and returns its code; it fails the test
// when p is still running after timeout.
func faultExitCode(t *testing.T, p *testenv.Process, timeout time.Duration) int {
	t.Helper()
	code := p.Wait(timeout)
	if !p.Exited() {
		t.Fatalf("relay still running %s later:\n%s", timeout, p.Output())
	}
	return code
}

// faultMiB formats bytes.
func faultMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// faultPoll polls cond until it returns nil or timeout passes, and returns
// cond's last error (for tests that add evidence before failing).
func faultPoll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

// faultStacks ends p with SIGQUIT (the Go runtime prints every goroutine's
// stack) and returns the stacks that run the relay's own code: where a hung
// relay waits.
func faultStacks(t *testing.T, p *testenv.Process) string {
	t.Helper()
	before := len(p.Output())
	if err := p.Signal(syscall.SIGQUIT); err != nil {
		return "SIGQUIT: " + err.Error()
	}
	p.Wait(10 * time.Second)
	out := p.Output()[before:]
	var keep []string
	for _, g := range strings.Split(out, "\n\n") {
		if !strings.HasPrefix(g, "goroutine ") || !strings.Contains(g, "outbox-relay/relay/internal/") {
			continue
		}
		// The header and the calls of named packages, without runtime
		// frames and file lines.
		lines := strings.Split(g, "\n")
		short := []string{lines[0]}
		for _, l := range lines[1:] {
			if i := strings.LastIndex(l, "("); i > 0 && (strings.HasPrefix(l, "github.com/") || strings.HasPrefix(l, "golang.org/")) {
				short = append(short, "  "+l[:i])
			}
		}
		keep = append(keep, strings.Join(short, "\n"))
	}
	return "goroutines of the relay at SIGQUIT:\n" + strings.Join(keep, "\n\n")
}

// faultWaitFlushes waits until ClickHouse's row count has grown n times
// (each growth is at least one flush of p).
func faultWaitFlushes(t *testing.T, e *testenv.Env, p *testenv.Process, n int) {
	t.Helper()
	ctx := context.Background()
	last, err := e.ClickHouseCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	testenv.Eventually(t, time.Minute, fmt.Sprintf("%d new flushes in ClickHouse", n), func() error {
		faultAlive(t, p, "while waiting for flushes")
		c, err := e.ClickHouseCounts(ctx)
		if err != nil {
			return err
		}
		if c.Rows > last.Rows {
			seen++
			last = c
		}
		if seen < n {
			return fmt.Errorf("%d of %d flushes seen (rows %d)", seen, n, c.Rows)
		}
		return nil
	})
}

// faultKillStorm starts the relay (`relay run` of relayBin with
// RelayEnv(settings...)) and SIGKILLs it after 2–4 s (rng), again and
// again while more(kills) holds; started, when set, runs after each start
// (e.g. to wait for the first start's backfill). It returns the kills.
func faultKillStorm(t *testing.T, e *testenv.Env, rng *rand.Rand, settings []string, more func(kills int) bool, started func(p *testenv.Process, kills int)) int {
	t.Helper()
	kills := 0
	for more(kills) {
		p := faultStart(t, relayBin, e, settings...)
		if started != nil {
			started(p, kills)
		}
		faultHold(t, time.Duration(2000+rng.IntN(2000))*time.Millisecond, 50*time.Millisecond, func() {
			faultAlive(t, p, fmt.Sprintf("before kill %d", kills+1))
		})
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.Wait(10 * time.Second)
		kills++
	}
	return kills
}
