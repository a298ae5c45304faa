package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outbox-relay/relay/internal/retry"
)

// finalStatusTimeout bounds the last status update on shutdown.
const finalStatusTimeout = 5 * time.Second

// Run connects, makes sure the slot exists, backfills a new slot, and
// streams until ctx ends or the stream fails. After ctx ends it waits for
// drained to close (the consumer flushed and acknowledged what it held), up
// to DrainTimeout, sends a final status update and returns nil.
func (s *Source) Run(ctx context.Context, out chan<- []Item, drained <-chan struct{}) (err error) {
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
	h := newHandover(out, s.budget, s.cfg.StatusInterval/2)
	// Events of a transaction the stream ended inside never reach the
	// consumer.
	defer h.drop()
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
	hctx, stopHandover := handoverContext(ctx, drained, s.cfg.DrainTimeout)
	defer stopHandover()
	if err := s.prepareSlot(ctx, hctx, conn, h); err != nil {
		if ctx.Err() != nil {
			// Stopped during backfill: the pending marker makes the next
			// start deliver the rest.
			s.end(hctx, h, drained)
			return nil
		}
		return err
	}
	err = pglogrepl.StartReplication(ctx, conn, pgx.Identifier{s.cfg.Slot}.Sanitize(),
		pglogrepl.LSN(s.tracker.Confirmed()), pglogrepl.StartReplicationOptions{
			Mode: pglogrepl.LogicalReplication, PluginArgs: s.pluginArgs()})
	if err != nil {
		if ctx.Err() != nil {
			s.end(hctx, h, drained)
			return nil
		}
		return s.recoverUnseenPublication(ctx, conn, classify(fmt.Errorf("start replication on slot %q: %w", s.cfg.Slot, err)))
	}
	s.hook(true)
	s.log.Info().Str("from_lsn", pglogrepl.LSN(s.tracker.Confirmed()).String()).Msg("streaming")
	ss := newSession(s, conn, h)
	err = ss.receive(ctx, hctx)
	if ctx.Err() == nil {
		return s.recoverUnseenPublication(ctx, conn, err)
	}
	return ss.finish(ctx, hctx, drained)
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
	if !errors.As(streamErr, &pgErr) || pgErr.Code != pgerrcode.UndefinedObject || !strings.Contains(pgErr.Message, "publication") {
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

// session is the state of one START_REPLICATION session: the connection,
// the relations and the open transaction, the standby status's schedule,
// and the reads' deadlines. Only Run's goroutine uses it.
type session struct {
	src       *Source
	conn      *pgconn.PgConn
	sock      *socket     // conn's socket (see gather); nil if not wrapped
	wait      *time.Timer // gather's wait, reused
	h         *handover
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

// newSession starts the session on conn, whose START_REPLICATION
// succeeded. While h waits for the consumer, it keeps the stream alive
// with this session's status updates.
func newSession(src *Source, conn *pgconn.PgConn, h *handover) *session {
	ss := &session{src: src, conn: conn, h: h, types: pgtype.NewMap(), relations: map[uint32]*relation{}}
	ss.sock, _ = conn.Conn().(*socket)
	h.keepAlive = ss.keepAlive
	return ss
}

// controlTimeout bounds each small control query (checks, slot state).
const controlTimeout = 10 * time.Second

// finish stops the stream on shutdown: it first reads on to the end of an
// open transaction (so no transaction is split between this run and the
// next), tells the consumer no item follows, waits until it flushed, then
// confirms that position and waits until the slot shows it (see
// confirmFinal), so that the walsender has applied the final status update
// before the connection closes.
func (ss *session) finish(ctx, hctx context.Context, drained <-chan struct{}) error {
	if ss.tx {
		ss.untilCommit = true
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ss.src.cfg.DrainTimeout/2)
		err := ss.receive(rctx, hctx)
		cancel()
		if !errors.Is(err, errCommitted) {
			ss.src.log.Warn().Err(err).Msg("stopped inside a transaction; it is streamed again on the next start")
		}
	}
	ss.src.end(hctx, ss.h, drained)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalStatusTimeout)
	defer cancel()
	if err := ss.sendStatus(fctx, true); err != nil {
		return fmt.Errorf("final status update: %w", err)
	}
	_, flushed := ss.src.tracker.Position()
	ss.confirmFinal(fctx, flushed)
	ss.src.log.Info().Str("confirmed_lsn", pglogrepl.LSN(flushed).String()).Msg("replication stopped")
	return nil
}

// end tells the consumer no item follows, then waits until it drained.
func (s *Source) end(hctx context.Context, h *handover, drained <-chan struct{}) {
	if err := h.end(hctx); err != nil {
		return // the consumer is gone or the drain timed out
	}
	select {
	case <-drained:
	case <-hctx.Done():
		s.log.Warn().Dur("timeout", s.cfg.DrainTimeout).Msg("consumer did not drain in time; confirming what it flushed so far")
	}
}
