package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/failpoint"
	"github.com/outbox-relay/relay/internal/retry"
)

// written is a batch on its way through the sink to its deletion and
// confirmation.
type written struct {
	// result is the write's outcome (nil: the sink accepted the batch);
	// cancel stops the write when the batch will not be completed.
	result chan outcome
	cancel context.CancelFunc

	rows         []event.Row // outbox rows to delete
	events       int
	rng          *batch.Range // recorded range to mark done with the delete
	ackLSN       uint64
	afterConfirm []func(context.Context) error
	completed    chan struct{} // closed once completed, when cut waits for it
	bytes        int
	ctx          context.Context // carries the batch span
	finish       func()          // ends the batch span
}

// outcome is a write's result and how long it took (with the recording of
// its range).
type outcome struct {
	err  error
	took time.Duration
}

// completer waits for each batch's write, deletes its rows and then
// acknowledges it, one batch at a time and in order, on its own goroutine:
// the next batches are written to the sink while the previous one is
// deleted, so the drain rate is the slowest step's instead of their sum.
// Acks stay in LSN order because there is one completer and its queue is
// FIFO.
type completer struct {
	queue  chan written
	failed chan struct{} // closed when a completion failed; err says why
	err    error
	exited chan struct{}
}

func (r *Relay) startCompleter(ctx context.Context) *completer {
	// Room for every batch being written plus one: the writes and the
	// deletes overlap, and it bounds how far acks trail the sink.
	c := &completer{queue: make(chan written, cap(r.sinks)+1), failed: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(c.exited)
		for w := range c.queue {
			res := <-w.result
			w.cancel()
			err := res.err
			if err == nil {
				err = r.complete(ctx, w, res.took)
			}
			w.finish()
			if err == nil && w.completed != nil {
				close(w.completed)
			}
			if err != nil {
				c.err = err
				close(c.failed)
				for w := range c.queue { // not confirmed: streamed again
					w.cancel()
					<-w.result // no write outlives the session
					w.finish()
				}
				return
			}
		}
	}()
	return c
}

// put queues a written batch; it waits while the queue is full.
func (c *completer) put(ctx context.Context, w written) error {
	select {
	case <-c.failed:
		w.finish()
		return c.err
	default:
	}
	select {
	case c.queue <- w:
		return nil
	case <-c.failed:
		w.finish()
		return c.err
	case <-ctx.Done():
		w.finish()
		return fmt.Errorf("queue batch for deletion: %w", ctx.Err())
	}
}

// close waits until every queued batch is completed (or one failed).
func (c *completer) close() error {
	close(c.queue)
	<-c.exited
	return c.err
}

// complete deletes a written batch's rows, then confirms its LSN.
func (r *Relay) complete(ctx context.Context, w written, took time.Duration) error {
	// Delete, then confirm. Both only after the sink said yes; in this
	// order a crash between the two replays the batch from the slot
	// (invisible through the FINAL read path) instead of leaving delivered
	// rows in the outbox table that no stream would ever bring back.
	dctx, ddone := r.spans(w.ctx, "outbox.delete", nil)
	err := r.deleteRows(dctx, w.rows, w.rng)
	ddone()
	if err != nil {
		// Not confirmed: the batch is replayed (invisible through the read
		// path) rather than its rows left behind.
		return err
	}
	r.fp.Hit(failpoint.AfterDelete)
	if w.ackLSN > 0 {
		_, adone := r.spans(w.ctx, "lsn.ack", map[string]string{"lsn": pglogrepl.LSN(w.ackLSN).String()})
		r.tracker.Confirm(w.ackLSN)
		r.m.AckedLSN.Set(float64(w.ackLSN))
		r.m.LastAckTimestamp.SetToCurrentTime()
		adone()
	}
	for _, f := range w.afterConfirm {
		if err := f(ctx); err != nil {
			return fmt.Errorf("after confirm: %w", err)
		}
	}
	r.log.Info().Int("events", w.events).Int("bytes", w.bytes).Dur("took", took).
		Str("acked_lsn", pglogrepl.LSN(w.ackLSN).String()).Msg("flushed")
	return nil
}

// deleteRows deletes the delivered rows (and marks their range done),
// retrying until ctx ends or the error is permanent.
func (r *Relay) deleteRows(ctx context.Context, rows []event.Row, done *batch.Range) error {
	if len(rows) == 0 && done == nil {
		return nil
	}
	var n int64
	err := retry.Do(ctx, r.cfg.Backoff, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		var err error
		n, err = r.deleter.Delete(actx, rows, done)
		return err
	}, func(err error, wait time.Duration) {
		r.log.Warn().Err(err).Dur("retry_in", wait).Msg("deleting delivered rows failed; retrying")
	})
	if err != nil {
		return fmt.Errorf("delete %d delivered rows: %w", len(rows), err)
	}
	r.m.RowsDeletedTotal.Add(float64(n))
	return nil
}
