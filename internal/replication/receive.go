package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/retry"
)

// ackPoll bounds how long a confirmed position waits before it is sent when
// the stream is quiet; under load the check runs on every message.
const ackPoll = time.Second

// receive reads and handles messages until ctx ends or the stream fails;
// what it decodes goes to the consumer through ss.h under hctx (see
// handoverContext), which outlives ctx on shutdown.
//
// Reads wait under a deadline set on the socket itself (at most ackPoll
// ahead, and never past the next status update or ctx's deadline) rather
// than a context per message: pgconn watches every context it is given,
// which cost a sixth of the relay's CPU in a backlog drain. ctx is checked
// between reads, so shutdown is noticed within ackPoll.
func (ss *session) receive(ctx, hctx context.Context) error {
	ss.nextStatusTime = time.Now().Add(ss.src.cfg.StatusInterval)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := ss.gather(ctx, hctx); err != nil {
			return err
		}
		// One clock reading per message for the checks before the read.
		now := time.Now()
		if err := ss.maybeSendStatus(ctx, now); err != nil {
			return err
		}
		if err := ss.checkAlive(now); err != nil {
			return err
		}
		ss.setReadDeadline(ctx, now)
		msg, err := ss.conn.ReceiveMessage(context.Background())
		if err != nil {
			if pgconn.Timeout(err) {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return classify(fmt.Errorf("receive from slot %q: %w", ss.src.cfg.Slot, err))
		}
		ss.awaitingReply = time.Time{}
		ss.received = time.Now()
		if !ss.heldSince.IsZero() {
			ss.received = ss.heldSince
		}
		if err := ss.handle(ctx, hctx, msg); err != nil {
			return err
		}
	}
}

// gather runs before each receive. When the stream has caught up it hands
// the queued items over (the consumer gets whole transactions as soon as
// nothing more is at hand), and when the last read found the queue empty it
// waits before reading again, so that the next transactions' messages
// arrive in one read: at a steady trickle of small transactions the relay
// wakes once per wait instead of once per message (three per one-event
// transaction). A catching-up stream never waits: its reads fill the
// buffer.
//
// The wait is ReceiveWait, or longer while the consumer's next cut is far
// off (see pace). Its end comes early when the kernel has much queued. The
// messages read after it count as arrived when it began (Item.At): the
// consumer's flush interval is not lengthened by the wait.
func (ss *session) gather(ctx, hctx context.Context) error {
	caughtUp, drained := ss.caughtUp()
	if !caughtUp {
		return nil
	}
	if err := ss.h.send(hctx); err != nil {
		return err
	}
	ss.heldSince = time.Time{}
	if !drained || ss.src.cfg.ReceiveWait <= 0 {
		return nil
	}
	// Only after a read that found data: an idle stream's reads end at
	// their deadline with nothing, and are not followed by a wait.
	ss.sock.drained.Store(false)
	start := time.Now()
	wait := ss.pace(start)
	ss.heldSince = start
	if ok, err := ss.sock.await(ctx, start.Add(wait)); ok || err != nil {
		return err
	}
	// No socket to wait on (not TCP, or not Linux): a timer.
	if ss.wait == nil {
		ss.wait = time.NewTimer(wait)
	} else {
		ss.wait.Reset(wait)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ss.wait.C:
		return nil
	}
}

// caughtUp reports whether every byte received is handled: the next
// receive waits for the network. drained says the last network read also
// emptied the kernel's queue, so nothing more was waiting then.
func (ss *session) caughtUp() (caughtUp, drained bool) {
	if ss.sock == nil || ss.conn.Frontend().ReadBufferLen() > 0 || ss.sock.buffered.Load() > 0 {
		return false, false
	}
	return true, ss.sock.drained.Load()
}

// maxPacedWait bounds a paced wait: the status updates and the
// acknowledgements they carry are sent between reads.
const maxPacedWait = 250 * time.Millisecond

// pace is how long gather waits. Until the consumer cuts its next batch,
// what the stream reads only waits in that batch, so reading it sooner
// changes no event's latency: the wait halves the time left until the
// expected cut (halving again as the cut nears, so the last read before
// it comes within ReceiveWait of it), between ReceiveWait and
// maxPacedWait. Without NextCut, or when the consumer does not know, it is
// ReceiveWait.
func (ss *session) pace(now time.Time) time.Duration {
	w := ss.src.cfg.ReceiveWait
	if ss.src.cfg.NextCut == nil {
		return w
	}
	cut := ss.src.cfg.NextCut()
	if cut.IsZero() {
		return w
	}
	return min(max(w, cut.Sub(now)/2), max(w, maxPacedWait))
}

// setReadDeadline moves the socket's read deadline only when it changes.
func (ss *session) setReadDeadline(ctx context.Context, now time.Time) {
	if !now.Before(ss.pollUntil) {
		ss.pollUntil = now.Add(ackPoll)
	}
	dl := ss.pollUntil
	if ss.nextStatusTime.Before(dl) {
		dl = ss.nextStatusTime
	}
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	if !dl.Equal(ss.readDeadline) {
		_ = ss.conn.Conn().SetReadDeadline(dl)
		ss.readDeadline = dl
	}
}

// checkAlive ends a stream whose server stopped answering: periodic status
// updates ask for a reply, and a connection that stays silent long after
// such a request is a dead or black-holed network path, not an idle server.
func (ss *session) checkAlive(now time.Time) error {
	if ss.awaitingReply.IsZero() {
		return nil
	}
	if silent := now.Sub(ss.awaitingReply); silent > max(2*ss.src.cfg.StatusInterval, 2*time.Second) {
		return fmt.Errorf("no reply from PostgreSQL on slot %q for %s; reconnecting", ss.src.cfg.Slot, silent.Round(time.Millisecond))
	}
	return nil
}

// handle takes one message of the copy stream: a keepalive, WAL data, or
// the end of the stream.
func (ss *session) handle(ctx, hctx context.Context, msg pgproto3.BackendMessage) error {
	switch m := msg.(type) {
	case *pgproto3.CopyData:
		if len(m.Data) == 0 {
			return nil
		}
		switch m.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
			if err != nil {
				return fmt.Errorf("parse keepalive: %w", err)
			}
			ss.src.tracker.Keepalive(uint64(ka.ServerWALEnd))
			if ss.src.hooks.ServerWALEnd != nil {
				ss.src.hooks.ServerWALEnd(uint64(ka.ServerWALEnd))
			}
			if ka.ReplyRequested {
				return ss.sendStatus(ctx, false)
			}
		case pglogrepl.XLogDataByteID:
			if len(m.Data) < 25 {
				return fmt.Errorf("parse xlogdata: %w", errMalformed)
			}
			return ss.decode(ctx, hctx, m.Data[25:])
		}
	case *pgproto3.ErrorResponse:
		return classify(fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m)))
	case *pgproto3.CopyDone:
		return fmt.Errorf("replication stream ended by the server")
	}
	return nil
}

// decode handles one pgoutput message.
func (ss *session) decode(ctx, hctx context.Context, data []byte) error {
	if len(data) == 0 {
		return errMalformed
	}
	switch pglogrepl.MessageType(data[0]) {
	case pglogrepl.MessageTypeInsert:
		return ss.insert(hctx, data[1:])
	case pglogrepl.MessageTypeMessage:
		return ss.message(hctx, data[1:])
	case pglogrepl.MessageTypeBegin:
		var m pglogrepl.BeginMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode begin: %w", err)
		}
		ss.tx, ss.commitLSN, ss.commitTime = true, uint64(m.FinalLSN), m.CommitTime
		ss.src.tracker.Begin()
	case pglogrepl.MessageTypeCommit:
		var m pglogrepl.CommitMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode commit: %w", err)
		}
		if err := ss.commit(hctx, uint64(m.TransactionEndLSN)); err != nil {
			return err
		}
		ss.tx = false
		ss.src.tracker.Received(uint64(m.TransactionEndLSN))
		if ss.untilCommit {
			return errCommitted
		}
	case pglogrepl.MessageTypeRelation:
		var m pglogrepl.RelationMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode relation: %w", err)
		}
		o := ss.src.outbox(m.Namespace, m.RelationName)
		if o == nil {
			ss.src.log.Warn().Str("relation", m.Namespace+"."+m.RelationName).Msg("publication includes a table no stream reads; its inserts are ignored")
			delete(ss.relations, m.RelationID)
			return nil
		}
		return ss.relation(ctx, &m, o)
	}
	// Origin, Type, Truncate, Update, Delete: not part of the outbox
	// contract (the publication only publishes inserts).
	return nil
}

// relation takes in a Relation message: the table's shape from here on. A
// shape with extra columns reads which of them are NOT NULL from the
// catalog (Relation messages do not say; they are rare: one per stream
// start and per change of the table). An unchanged shape keeps its
// event.Columns, so the sink recognises it.
func (ss *session) relation(ctx context.Context, m *pglogrepl.RelationMessage, o *Outbox) error {
	rel, err := ss.src.newRelation(ctx, m, o)
	if err != nil {
		return err
	}
	ss.relations[m.RelationID] = rel
	return nil
}

// insert decodes an INSERT into the outbox table and hands the event on.
func (ss *session) insert(hctx context.Context, body []byte) error {
	if len(body) < 4 {
		return errMalformed
	}
	relID := uint32(body[0])<<24 | uint32(body[1])<<16 | uint32(body[2])<<8 | uint32(body[3])
	rel, ok := ss.relations[relID]
	if !ok {
		return nil // a table other than the outbox
	}
	ev := event.Event{CommitLSN: ss.commitLSN, CommitTime: ss.commitTime}
	if err := rel.decodeInsert(body, &ev, ss.types); err != nil {
		return retry.Permanent(fmt.Errorf("decode insert at commit %s: %w", pglogrepl.LSN(ss.commitLSN), err))
	}
	return ss.handOn(hctx, ev)
}

// handOn takes ev's weight from the budget and queues it for the consumer.
func (ss *session) handOn(hctx context.Context, ev event.Event) error {
	if err := ss.h.take(hctx, &ev); err != nil {
		return err
	}
	return ss.h.put(hctx, Item{Event: ev, At: ss.received})
}

// commit queues a transaction's Commit item. It is handed over with the
// transactions read with it once the stream caught up (see gather); at
// once when the stream cannot tell (no socket of its own) or stops after
// this transaction (finish).
func (ss *session) commit(hctx context.Context, endLSN uint64) error {
	if err := ss.h.put(hctx, Item{Commit: true, EndLSN: endLSN, At: ss.received}); err != nil {
		return err
	}
	if ss.sock == nil || ss.untilCommit {
		return ss.h.send(hctx)
	}
	return nil
}

// errCommitted ends the shutdown read once the open transaction is whole.
var errCommitted = errors.New("open transaction complete")
