package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/failpoint"
	"github.com/outbox-relay/relay/internal/retry"
)

// ackPoll bounds how long a confirmed position waits before it is sent when
// the stream is quiet; under load the check runs on every message.
const ackPoll = time.Second

// minStatusGap keeps a busy stream from sending a status update per batch.
const minStatusGap = 200 * time.Millisecond

// finalStatusTimeout bounds the last status update on shutdown.
const finalStatusTimeout = 5 * time.Second

// Run connects, makes sure the slot exists, backfills a new slot, and
// streams until ctx ends or the stream fails. After ctx ends it waits for
// drained to close (the consumer flushed and acknowledged what it held), up
// to DrainTimeout, sends a final status update and returns nil.
func (s *Source) Run(ctx context.Context, out chan<- []Item, drained <-chan struct{}) (err error) {
	// Events of a transaction the stream ended inside never reach the
	// consumer.
	defer s.dropQueued()
	defer func() {
		// A broken stream often means a broken network path: drop the
		// pooled connections too, rather than meet them dead one by one.
		if err != nil && ctx.Err() == nil && !retry.IsPermanent(err) {
			if r, ok := s.db.(interface{ Reset() }); ok {
				r.Reset()
			}
		}
	}()
	// Control queries are bounded: a pooled connection whose network path
	// died must not hang the start of a session.
	cctx, cancelCheck := context.WithTimeout(ctx, controlTimeout)
	err = Check(cctx, s.db, s.cfg)
	if err == nil {
		s.fitStatusInterval(cctx)
	}
	cancelCheck()
	if err != nil {
		return err
	}
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalStatusTimeout)
		defer cancel()
		_ = conn.Close(cctx)
		s.hook(false)
	}()
	emitCtx, cancelEmit := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelEmit()
	stopOnDrained := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(s.cfg.DrainTimeout, cancelEmit)
		<-emitCtx.Done()
		t.Stop()
	})
	defer stopOnDrained()
	go func() {
		select {
		case <-drained:
			cancelEmit()
		case <-emitCtx.Done():
		}
	}()
	s.emitCtx = emitCtx
	if err := s.prepareSlot(ctx, conn, out); err != nil {
		if ctx.Err() != nil {
			// Stopped during backfill: the pending marker makes the next
			// start deliver the rest.
			s.end(out, drained)
			return nil
		}
		return err
	}
	err = pglogrepl.StartReplication(ctx, conn, pgx.Identifier{s.cfg.Slot}.Sanitize(),
		pglogrepl.LSN(s.tracker.Confirmed()), pglogrepl.StartReplicationOptions{
			Mode: pglogrepl.LogicalReplication, PluginArgs: s.pluginArgs()})
	if err != nil {
		if ctx.Err() != nil {
			s.end(out, drained)
			return nil
		}
		return s.recoverUnseenPublication(ctx, conn, classify(fmt.Errorf("start replication on slot %q: %w", s.cfg.Slot, err)))
	}
	s.hook(true)
	s.log.Info().Str("from_lsn", pglogrepl.LSN(s.tracker.Confirmed()).String()).Msg("streaming")
	st := newStream(s, conn, out)
	err = st.loop(ctx)
	if ctx.Err() == nil {
		return s.recoverUnseenPublication(ctx, conn, err)
	}
	return st.finish(ctx, drained)
}

// recoverUnseenPublication handles streamErr when it says the publication
// does not exist although it does now: it was dropped and created again
// (e.g. by relay migrate) after the slot's position, and pgoutput reads it
// as of the WAL it decodes, so this slot can never stream with it. As for a
// lost slot, the slot is dropped and the next session creates it again and
// backfills the undelivered rows from the outbox table (delivered rows are
// deleted, so the table holds every event the old slot still owed). Any
// other error is returned as it is.
func (s *Source) recoverUnseenPublication(ctx context.Context, conn *pgconn.PgConn, streamErr error) error {
	var pgErr *pgconn.PgError
	if !errors.As(streamErr, &pgErr) || pgErr.Code != sqlstateUndefinedObject || !strings.Contains(pgErr.Message, "publication") {
		return streamErr
	}
	cctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	if err := Check(cctx, s.db, s.cfg); err != nil {
		return err // really missing or broken: Check says what to do
	}
	s.log.Error().Err(streamErr).Str("publication", s.cfg.Publication).
		Msg("the publication was created after the slot's position (dropped and created again?): the slot cannot stream with it; " +
			"recreating the slot and backfilling from the outbox table")
	if s.hooks.SlotLost != nil {
		s.hooks.SlotLost(s.cfg.Slot)
	}
	// The walsender holds the slot until its connection is gone; a new
	// connection drops it once it is free.
	_ = conn.Close(cctx)
	dconn, err := s.connect(cctx)
	if err != nil {
		return err
	}
	defer func() { _ = dconn.Close(context.WithoutCancel(cctx)) }()
	err = pglogrepl.DropReplicationSlot(cctx, dconn, pgx.Identifier{s.cfg.Slot}.Sanitize(), pglogrepl.DropReplicationSlotOptions{Wait: true})
	if err != nil {
		return classify(fmt.Errorf("drop slot %q, which predates publication %q: %w", s.cfg.Slot, s.cfg.Publication, err))
	}
	return fmt.Errorf("%w: slot %q predated publication %q and was dropped; it is created again with a backfill", ErrSlotLost, s.cfg.Slot, s.cfg.Publication)
}

// pluginArgs are pgoutput's options; messages only in message mode, so a
// relay without it never pays for other applications' messages.
func (s *Source) pluginArgs() []string {
	args := []string{
		"proto_version '1'",
		"publication_names " + quoteLiteral(s.cfg.Publication),
		"binary 'true'",
	}
	if s.cfg.MessagePrefix != "" {
		args = append(args, "messages 'true'")
	}
	return args
}

// fitStatusInterval keeps status updates well inside the server's
// wal_sender_timeout, which ends a stream that stays silent that long (also
// while the sink is down and nothing is read).
func (s *Source) fitStatusInterval(ctx context.Context) {
	var ms int64
	err := s.db.QueryRow(ctx, "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_sender_timeout'").Scan(&ms)
	if err != nil || ms <= 0 {
		return
	}
	if limit := time.Duration(ms) * time.Millisecond / 3; s.cfg.StatusInterval > limit {
		s.log.Info().Dur("wal_sender_timeout", time.Duration(ms)*time.Millisecond).Dur("status_interval", limit).
			Msg("status interval lowered to a third of wal_sender_timeout")
		s.cfg.StatusInterval = limit
	}
}

func (s *Source) hook(connected bool) {
	if s.hooks.Connected != nil {
		s.hooks.Connected(connected)
	}
}

func (s *Source) connect(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(s.cfg.ConnString)
	if err != nil {
		return nil, retry.Permanent(fmt.Errorf("parse DATABASE_URL: %w", err))
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "outbox-relay"
	wrapSocket(cfg)
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, classify(fmt.Errorf("open replication connection: %w", err))
	}
	return conn, nil
}

// prepareSlot creates the slot when it is missing (then backfills from the
// exported snapshot) and starts the tracker at the slot's position.
func (s *Source) prepareSlot(ctx context.Context, conn *pgconn.PgConn, out chan<- []Item) error {
	st, err := readSlot(ctx, s.db, s.cfg.Slot)
	if err != nil {
		return err
	}
	if st.exists && st.plugin != "pgoutput" {
		return retry.Permanent(fmt.Errorf("replication slot %q uses plugin %q, the relay needs pgoutput", s.cfg.Slot, st.plugin))
	}
	if err := s.checkSynced(ctx, conn, &st); err != nil {
		return err
	}
	if s.cfg.MessagePrefix != "" {
		if err := s.checkMessageLoss(ctx, st); err != nil {
			return err
		}
	}
	if st.exists && st.walStatus == "lost" {
		// The WAL the slot needed is gone: events may have been skipped by
		// the stream. Never skip ahead silently: say so loudly, then recover
		// every undelivered row from the outbox table via a new slot.
		s.log.Error().Msg("replication slot is lost (wal_status 'lost'); recreating it and backfilling from the outbox table")
		if s.hooks.SlotLost != nil {
			s.hooks.SlotLost(s.cfg.Slot)
		}
		if err := pglogrepl.DropReplicationSlot(ctx, conn, pgx.Identifier{s.cfg.Slot}.Sanitize(), pglogrepl.DropReplicationSlotOptions{}); err != nil {
			return classify(fmt.Errorf("drop lost slot %q: %w", s.cfg.Slot, err))
		}
		st.exists = false
	}
	if st.exists {
		pending, err := s.backfillPending(ctx)
		if err != nil {
			return err
		}
		if pending {
			// A relay died between creating the slot and delivering its
			// snapshot: deliver every row still in the table (rows the
			// stream also brings collapse in the sink's read path).
			s.log.Warn().Msg("backfill of the slot's snapshot did not finish; delivering the outbox table's rows again")
			n, err := s.backfill(ctx, "", 0, out)
			if err != nil {
				return fmt.Errorf("resume backfill: %w", err)
			}
			s.log.Info().Int("events", n).Msg("backfill resumed")
		}
		s.matchFailover(ctx, conn, st)
		s.tracker.Start(st.confirmed)
		return nil
	}
	if err := s.setBackfillPending(ctx, true); err != nil {
		return err
	}
	snapshot, consistent, err := createSlot(ctx, conn, s.cfg.Slot, s.wantFailover(conn))
	if err != nil {
		return err
	}
	s.log.Warn().Str("consistent_lsn", pglogrepl.LSN(consistent).String()).
		Msg("replication slot was missing: created it; delivering the rows already in the outbox table from its snapshot")
	if s.hooks.SlotCreated != nil {
		s.hooks.SlotCreated(s.cfg.Slot)
	}
	n, err := s.backfill(ctx, snapshot, consistent, out)
	if err != nil {
		return fmt.Errorf("backfill from snapshot %s: %w", snapshot, err)
	}
	s.log.Info().Int("events", n).Msg("backfill done")
	if s.hooks.Backfilled != nil {
		s.hooks.Backfilled(n)
	}
	// The new slot's own starting point: confirming it skips no WAL. The
	// snapshot's rows are protected by the backfill marker, not by an LSN.
	// Reset, not Start: after a failover without a failover slot the old
	// primary's positions may lie beyond this server's WAL.
	s.tracker.Reset(consistent)
	return nil
}

// backfill sends every row of the outbox table as seen by the slot's
// snapshot, then a Commit at the consistent point: rows committed before it
// are in the snapshot, rows committed after it come from the stream.
func (s *Source) backfill(ctx context.Context, snapshot string, consistent uint64, out chan<- []Item) (int, error) {
	tx, err := s.db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, classify(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if snapshot != "" {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(snapshot)); err != nil {
			return 0, classify(fmt.Errorf("import snapshot: %w", err))
		}
	}
	// Every column, in the binary format, as the stream gets them: one
	// decoding for both (a value the sink cannot store is dead-lettered
	// either way, instead of failing a scan here).
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT * FROM %s ORDER BY event_date_time, id`, pgx.Identifier{s.cfg.Table}.Sanitize()),
		pgx.QueryResultFormats{pgx.BinaryFormatCode})
	if err != nil {
		return 0, classify(fmt.Errorf("read outbox table: %w", err))
	}
	defer rows.Close()
	rel, formats, err := s.rowRelation(ctx, rows.FieldDescriptions())
	if err != nil {
		return 0, err
	}
	types := pgtype.NewMap()
	n := 0
	for rows.Next() {
		ev := event.Event{CommitLSN: consistent}
		if err := rel.decodeRow(rows.RawValues(), formats, &ev, types); err != nil {
			return n, retry.Permanent(fmt.Errorf("decode outbox row: %w", err))
		}
		n++
		if err := s.emitBackfill(s.emitCtx, out, ev); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, classify(fmt.Errorf("read outbox table: %w", err))
	}
	done := func(ctx context.Context) error { return s.setBackfillPending(ctx, false) }
	return n, s.emit(s.emitCtx, nil, out, Item{Commit: true, EndLSN: consistent, AfterFlush: done, Backfill: true})
}

// rowRelation is the outbox table's shape as a query returns it, mapped
// like the stream's RELATION message (extra columns included), and the
// columns' result formats.
func (s *Source) rowRelation(ctx context.Context, fds []pgconn.FieldDescription) (*relation, []int16, error) {
	m := pglogrepl.RelationMessage{RelationName: s.cfg.Table}
	formats := make([]int16, len(fds))
	for i, fd := range fds {
		m.RelationID = fd.TableOID
		m.Columns = append(m.Columns, &pglogrepl.RelationMessageColumn{Name: fd.Name, DataType: fd.DataTypeOID, TypeModifier: fd.TypeModifier})
		formats[i] = fd.Format
	}
	rel, err := s.newRelation(ctx, &m)
	if err != nil {
		return nil, nil, err
	}
	rel.name = s.cfg.Table
	return rel, formats, nil
}

// backfillPending reads the slot's marker in outbox_relay_state.
func (s *Source) backfillPending(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	var pending bool
	err := s.db.QueryRow(ctx, "SELECT backfill_pending FROM outbox_relay_state WHERE slot = $1", s.cfg.Slot).Scan(&pending)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, classify(fmt.Errorf("read outbox_relay_state (run `relay migrate`): %w", err))
	}
	return pending, nil
}

// setBackfillPending records whether the slot's snapshot still has to be
// delivered; it is set before the slot exists and cleared only after the
// snapshot's rows are in the sink.
func (s *Source) setBackfillPending(ctx context.Context, pending bool) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	_, err := s.db.Exec(ctx, `INSERT INTO outbox_relay_state (slot, backfill_pending) VALUES ($1, $2)
		ON CONFLICT (slot) DO UPDATE SET backfill_pending = EXCLUDED.backfill_pending, updated_at = now()`, s.cfg.Slot, pending)
	if err != nil {
		return classify(fmt.Errorf("write outbox_relay_state (run `relay migrate`): %w", err))
	}
	return nil
}

// emitEvent takes the event's weight from the budget, then queues it.
func (s *Source) emitEvent(ctx context.Context, st *stream, out chan<- []Item, ev event.Event) error {
	return s.emitItem(ctx, st, out, Item{Event: ev})
}

// emitBackfill is emitEvent for a row read from the table.
func (s *Source) emitBackfill(ctx context.Context, out chan<- []Item, ev event.Event) error {
	return s.emitItem(ctx, nil, out, Item{Event: ev, Backfill: true})
}

func (s *Source) emitItem(ctx context.Context, st *stream, out chan<- []Item, it Item) error {
	ev := it.Event
	w := ev.Weight(s.cfg.BudgetBytes)
	for !s.budget.TryAcquire(w) {
		// The budget is spent: hand over what is queued first, or the
		// consumer could wait for it while this waits for the budget.
		if err := s.send(ctx, st, out); err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, s.cfg.StatusInterval/2)
		err := s.budget.Acquire(actx, w)
		cancel()
		if err == nil {
			break
		}
		// Acquire failed: its weight was not taken; loop to TryAcquire again.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Budget still full (the sink is slow or down): stay alive.
		if st != nil {
			if err := st.sendStatus(ctx, false); err != nil {
				return err
			}
		}
	}
	return s.emit(ctx, st, out, it)
}

// maxQueued is the most items handed over in one send.
const maxQueued = 256

// emit queues it and hands the queue over when it is full, at the end of
// the stream, and at the end of a transaction that is not streamed (the
// backfill) or after which the stream stops. The stream's transactions are
// otherwise handed over when it caught up (see gather): one channel send,
// one wake-up of the consumer, per read of the network rather than per
// transaction.
func (s *Source) emit(ctx context.Context, st *stream, out chan<- []Item, it Item) error {
	if st != nil {
		it.At = st.received
	} else {
		it.At = time.Now()
	}
	if s.queued == nil {
		// Sized like the last hand-over: one allocation, not a doubling
		// series (the consumer keeps the slice it was handed).
		s.queued = make([]Item, 0, min(max(s.lastQueued, 16), maxQueued))
	}
	s.queued = append(s.queued, it)
	if it.End || len(s.queued) >= maxQueued || it.Commit && (st == nil || st.sock == nil || st.untilCommit) {
		return s.send(ctx, st, out)
	}
	return nil
}

// send hands the queued items over, keeping the stream alive while out is
// full. On failure (the consumer is gone) they are dropped, their weight
// given back.
func (s *Source) send(ctx context.Context, st *stream, out chan<- []Item) error {
	if len(s.queued) == 0 {
		return nil
	}
	its := s.queued
	s.lastQueued = len(its)
	select {
	case out <- its:
		s.queued = nil
		return nil
	default:
	}
	t := time.NewTicker(s.cfg.StatusInterval / 2)
	defer t.Stop()
	for {
		select {
		case out <- its:
			s.queued = nil
			return nil
		case <-ctx.Done():
			s.dropQueued()
			return ctx.Err()
		case <-t.C:
			if st != nil {
				if err := st.sendStatus(ctx, false); err != nil {
					s.dropQueued()
					return err
				}
			}
		}
	}
}

// dropQueued gives back the weight of queued events that will never be
// handed over.
func (s *Source) dropQueued() {
	for _, it := range s.queued {
		if !it.Commit && !it.End {
			s.budget.Release(it.Event.Weight(s.cfg.BudgetBytes))
		}
	}
	s.queued = nil
}

// stream is the state of one START_REPLICATION session.
type stream struct {
	*Source
	conn      *pgconn.PgConn
	sock      *socket     // conn's socket (see gather); nil if not wrapped
	wait      *time.Timer // gather's wait, reused
	out       chan<- []Item
	types     *pgtype.Map
	relations map[uint32]*relation
	// msgType and msgEnv are the last message's event type and
	// environment, reused while they repeat (see intern).
	msgType, msgEnv string

	tx          bool
	untilCommit bool // shutting down: stop once the open transaction is complete
	commitLSN   uint64
	commitTime  time.Time

	lastStatus     time.Time
	lastSentFlush  uint64
	nextStatusTime time.Time

	pollUntil     time.Time // next forced wake-up of a read
	readDeadline  time.Time // the socket's current read deadline
	awaitingReply time.Time // when a reply was asked for and none came yet
	received      time.Time // when the last message arrived (Item.At)
	// heldSince is when gather's last wait began: the messages read after
	// it arrived no earlier, and count from then (see gather).
	heldSince time.Time
}

func newStream(s *Source, conn *pgconn.PgConn, out chan<- []Item) *stream {
	st := &stream{Source: s, conn: conn, out: out, types: pgtype.NewMap(), relations: map[uint32]*relation{}}
	st.sock, _ = conn.Conn().(*socket)
	return st
}

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

// recheck re-runs Check. It runs after the keepalive whose WAL end is about
// to be confirmed arrived, so a table dropped from the publication before
// that point is caught before anything it hid is skipped. Skip-aheads only
// happen on an idle stream, so this costs a few queries per status interval.
func (st *stream) recheck(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	return Check(cctx, st.db, st.cfg)
}

// controlTimeout bounds each small control query (checks, slot state).
const controlTimeout = 10 * time.Second

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

// newRelation maps a table's shape (a Relation message, or the columns of
// the backfill's query) onto events; see stream.relation.
func (s *Source) newRelation(ctx context.Context, m *pglogrepl.RelationMessage) (*relation, error) {
	var notNull map[string]bool
	if names := extraNames(m); len(names) > 0 {
		var err error
		if notNull, err = s.notNull(ctx, m.RelationID); err != nil {
			return nil, err
		}
	}
	rel, err := newRelation(m, len(s.shapes)+1, notNull)
	if err != nil {
		if s.cfg.MessagePrefix != "" {
			err = fmt.Errorf("%w. %s", err, messageModeSlotDrop)
		}
		return nil, retry.Permanent(err)
	}
	if seen := s.shapes[keyOf(rel.columns)]; seen != nil {
		rel.columns = seen
	} else if rel.columns != nil {
		s.shapes[rel.columns.Key] = rel.columns
		cols := make([]string, len(rel.columns.List))
		for i, c := range rel.columns.List {
			cols[i] = c.Name
		}
		s.log.Info().Str("relation", rel.name).Int("shape", rel.columns.Version).Strs("extra_columns", cols).Msg("outbox table shape")
	}
	return rel, nil
}

func keyOf(c *event.Columns) string {
	if c == nil {
		return ""
	}
	return c.Key
}

// notNull reads which columns of the table are NOT NULL.
func (s *Source) notNull(ctx context.Context, relID uint32) (map[string]bool, error) {
	cctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	var names []string
	err := s.db.QueryRow(cctx, `SELECT coalesce(array_agg(attname::text) FILTER (WHERE attnotnull), '{}')
		FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, relID).Scan(&names)
	if err != nil {
		return nil, classify(fmt.Errorf("read the outbox table's NOT NULL columns: %w", err))
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m, nil
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

func (st *stream) maybeSendStatus(ctx context.Context, now time.Time) error {
	if now.After(st.nextStatusTime) {
		// Periodic updates ask for a reply: its absence reveals a dead path.
		if st.awaitingReply.IsZero() {
			st.awaitingReply = now
		}
		return st.sendStatus(ctx, true)
	}
	if _, flushed := st.tracker.Position(); flushed != st.lastSentFlush && now.Sub(st.lastStatus) >= minStatusGap {
		return st.sendStatus(ctx, false)
	}
	return nil
}

// sendStatus reports the tracker's positions: written is what was received,
// flushed only what the sink holds.
func (st *stream) sendStatus(ctx context.Context, reply bool) error {
	written, flushed := st.tracker.Position()
	if flushed > st.tracker.Confirmed() && flushed > st.lastSentFlush {
		// Confirming a keepalive's WAL end skips WAL that carried no outbox
		// events for us. That is only true while the publication still
		// streams the outbox table: check before skipping ahead.
		if err := st.recheck(ctx); err != nil {
			return err
		}
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, st.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(written),
		WALFlushPosition: pglogrepl.LSN(flushed),
		WALApplyPosition: pglogrepl.LSN(flushed),
		ReplyRequested:   reply,
	})
	if err != nil {
		return classify(fmt.Errorf("send standby status: %w", err))
	}
	now := time.Now()
	advanced := flushed > st.lastSentFlush && st.lastSentFlush != 0
	st.lastStatus, st.lastSentFlush, st.nextStatusTime = now, flushed, now.Add(st.cfg.StatusInterval)
	if advanced {
		st.fp.Hit(failpoint.AfterStatusUpdate)
	}
	return nil
}

// confirmFinal waits until the slot shows the final position, reading (and
// dropping) what the walsender still sends meanwhile so that it is never
// blocked on a full socket and gets to our status update. Closing before
// that could lose the update: the server may reset the connection while
// sending, before it read the update. (Ending the copy with CopyDone instead
// would wait until the walsender caught up, which a busy database may never
// let it do.)
func (st *stream) confirmFinal(ctx context.Context, flushed uint64) {
	deadline, _ := ctx.Deadline()
	resend := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		slot, err := readSlot(ctx, st.db, st.cfg.Slot)
		if err == nil && slot.confirmed >= flushed {
			return
		}
		if time.Now().After(resend) {
			_ = st.sendStatus(ctx, true)
			resend = time.Now().Add(500 * time.Millisecond)
		}
		_ = st.conn.Conn().SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			_, err := st.conn.ReceiveMessage(context.Background())
			if err != nil && !pgconn.Timeout(err) {
				return // connection gone: nothing more to confirm on it
			}
			if err != nil {
				break
			}
		}
	}
	st.log.Warn().Str("flushed", pglogrepl.LSN(flushed).String()).Msg("could not confirm the final position in time; the last transactions may be streamed again")
}

// errCommitted ends the shutdown read once the open transaction is whole.
var errCommitted = errors.New("open transaction complete")

// end tells the consumer no item follows, then waits until it drained.
func (s *Source) end(out chan<- []Item, drained <-chan struct{}) {
	if err := s.emit(s.emitCtx, nil, out, Item{End: true}); err != nil {
		return // the consumer is gone or the drain timed out
	}
	select {
	case <-drained:
	case <-s.emitCtx.Done():
		s.log.Warn().Dur("timeout", s.cfg.DrainTimeout).Msg("consumer did not drain in time; confirming what it flushed so far")
	}
}

// finish stops the stream on shutdown: it first reads on to the end of an
// open transaction (so no transaction is split between this run and the
// next), tells the consumer no item follows, waits until it flushed,
// confirms that position and ends the copy cleanly, so the walsender has
// applied the final status update before the connection closes.
func (st *stream) finish(ctx context.Context, drained <-chan struct{}) error {
	if st.tx {
		st.untilCommit = true
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.cfg.DrainTimeout/2)
		err := st.loop(rctx)
		cancel()
		if !errors.Is(err, errCommitted) {
			st.log.Warn().Err(err).Msg("stopped inside a transaction; it is streamed again on the next start")
		}
	}
	st.end(st.out, drained)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalStatusTimeout)
	defer cancel()
	if err := st.sendStatus(fctx, true); err != nil {
		return fmt.Errorf("final status update: %w", err)
	}
	_, flushed := st.tracker.Position()
	st.confirmFinal(fctx, flushed)
	st.log.Info().Str("confirmed_lsn", pglogrepl.LSN(flushed).String()).Msg("replication stopped")
	return nil
}
