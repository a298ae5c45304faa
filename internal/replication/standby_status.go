package replication

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/internal/failpoint"
)

// minStatusGap keeps a busy stream from sending a status update per batch.
const minStatusGap = 200 * time.Millisecond

// maybeSendStatus runs before each read: it sends a status update when the
// status interval has passed (asking for a reply), or when the consumer
// confirmed more since the last one, at most every minStatusGap.
func (ss *session) maybeSendStatus(ctx context.Context, now time.Time) error {
	if now.After(ss.nextStatusTime) {
		// Periodic updates ask for a reply: its absence reveals a dead path.
		if ss.awaitingReply.IsZero() {
			ss.awaitingReply = now
		}
		return ss.sendStatus(ctx, true)
	}
	if _, flushed := ss.src.tracker.Position(); flushed != ss.lastSentFlush && now.Sub(ss.lastStatus) >= minStatusGap {
		return ss.sendStatus(ctx, false)
	}
	return nil
}

// keepAlive sends a status update that asks for no reply: the handover's
// while it waits for the consumer.
func (ss *session) keepAlive(ctx context.Context) error { return ss.sendStatus(ctx, false) }

// sendStatus reports the tracker's positions: written is what was received,
// flushed only what the consumer confirmed (in the sink). It is the one
// place a position reaches PostgreSQL; the slot's confirmed_flush_lsn
// follows flushed.
func (ss *session) sendStatus(ctx context.Context, reply bool) error {
	written, flushed := ss.src.tracker.Position()
	if flushed > ss.src.tracker.Confirmed() && flushed > ss.lastSentFlush {
		// Confirming a keepalive's WAL end skips WAL that carried no outbox
		// events for us. That is only true while the publication still
		// streams the outbox table: check before skipping ahead.
		if err := ss.recheck(ctx); err != nil {
			return err
		}
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, ss.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(written),
		WALFlushPosition: pglogrepl.LSN(flushed),
		WALApplyPosition: pglogrepl.LSN(flushed),
		ReplyRequested:   reply,
	})
	if err != nil {
		return classify(fmt.Errorf("send standby status: %w", err))
	}
	now := time.Now()
	advanced := flushed > ss.lastSentFlush && ss.lastSentFlush != 0
	ss.lastStatus, ss.lastSentFlush, ss.nextStatusTime = now, flushed, now.Add(ss.src.cfg.StatusInterval)
	if advanced {
		ss.src.fp.Hit(failpoint.AfterStatusUpdate)
	}
	return nil
}

// recheck re-runs Check. It runs after the keepalive whose WAL end is about
// to be confirmed arrived, so a table dropped from the publication before
// that point is caught before anything it hid is skipped. Skip-aheads only
// happen on an idle stream, so this costs a few queries per status interval.
func (ss *session) recheck(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	return Check(cctx, ss.src.db, ss.src.cfg)
}

// confirmFinal waits until the slot shows the final position, reading (and
// dropping) what the walsender still sends meanwhile so that it is never
// blocked on a full socket and gets to our status update. Closing before
// that could lose the update: the server may reset the connection while
// sending, before it read the update. (Ending the copy with CopyDone instead
// would wait until the walsender caught up, which a busy database may never
// let it do.)
func (ss *session) confirmFinal(ctx context.Context, flushed uint64) {
	deadline, _ := ctx.Deadline()
	resend := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		slot, err := readSlot(ctx, ss.src.db, ss.src.cfg.Slot)
		if err == nil && slot.confirmed >= flushed {
			return
		}
		if time.Now().After(resend) {
			_ = ss.sendStatus(ctx, true)
			resend = time.Now().Add(500 * time.Millisecond)
		}
		_ = ss.conn.Conn().SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			_, err := ss.conn.ReceiveMessage(context.Background())
			if err != nil && !pgconn.Timeout(err) {
				return // connection gone: nothing more to confirm on it
			}
			if err != nil {
				break
			}
		}
	}
	ss.src.log.Warn().Str("flushed", pglogrepl.LSN(flushed).String()).Msg("could not confirm the final position in time; the last transactions may be streamed again")
}
