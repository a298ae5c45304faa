package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/payload"
)

// LatencyConfig is a steady-state producer.
type LatencyConfig struct {
	Rate int // events per second, one per transaction
	// StepRate, when set, makes the rate alternate between Rate and
	// StepRate every StepEvery: a load that changes in the middle of
	// batches.
	StepRate  int
	StepEvery time.Duration
	Duration  time.Duration
	Conns     int // producer connections
	Size      int // event_context bytes
	// Poll is how often the watcher looks for new events in ClickHouse.
	Poll time.Duration
	// Settle bounds the wait for the last events after the producer ends.
	Settle time.Duration
	// Dump, when set, receives "seq,commit_unix_ns,seen_unix_ns" lines.
	Dump string
	// SyncCommit runs the producer with synchronous_commit = on (the
	// PostgreSQL default; the private test servers default to off, which
	// delays the WAL flush the walsender waits for by up to
	// wal_writer_delay and so penalises the stream, not polling).
	SyncCommit bool
	// MessagePrefix, when set, makes the producer emit each event as a
	// transactional logical decoding message of this prefix (message mode)
	// instead of inserting a row.
	MessagePrefix string
}

// LatencyResult holds one end-to-end latency per event that arrived.
type LatencyResult struct {
	Sent     int
	Achieved float64         // events per second actually committed
	Lat      []time.Duration // sorted
	Missing  int             // not seen in ClickHouse within Settle
	// Tail is how long after the producer's last commit the last event
	// appeared: far above the flush interval means the system fell behind.
	Tail time.Duration
	// Resolution is the largest gap between two watcher polls: a latency
	// is known to within half of it.
	Resolution time.Duration
}

// Quantile returns the q-quantile (nearest rank) of the sorted latencies.
func (r *LatencyResult) Quantile(q float64) time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	i := int(q*float64(len(r.Lat))+0.5) - 1
	return r.Lat[min(max(i, 0), len(r.Lat)-1)]
}

// Label names the rate: "2000", or "500/2000" when it alternates.
func (c LatencyConfig) Label() string {
	if c.StepRate > 0 {
		return fmt.Sprintf("%d/%d", c.Rate, c.StepRate)
	}
	return strconv.Itoa(c.Rate)
}

// schedule is when each event is due, from the start: Rate per second,
// or Rate and StepRate in turns of StepEvery.
func (c LatencyConfig) schedule() []time.Duration {
	var due []time.Duration
	rate, phaseEnd := c.Rate, c.Duration
	if c.StepRate > 0 && c.StepEvery > 0 {
		phaseEnd = c.StepEvery
	}
	for t := time.Duration(0); t < c.Duration; {
		if t >= phaseEnd {
			if rate == c.Rate {
				rate = c.StepRate
			} else {
				rate = c.Rate
			}
			t, phaseEnd = phaseEnd, phaseEnd+c.StepEvery
			continue
		}
		due = append(due, t)
		t += time.Second / time.Duration(rate)
	}
	return due
}

// RunLatency produces cfg.Rate events per second for cfg.Duration, each in
// its own transaction, and measures for each event the time from its
// commit (when COMMIT returned to the producer) to when a watcher polling
// ClickHouse first saw it (the time that poll was sent, so the resolution
// is the poll period). Events are identified by their sequence number,
// stored in metadata_version.
func RunLatency(ctx context.Context, e *Env, cfg LatencyConfig) (LatencyResult, error) {
	due := cfg.schedule()
	total := len(due)
	committed := make([]int64, total+1) // unix ns by seq; written by producers
	seen := make([]int64, total+1)      // unix ns by seq; written by the watcher
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchDone := make(chan error, 1)
	w := &watcher{e: e, every: cfg.Poll, seen: seen}
	go func() { watchDone <- w.run(wctx) }()

	if err := produce(ctx, e, cfg, due, committed); err != nil {
		return LatencyResult{}, err
	}
	deadline := time.Now().Add(cfg.Settle)
	for w.count.Load() < int64(total) && time.Now().Before(deadline) {
		time.Sleep(cfg.Poll) // waiting for the watcher, bounded by Settle
	}
	stopWatch()
	if err := <-watchDone; err != nil {
		return LatencyResult{}, err
	}
	res := summarize(committed, seen)
	res.Resolution = time.Duration(w.maxGap)
	if cfg.Dump != "" {
		if err := dump(cfg.Dump, committed, seen); err != nil {
			return res, err
		}
	}
	return res, nil
}

func dump(path string, committed, seen []int64) error {
	var b strings.Builder
	b.WriteString("seq,commit_unix_ns,seen_unix_ns\n")
	for i := 1; i < len(committed); i++ {
		fmt.Fprintf(&b, "%d,%d,%d\n", i, committed[i], seen[i])
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func summarize(committed, seen []int64) LatencyResult {
	res := LatencyResult{Sent: len(committed) - 1}
	first, last, lastSeen := int64(0), int64(0), int64(0)
	for i := 1; i < len(committed); i++ {
		c := committed[i]
		if first == 0 || c < first {
			first = c
		}
		last = max(last, c)
		if seen[i] == 0 {
			res.Missing++
			continue
		}
		lastSeen = max(lastSeen, seen[i])
		res.Lat = append(res.Lat, time.Duration(max(seen[i]-c, 0)))
	}
	res.Tail = time.Duration(max(lastSeen-last, 0))
	sort.Slice(res.Lat, func(i, j int) bool { return res.Lat[i] < res.Lat[j] })
	if last > first {
		res.Achieved = float64(res.Sent) / time.Duration(last-first).Seconds()
	}
	return res
}

// produce runs cfg.Conns producers that commit event seq at start +
// due[seq-1] (late events are sent at once, not skipped).
func produce(ctx context.Context, e *Env, cfg LatencyConfig, due []time.Duration, committed []int64) error {
	total := len(due)
	start := time.Now().Add(100 * time.Millisecond)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Conns)
	for range cfg.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- producer(ctx, e, cfg.Size, cfg.SyncCommit, cfg.MessagePrefix, total, func() int {
				return int(next.Add(1))
			}, func(seq int) time.Time {
				return start.Add(due[seq-1])
			}, committed)
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

func collect(errs <-chan error) []error {
	var out []error
	for err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

var produceInsert = fmt.Sprintf(`INSERT INTO %s (event_type, environment, event_context, metadata_version)
	VALUES ($1, $2, $3, $4)`, pgx.Identifier{config.DefaultOutboxTable}.Sanitize())

// produceMessage is produceInsert in message mode.
const produceMessage = `SELECT pg_logical_emit_message(true, $1::text, $2::bytea)`

func producer(ctx context.Context, e *Env, size int, syncCommit bool, prefix string, total int, take func() int, due func(int) time.Time, committed []int64) error {
	conn, err := e.PG.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	setting := "off"
	if syncCommit {
		setting = "on"
	}
	if _, err := conn.Exec(ctx, "SET synchronous_commit = "+setting); err != nil {
		return err
	}
	buf := make([]byte, 0, size+32)
	for {
		seq := take()
		if seq > total {
			return nil
		}
		buf = Payload(buf[:0], int64(seq), size)
		if d := time.Until(due(seq)); d > 0 {
			time.Sleep(d) // pacing the producer to its rate
		}
		// One statement outside a transaction block: its own transaction.
		sql, args := produceInsert, []any{EventType, Environment, buf, int64(seq)}
		if prefix != "" {
			sql, args = produceMessage, []any{prefix, messagePayload(seq, buf)}
		}
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			return fmt.Errorf("produce event %d: %w", seq, err)
		}
		committed[seq] = time.Now().UnixNano()
	}
}

// messagePayload is event seq (context ctx) in the message payload format,
// what outbox.WithMessages emits.
func messagePayload(seq int, ctx []byte) []byte {
	f := payload.Fields{ID: eventID(seq), OccurredAtMicros: time.Now().UnixMicro(), MetadataVersion: int64(seq),
		Type: []byte(EventType), Environment: []byte(Environment), Context: ctx}
	return payload.Append(make([]byte, 0, payload.Size(f, nil)), f, nil)
}

// watcher polls ClickHouse for sequence numbers not seen yet. An event
// first returned by a poll became visible after the previous poll's
// snapshot and before this one's: its time is taken as the midpoint of the
// two polls' send times.
type watcher struct {
	e      *Env
	every  time.Duration
	seen   []int64 // unix ns by seq
	count  atomic.Int64
	maxGap int64
}

// run polls until ctx ends (then it returns nil). Batches become visible
// roughly in order, so asking only for seq >= the lowest unseen one keeps
// every answer small.
func (w *watcher) run(ctx context.Context) error {
	low := 1
	prev := time.Now().UnixNano()
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		sent := time.Now().UnixNano()
		if err := w.poll(ctx, low, (prev+sent)/2); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		w.maxGap = max(w.maxGap, sent-prev)
		prev = sent
		for low < len(w.seen) && w.seen[low] != 0 {
			low++
		}
	}
}

func (w *watcher) poll(ctx context.Context, low int, at int64) error {
	rows, err := w.e.CH.Query(ctx, "SELECT metadata_version FROM "+config.DefaultClickHouseTable+" WHERE metadata_version >= ?", uint64(low))
	if err != nil {
		return fmt.Errorf("watch clickhouse: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v uint64
		if err := rows.Scan(&v); err != nil {
			return err
		}
		if v < uint64(len(w.seen)) && w.seen[v] == 0 {
			w.seen[v] = at
			w.count.Add(1)
		}
	}
	return rows.Err()
}
