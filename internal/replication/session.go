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

// controlTimeout bounds each small control query (checks, slot state).
const controlTimeout = 10 * time.Second

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
