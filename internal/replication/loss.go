package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// checkMessageLoss runs in message mode before the slot is prepared. Events
// carried by messages exist only in WAL: a slot that is lost, or missing
// after a relay already ran on it (outbox_relay_state has its row), means
// the messages emitted in between were never decoded for us. That is
// recorded (events_lost_at) and reported; a mark recorded earlier is
// reported again on every start until an operator clears it.
func (s *Source) checkMessageLoss(ctx context.Context, st slotState) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	var (
		known  bool
		lostAt *time.Time
	)
	err := s.db.QueryRow(ctx, "SELECT true, events_lost_at FROM outbox_relay_state WHERE slot = $1", s.cfg.Slot).Scan(&known, &lostAt)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return classify(fmt.Errorf("read outbox_relay_state (run `relay migrate`): %w", err))
	}
	var why string
	switch {
	case st.exists && st.walStatus == "lost":
		why = "the slot is lost (wal_status 'lost')"
	case !st.exists && known:
		why = "the slot was missing and is recreated"
	case !st.exists:
		s.log.Info().Str("message_prefix", s.cfg.MessagePrefix).
			Msg("message mode: creating the slot; messages emitted before it exists are not delivered")
	}
	if why != "" {
		at, err := s.markEventsLost(ctx)
		if err != nil {
			return err
		}
		lostAt = &at
		s.log.Error().Str("message_prefix", s.cfg.MessagePrefix).
			Msgf("CRITICAL: %s in message mode: events may have been lost (messages emitted while no slot kept their WAL are gone)", why)
	}
	if lostAt != nil && s.hooks.EventsMayBeLost != nil {
		s.hooks.EventsMayBeLost(s.cfg.Slot, *lostAt)
	}
	return nil
}

// markEventsLost records now as the slot's events_lost_at.
func (s *Source) markEventsLost(ctx context.Context) (time.Time, error) {
	var at time.Time
	err := s.db.QueryRow(ctx, `INSERT INTO outbox_relay_state (slot, backfill_pending, events_lost_at) VALUES ($1, false, now())
		ON CONFLICT (slot) DO UPDATE SET events_lost_at = now(), updated_at = now() RETURNING events_lost_at`, s.cfg.Slot).Scan(&at)
	if err != nil {
		return at, classify(fmt.Errorf("record lost events in outbox_relay_state (run `relay migrate`): %w", err))
	}
	return at, nil
}
