package bench

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outbox-relay/relay/internal/config"
)

// Event type and environment of every generated event.
const (
	EventType   = "bench_event"
	Environment = "bench"
)

// Dataset is a reproducible set of outbox events: event i always has the
// same id and the same event_context, so every system under test (relay,
// baselines) sees the same rows.
type Dataset struct {
	Name   string
	Events int
	// Size is the length of event_context (JSON text) in bytes.
	Size int
	// PerTx is how many events one loading transaction inserts.
	PerTx int
	// ExtraColumns adds ExtraColumns to outbox_event before loading and
	// fills them in every row (the columns scenario).
	ExtraColumns bool
}

// Bytes is the total event_context volume.
func (d Dataset) Bytes() int64 { return int64(d.Events) * int64(d.Size) }

// Row is one generated event.
type Row struct {
	ID          [16]byte
	Type        string
	Environment string
	Context     []byte
	Seq         int64 // 1-based; stored in metadata_version
	OccurredAt  time.Time
}

// Row builds event i, appending its event_context to buf[:0].
func (d Dataset) Row(i int, buf []byte) Row {
	return Row{ID: eventID(i), Type: EventType, Environment: Environment,
		Context: Payload(buf[:0], int64(i+1), d.Size), Seq: int64(i + 1)}
}

// eventID is a random-looking but reproducible version-4 UUID (random ids
// are what gen_random_uuid() gives publishers, and what the btree sees).
func eventID(i int) [16]byte {
	r := rand.New(rand.NewPCG(uint64(i), 0x0b5e55ed))
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], r.Uint64())
	binary.BigEndian.PutUint64(id[8:], r.Uint64())
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

// Payload appends a JSON object of exactly size bytes (when size allows)
// to dst: {"seq":N,"pad":"<hex>"}. The pad is pseudo-random hex so that
// PostgreSQL's TOAST compression cannot shrink large events to nothing.
func Payload(dst []byte, seq int64, size int) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"pad":"`...)
	pad := size - len(dst) - 2
	r := rand.New(rand.NewPCG(uint64(seq), 0x9a7))
	var word [8]byte
	var hx [16]byte
	for pad > 0 {
		binary.LittleEndian.PutUint64(word[:], r.Uint64())
		hex.Encode(hx[:], word[:])
		n := min(pad, len(hx))
		dst = append(dst, hx[:n]...)
		pad -= n
	}
	return append(dst, `"}`...)
}

// outboxColumns are the columns the loader writes (the rest have defaults).
var outboxColumns = []string{"id", "event_type", "environment", "event_context", "metadata_version"}

// ExtraColumns are the typed columns a Dataset with ExtraColumns adds to
// outbox_event: the kind an application adds for ClickHouse to sort and
// filter on (the relay adds them to event_log itself).
var ExtraColumns = []struct{ Name, Type string }{
	{"account_id", "uuid"}, {"tenant_id", "bigint"}, {"request_id", "text"},
	{"amount", "numeric(18,2)"}, {"flagged", "boolean"},
}

// addExtraColumns runs ALTER TABLE outbox_event ADD COLUMN for ExtraColumns.
func addExtraColumns(ctx context.Context, pool *pgxpool.Pool) error {
	for _, c := range ExtraColumns {
		q := "ALTER TABLE " + pgx.Identifier{config.DefaultOutboxTable}.Sanitize() + " ADD COLUMN " + pgx.Identifier{c.Name}.Sanitize() + " " + c.Type
		if _, err := pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("add column %s: %w", c.Name, err)
		}
	}
	return nil
}

// extraValues are event i's values of ExtraColumns, never NULL.
func extraValues(i int, id [16]byte) []any {
	account := id
	account[0] ^= 0xa5 // a different, still reproducible uuid
	return []any{pgtype.UUID{Bytes: account, Valid: true}, int64(i % 1000), "req-" + strconv.Itoa(i),
		pgtype.Numeric{Int: big.NewInt(int64(i)*100 + 37), Exp: -2, Valid: true}, i%2 == 0}
}

// Load inserts the dataset into outbox_event, PerTx events per transaction
// (one COPY each), from workers connections in parallel.
func Load(ctx context.Context, pool *pgxpool.Pool, d Dataset, workers int) error {
	var next atomic.Int64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- loadChunks(ctx, pool, d, &next)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func loadChunks(ctx context.Context, pool *pgxpool.Pool, d Dataset, next *atomic.Int64) error {
	buf := make([]byte, 0, d.Size+64)
	cols := outboxColumns
	if d.ExtraColumns {
		cols = append([]string(nil), outboxColumns...)
		for _, c := range ExtraColumns {
			cols = append(cols, c.Name)
		}
	}
	for {
		first := int(next.Add(int64(d.PerTx))) - d.PerTx
		if first >= d.Events {
			return nil
		}
		n := min(d.PerTx, d.Events-first)
		src := pgx.CopyFromSlice(n, func(j int) ([]any, error) {
			// pgx encodes each row before asking for the next, so buf is reused.
			r := d.Row(first+j, buf)
			buf = r.Context
			row := []any{pgtype.UUID{Bytes: r.ID, Valid: true}, r.Type, r.Environment, r.Context, r.Seq}
			if d.ExtraColumns {
				row = append(row, extraValues(first+j, r.ID)...)
			}
			return row, nil
		})
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{config.DefaultOutboxTable}, cols, src); err != nil {
			return fmt.Errorf("load %s rows %d..%d: %w", d.Name, first, first+n, err)
		}
	}
}
