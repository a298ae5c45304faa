package deletion

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/batchlog"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/procfs"
	"github.com/outbox-relay/relay/internal/testenv"
)

// BenchmarkDelete deletes delivered rows the way the relay's drain does,
// with each candidate strategy: the oldest rows of a populated outbox table
// (insertion order, random v4 uuids as gen_random_uuid makes them), the
// batch's recorded range marked done in outbox_relay_batch in the same
// transaction. One op is one transaction; after it (untimed) as many new
// rows are appended, so the table keeps its size and the strategies,
// interleaved in one run, meet the same table. Besides ns/op and allocs/op
// (the relay side) it reports per deleted row:
//
//	pg-ns/row     CPU of the PostgreSQL backend (/proc/<pid>/schedstat;
//	              the server must run on this machine)
//	relay-ns/row  CPU of this process (getrusage)
//
// RELAY_BENCH_DELETE_ROWS sets the table's size (default 200,000 rows of
// 512-byte event_context). Needs DATABASE_URL.
func BenchmarkDelete(b *testing.B) {
	d := newDeleteBench(b)
	for _, n := range []int{1000, 10000} {
		for _, s := range deleteStrategies() {
			b.Run(fmt.Sprintf("n=%d/how=%s", n, s.name), func(b *testing.B) { d.measure(b, s, n) })
		}
	}
}

// deleteStrategy deletes ids (batches relay batches of equal size) and
// marks their ranges done, in one transaction.
type deleteStrategy struct {
	name    string
	batches int
	run     func(ctx context.Context, d *deleteBench, ids [][16]byte) (int64, error)
}

const (
	benchAnySQL    = `DELETE FROM outbox_event WHERE id = ANY($1::uuid[])`
	benchUnnestSQL = `DELETE FROM outbox_event o USING unnest($1::uuid[]) AS d(id) WHERE o.id = d.id`
	benchTempSQL   = `DELETE FROM outbox_event o USING relay_delete_ids d WHERE o.id = d.id`
)

func deleteStrategies() []deleteStrategy {
	return []deleteStrategy{
		// What the relay does now (deletion.Deleter).
		{name: "deleter", batches: 1, run: func(ctx context.Context, d *deleteBench, ids [][16]byte) (int64, error) {
			rows := make([]event.Row, len(ids))
			for i, id := range ids {
				rows[i].ID = id
			}
			return New(d.conn, []Table{{Schema: "public", Name: "outbox_event", Key: "id", KeyType: "uuid"}}, d.log).Delete(ctx, rows, &d.rng[0])
		}},
		// = ANY, binary uuid[] encoded by pgx from [][16]byte (reflection).
		{name: "any-reflect", batches: 1, run: func(ctx context.Context, d *deleteBench, ids [][16]byte) (int64, error) {
			return d.send(ctx, 1, benchAnySQL, ids)
		}},
		// = ANY, the same binary uuid[] encoded by uuids.
		{name: "any-uuids", batches: 1, run: func(ctx context.Context, d *deleteBench, ids [][16]byte) (int64, error) {
			return d.send(ctx, 1, benchAnySQL, uuids(ids))
		}},
		// = ANY, the ids as a text array literal parsed by the server.
		{name: "any-text", batches: 1, run: func(ctx context.Context, d *deleteBench, ids [][16]byte) (int64, error) {
			return d.send(ctx, 1, benchAnySQL, uuidArrayText(ids))
		}},
		// DELETE … USING unnest($1).
		{name: "unnest", batches: 1, run: func(ctx context.Context, d *deleteBench, ids [][16]byte) (int64, error) {
			return d.send(ctx, 1, benchUnnestSQL, uuids(ids))
		}},
		// = ANY in an explicit transaction: BEGIN, DELETE, UPDATE, COMMIT
		// each a round trip.
		{name: "any-roundtrips", batches: 1, run: func(ctx context.Context, d *deleteBench, ids [][16]byte) (int64, error) {
			return d.inTx(ctx, func(tx pgx.Tx) (int64, error) {
				tag, err := tx.Exec(ctx, benchAnySQL, uuids(ids))
				return tag.RowsAffected(), err
			})
		}},
		// Binary COPY of the ids into a temporary table, DELETE … USING it.
		{name: "copy-temp", batches: 1, run: func(ctx context.Context, d *deleteBench, ids [][16]byte) (int64, error) {
			return d.inTx(ctx, func(tx pgx.Tx) (int64, error) {
				if _, err := tx.CopyFrom(ctx, pgx.Identifier{"relay_delete_ids"}, []string{"id"},
					pgx.CopyFromSlice(len(ids), func(i int) ([]any, error) { return []any{ids[i]}, nil })); err != nil {
					return 0, err
				}
				tag, err := tx.Exec(ctx, benchTempSQL)
				return tag.RowsAffected(), err
			})
		}},
		// Two relay batches in one statement and one transaction.
		{name: "any-2batches", batches: 2, run: func(ctx context.Context, d *deleteBench, ids [][16]byte) (int64, error) {
			return d.send(ctx, 2, benchAnySQL, uuids(ids))
		}},
	}
}

// deleteBench is the table the strategies delete from, on one connection
// (one backend to measure).
type deleteBench struct {
	conn    *pgxpool.Conn
	pid     int
	log     *batchlog.Log
	rng     [2]batch.Range // recorded ranges every op marks done
	ids     [][16]byte     // ids in the table, oldest first
	rnd     *rand.ChaCha8
	payload string
	warm    map[string]bool
}

func newDeleteBench(b *testing.B) *deleteBench {
	b.Helper()
	e := testenv.NewPostgres(b)
	ctx := context.Background()
	conn, err := e.PG.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(conn.Release)
	d := &deleteBench{conn: conn, log: batchlog.New(conn, "bench_slot"), rnd: rand.NewChaCha8([32]byte{1}),
		payload: `{"p":"` + strings.Repeat("x", 512-8) + `"}`, warm: map[string]bool{}}
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&d.pid); err != nil {
		b.Fatal(err)
	}
	if _, err := procfs.CPU(d.pid); err != nil {
		b.Skipf("PostgreSQL's backend is not readable here (%v): run the server on this machine", err)
	}
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE relay_delete_ids (id uuid) ON COMMIT DELETE ROWS`); err != nil {
		b.Fatal(err)
	}
	for i := range d.rng {
		d.rng[i] = batch.Range{First: batch.Position{LSN: uint64(i + 1)}, Last: batch.Position{LSN: uint64(i + 1), Index: 9}, EndsTx: true}
		if err := d.log.Pending(ctx, batchlog.Record{Range: d.rng[i], Events: 10, RelayedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	rows := 200000
	if v := os.Getenv("RELAY_BENCH_DELETE_ROWS"); v != "" {
		if rows, err = strconv.Atoi(v); err != nil || rows < 40000 {
			b.Fatalf("RELAY_BENCH_DELETE_ROWS=%q: want a number of at least 40000", v)
		}
	}
	for left := rows; left > 0; left -= 10000 {
		d.insert(b, min(left, 10000))
	}
	if _, err := conn.Exec(ctx, "ANALYZE outbox_event"); err != nil {
		b.Fatal(err)
	}
	return d
}

// measure runs b.N ops of s, each deleting the oldest s.batches × n rows.
func (d *deleteBench) measure(b *testing.B, s deleteStrategy, n int) {
	ctx := context.Background()
	rows := n * s.batches
	if key := fmt.Sprint(s.name, n); !d.warm[key] {
		// Past the server's first custom plans of a prepared statement.
		for range 6 {
			d.op(ctx, b, s, rows)
		}
		d.warm[key] = true
	}
	b.ReportAllocs()
	b.ResetTimer()
	var pg, relay time.Duration
	for range b.N {
		p, r := d.op(ctx, b, s, rows)
		pg += p
		relay += r
	}
	b.ReportMetric(float64(pg)/float64(b.N*rows), "pg-ns/row")
	b.ReportMetric(float64(relay)/float64(b.N*rows), "relay-ns/row")
}

// op deletes the oldest rows with s (timed) and appends as many (untimed);
// it returns the CPU the backend and this process spent on the delete.
func (d *deleteBench) op(ctx context.Context, b *testing.B, s deleteStrategy, rows int) (pg, relay time.Duration) {
	b.StopTimer()
	ids := d.ids[:rows:rows]
	d.ids = d.ids[rows:]
	pg0, relay0 := d.backendCPU(b), selfCPU(b)
	b.StartTimer()
	n, err := s.run(ctx, d, ids)
	b.StopTimer()
	pg, relay = d.backendCPU(b)-pg0, selfCPU(b)-relay0
	if err != nil {
		b.Fatalf("%s: %v", s.name, err)
	}
	if n != int64(rows) {
		b.Fatalf("%s deleted %d rows, want %d", s.name, n, rows)
	}
	d.insert(b, rows)
	b.StartTimer()
	return pg, relay
}

// send runs the delete and the marks of batches ranges as one pgx batch
// (one round trip, one implicit transaction), as the Deleter does.
func (d *deleteBench) send(ctx context.Context, batches int, sql string, arg any) (int64, error) {
	bt := &pgx.Batch{}
	bt.Queue(sql, arg)
	for i := range batches {
		d.log.QueueDone(bt, d.rng[i])
	}
	res := d.conn.SendBatch(ctx, bt)
	tag, err := res.Exec()
	for range batches {
		if err != nil {
			break
		}
		_, err = res.Exec()
	}
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	return tag.RowsAffected(), err
}

// inTx runs del and marks the first range done in an explicit
// transaction, each statement a round trip of its own.
func (d *deleteBench) inTx(ctx context.Context, del func(pgx.Tx) (int64, error)) (int64, error) {
	tx, err := d.conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	n, err := del(tx)
	if err != nil {
		return 0, err
	}
	bt := &pgx.Batch{}
	d.log.QueueDone(bt, d.rng[0])
	if err := tx.SendBatch(ctx, bt).Close(); err != nil {
		return 0, err
	}
	return n, tx.Commit(ctx)
}

// insert appends n rows with new random v4 ids.
func (d *deleteBench) insert(b *testing.B, n int) {
	b.Helper()
	rows := make([][]any, n)
	for i := range rows {
		var id [16]byte
		_, _ = d.rnd.Read(id[:])
		id[6], id[8] = id[6]&0x0f|0x40, id[8]&0x3f|0x80
		d.ids = append(d.ids, id)
		rows[i] = []any{id, "bench_event", "bench", d.payload}
	}
	_, err := d.conn.CopyFrom(context.Background(), pgx.Identifier{"outbox_event"},
		[]string{"id", "event_type", "environment", "event_context"}, pgx.CopyFromRows(rows))
	if err != nil {
		b.Fatalf("insert rows: %v", err)
	}
}

func (d *deleteBench) backendCPU(b *testing.B) time.Duration {
	t, err := procfs.CPU(d.pid)
	if err != nil {
		b.Fatalf("read backend CPU: %v", err)
	}
	return t
}

func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// uuidArrayText is ids as a uuid[] literal: {hex-uuid,…}.
func uuidArrayText(ids [][16]byte) string {
	buf := make([]byte, 0, 2+37*len(ids))
	buf = append(buf, '{')
	for i, id := range ids {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = hex.AppendEncode(buf, id[:4])
		buf = append(buf, '-')
		buf = hex.AppendEncode(buf, id[4:6])
		buf = append(buf, '-')
		buf = hex.AppendEncode(buf, id[6:8])
		buf = append(buf, '-')
		buf = hex.AppendEncode(buf, id[8:10])
		buf = append(buf, '-')
		buf = hex.AppendEncode(buf, id[10:])
	}
	return string(append(buf, '}'))
}
