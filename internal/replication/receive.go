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

// loop receives and handles messages until ctx ends or the stream fails.
//
// Reads wait under a deadline set on the socket itself (at most ackPoll
// ahead, and never past the next status update or ctx's deadline) rather
// than a context per message: pgconn watches every context it is given,
// which cost a sixth of the relay's CPU in a backlog drain. ctx is checked
// between reads, so shutdown is noticed within ackPoll.
func (st *stream) loop(ctx context.Context) error {
	st.nextStatusTime = time.Now().Add(st.cfg.StatusInterval)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := st.gather(ctx); err != nil {
			return err
		}
		// One clock reading per message for the checks before the read.
		now := time.Now()
		if err := st.maybeSendStatus(ctx, now); err != nil {
			return err
		}
		if err := st.checkAlive(now); err != nil {
			return err
		}
		st.setReadDeadline(ctx, now)
		msg, err := st.conn.ReceiveMessage(context.Background())
		if err != nil {
			if pgconn.Timeout(err) {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return classify(fmt.Errorf("receive from slot %q: %w", st.cfg.Slot, err))
		}
		st.awaitingReply = time.Time{}
		st.received = time.Now()
		if !st.heldSince.IsZero() {
			st.received = st.heldSince
		}
		if err := st.handle(ctx, msg); err != nil {
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
func (st *stream) gather(ctx context.Context) error {
	caughtUp, drained := st.caughtUp()
	if !caughtUp {
		return nil
	}
	if err := st.send(st.emitCtx, st, st.out); err != nil {
		return err
	}
	st.heldSince = time.Time{}
	if !drained || st.cfg.ReceiveWait <= 0 {
		return nil
	}
	// Only after a read that found data: an idle stream's reads end at
	// their deadline with nothing, and are not followed by a wait.
	st.sock.drained.Store(false)
	start := time.Now()
	wait := st.pace(start)
	st.heldSince = start
	if ok, err := st.sock.await(ctx, start.Add(wait)); ok || err != nil {
		return err
	}
	// No socket to wait on (not TCP, or not Linux): a timer.
	if st.wait == nil {
		st.wait = time.NewTimer(wait)
	} else {
		st.wait.Reset(wait)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-st.wait.C:
		return nil
	}
}

// caughtUp reports whether every byte received is handled: the next
// receive waits for the network. drained says the last network read also
// emptied the kernel's queue, so nothing more was waiting then.
func (st *stream) caughtUp() (caughtUp, drained bool) {
	if st.sock == nil || st.conn.Frontend().ReadBufferLen() > 0 || st.sock.buffered.Load() > 0 {
		return false, false
	}
	return true, st.sock.drained.Load()
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
func (st *stream) pace(now time.Time) time.Duration {
	w := st.cfg.ReceiveWait
	if st.cfg.NextCut == nil {
		return w
	}
	cut := st.cfg.NextCut()
	if cut.IsZero() {
		return w
	}
	return min(max(w, cut.Sub(now)/2), max(w, maxPacedWait))
}

// setReadDeadline moves the socket's read deadline only when it changes.
func (st *stream) setReadDeadline(ctx context.Context, now time.Time) {
	if !now.Before(st.pollUntil) {
		st.pollUntil = now.Add(ackPoll)
	}
	dl := st.pollUntil
	if st.nextStatusTime.Before(dl) {
		dl = st.nextStatusTime
	}
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	if !dl.Equal(st.readDeadline) {
		_ = st.conn.Conn().SetReadDeadline(dl)
		st.readDeadline = dl
	}
}

// checkAlive ends a stream whose server stopped answering: periodic status
// updates ask for a reply, and a connection that stays silent long after
// such a request is a dead or black-holed network path, not an idle server.
func (st *stream) checkAlive(now time.Time) error {
	if st.awaitingReply.IsZero() {
		return nil
	}
	if silent := now.Sub(st.awaitingReply); silent > max(2*st.cfg.StatusInterval, 2*time.Second) {
		return fmt.Errorf("no reply from PostgreSQL on slot %q for %s; reconnecting", st.cfg.Slot, silent.Round(time.Millisecond))
	}
	return nil
}

func (st *stream) handle(ctx context.Context, msg pgproto3.BackendMessage) error {
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
			st.tracker.Keepalive(uint64(ka.ServerWALEnd))
			if st.hooks.ServerWALEnd != nil {
				st.hooks.ServerWALEnd(uint64(ka.ServerWALEnd))
			}
			if ka.ReplyRequested {
				return st.sendStatus(ctx, false)
			}
		case pglogrepl.XLogDataByteID:
			if len(m.Data) < 25 {
				return fmt.Errorf("parse xlogdata: %w", errMalformed)
			}
			return st.decode(ctx, m.Data[25:])
		}
	case *pgproto3.ErrorResponse:
		return classify(fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m)))
	case *pgproto3.CopyDone:
		return fmt.Errorf("replication stream ended by the server")
	}
	return nil
}

// decode handles one pgoutput message.
func (st *stream) decode(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return errMalformed
	}
	switch pglogrepl.MessageType(data[0]) {
	case pglogrepl.MessageTypeInsert:
		return st.insert(ctx, data[1:])
	case pglogrepl.MessageTypeMessage:
		return st.message(data[1:])
	case pglogrepl.MessageTypeBegin:
		var m pglogrepl.BeginMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode begin: %w", err)
		}
		st.tx, st.commitLSN, st.commitTime = true, uint64(m.FinalLSN), m.CommitTime
		st.tracker.Begin()
	case pglogrepl.MessageTypeCommit:
		var m pglogrepl.CommitMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode commit: %w", err)
		}
		if err := st.emit(st.emitCtx, st, st.out, Item{Commit: true, EndLSN: uint64(m.TransactionEndLSN)}); err != nil {
			return err
		}
		st.tx = false
		st.tracker.Received(uint64(m.TransactionEndLSN))
		if st.untilCommit {
			return errCommitted
		}
	case pglogrepl.MessageTypeRelation:
		var m pglogrepl.RelationMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode relation: %w", err)
		}
		if m.RelationName != st.cfg.Table {
			st.log.Warn().Str("relation", m.Namespace+"."+m.RelationName).Msg("publication includes another table; its inserts are ignored")
			delete(st.relations, m.RelationID)
			return nil
		}
		return st.relation(ctx, &m)
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
func (st *stream) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	rel, err := st.newRelation(ctx, m)
	if err != nil {
		return err
	}
	st.relations[m.RelationID] = rel
	return nil
}

func (st *stream) insert(_ context.Context, body []byte) error {
	if len(body) < 4 {
		return errMalformed
	}
	relID := uint32(body[0])<<24 | uint32(body[1])<<16 | uint32(body[2])<<8 | uint32(body[3])
	rel, ok := st.relations[relID]
	if !ok {
		return nil // a table other than the outbox
	}
	ev := event.Event{CommitLSN: st.commitLSN, CommitTime: st.commitTime}
	if err := rel.decodeInsert(body, &ev, st.types); err != nil {
		return retry.Permanent(fmt.Errorf("decode insert at commit %s: %w", pglogrepl.LSN(st.commitLSN), err))
	}
	return st.emitEvent(st.emitCtx, st, st.out, ev)
}

// errCommitted ends the shutdown read once the open transaction is whole.
var errCommitted = errors.New("open transaction complete")
