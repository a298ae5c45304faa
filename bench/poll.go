package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/migrate"
	"github.com/outbox-relay/relay/internal/procfs"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
)

// PollConfig configures the polling baseline.
type PollConfig struct {
	DatabaseURL   string
	ClickHouseURL string
	Batch         int
	// Interval is slept after every partial batch (the flush interval).
	Interval time.Duration
	// UntilEmpty stops after the first partial batch (backlog drain)
	// instead of sleeping and polling again until ctx ends.
	UntilEmpty bool
}

// PollResult is what the poller moved.
type PollResult struct {
	Events  int   `json:"events"`
	Batches int   `json:"batches"`
	PeakRSS int64 `json:"peak_rss"` // the poller's own VmHWM
}

// Poll is the original, polling design of the relay, the baseline the
// streaming relay has to beat, written as a careful team would: the SELECT
// walks the primary key's index (ORDER BY id), so a poll costs the same
// whatever the backlog (ordering by event_date_time, which has no index,
// sorted the whole table on every poll and made the baseline a straw man):
//
//	loop { BEGIN; SELECT … ORDER BY id LIMIT batch
//	       FOR UPDATE SKIP LOCKED; INSERT into ClickHouse;
//	       DELETE those ids; COMMIT }
func Poll(ctx context.Context, cfg PollConfig) (res PollResult, err error) {
	pg, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return res, err
	}
	defer func() { _ = pg.Close(context.WithoutCancel(ctx)) }()
	ch, err := chsink.Connect(ctx, cfg.ClickHouseURL)
	if err != nil {
		return res, err
	}
	defer func() { _ = ch.Close() }()
	v, err := ch.ServerVersion()
	if err != nil {
		return res, err
	}
	p := &poller{pg: pg, w: newCHWriter(ch, migrate.CapabilitiesOf(*v).DateTime64), batch: cfg.Batch}
	defer func() { res.PeakRSS, _ = procfs.PeakRSS(os.Getpid()) }()
	for {
		n, err := p.once(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return res, nil
			}
			return res, err
		}
		res.Events += n
		if n > 0 {
			res.Batches++
		}
		if n == cfg.Batch {
			continue
		}
		if cfg.UntilEmpty {
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, nil
		case <-time.After(cfg.Interval):
		}
	}
}

type poller struct {
	pg    *pgx.Conn
	w     *chWriter
	batch int
	rows  []Row
	ids   [][16]byte
}

var (
	pollSelect = fmt.Sprintf(`SELECT id, event_type, event_date_time, environment, event_context::text, metadata_version
		FROM %s ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, pgx.Identifier{config.DefaultOutboxTable}.Sanitize())
	pollDelete = fmt.Sprintf("DELETE FROM %s WHERE id = ANY($1::uuid[])", pgx.Identifier{config.DefaultOutboxTable}.Sanitize())
)

// once moves one batch in one transaction and returns its size.
func (p *poller) once(ctx context.Context) (int, error) {
	tx, err := p.pg.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := p.read(ctx, tx); err != nil {
		return 0, err
	}
	if len(p.rows) > 0 {
		if err := p.w.Write(ctx, p.rows); err != nil {
			return 0, err
		}
		p.ids = p.ids[:0]
		for i := range p.rows {
			p.ids = append(p.ids, p.rows[i].ID)
		}
		if _, err := tx.Exec(ctx, pollDelete, p.ids); err != nil {
			return 0, fmt.Errorf("delete delivered rows: %w", err)
		}
	}
	return len(p.rows), tx.Commit(ctx)
}

func (p *poller) read(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, pollSelect, p.batch)
	if err != nil {
		return fmt.Errorf("select batch: %w", err)
	}
	defer rows.Close()
	p.rows = p.rows[:0]
	for rows.Next() {
		var (
			r  Row
			id pgtype.UUID
		)
		if err := rows.Scan(&id, &r.Type, &r.OccurredAt, &r.Environment, &r.Context, &r.Seq); err != nil {
			return fmt.Errorf("scan outbox row: %w", err)
		}
		r.ID, r.OccurredAt = id.Bytes, r.OccurredAt.UTC()
		p.rows = append(p.rows, r)
	}
	return rows.Err()
}
