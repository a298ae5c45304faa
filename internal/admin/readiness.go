package admin

import (
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/outbox-relay/relay/internal/replication"
	"github.com/outbox-relay/relay/internal/status"
)

// ReadinessConfig sets the limits of Readiness.
type ReadinessConfig struct {
	// MaxSilence is the longest time without sign of life from the stream
	// (a status update the server acknowledged, a keepalive, or the
	// confirmed LSN moving) before the relay counts as hung. It is judged
	// only once the server showed when it last heard from the relay
	// (pg_stat_replication.reply_time, visible to roles with
	// pg_read_all_stats): without that, an idle stream has no sign of life
	// to show, and a hung one is caught as stuck as soon as WAL moves.
	MaxSilence time.Duration
	// StuckAfter is how long the confirmed LSN may stand still while the
	// server has sent WAL beyond it (ClickHouse down, a batch that cannot
	// be written, ...).
	StuckAfter time.Duration
}

// ReadinessFor derives the limits from the relay's status interval: status
// updates go out at least every statusInterval and the slot is polled every
// status.PollInterval, so both limits are several of those apart.
func ReadinessFor(statusInterval time.Duration) ReadinessConfig {
	return ReadinessConfig{
		MaxSilence: 6*statusInterval + 2*status.PollInterval(statusInterval),
		StuckAfter: 10 * statusInterval,
	}
}

// Readiness tracks the replication stream from events and answers /readyz.
// Every event carries its time, so tests need no clock. It is safe for
// concurrent use: the replication goroutine, the slot poller and the HTTP
// server call it.
//
// Ready is true while the stream is connected, showed a sign of life within
// MaxSilence (when the server tells reply times), and is not stuck: the
// confirmed LSN has not stood still for StuckAfter while the server's WAL
// end was beyond it.
type Readiness struct {
	cfg ReadinessConfig

	mu        sync.Mutex
	connected bool
	// lastLife is the latest sign of life: connect, keepalive, status
	// update acknowledged by the server, confirmed LSN moved.
	lastLife time.Time
	// replies is true once the server told when it last heard from the
	// relay; only then is silence judged.
	replies bool
	acked   uint64 // highest confirmed LSN seen
	walEnd  uint64 // highest WAL end the server reported sending
	// behindSince is when walEnd was first seen beyond acked, for the
	// current acked; zero when not behind.
	behindSince time.Time
	// lost says why events may have been lost ("" when not): sticky for
	// the life of the process (the record in PostgreSQL outlives it).
	lost string
	// sinkErr is why the last write to ClickHouse failed ("" when it
	// succeeded), since sinkSince.
	sinkErr   string
	sinkSince time.Time
}

// SinkWrite records the outcome of a write attempt to ClickHouse: the
// relay is not ready from a failed attempt until a write succeeds (a hung
// or unreachable ClickHouse shows at once, not only once the LSN stood
// still for StuckAfter).
func (r *Readiness) SinkWrite(err error, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.sinkErr = ""
		return
	}
	if r.sinkErr == "" {
		r.sinkSince = at
	}
	r.sinkErr = err.Error()
}

// EventsMayBeLost records that the slot was lost or recreated at at in
// message mode. The relay is not ready from then on: an operator has to
// reconcile (see relay status).
func (r *Readiness) EventsMayBeLost(slot string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost = fmt.Sprintf("CRITICAL: replication slot %q was lost or recreated at %s in message mode: events may have been lost",
		slot, at.UTC().Format(time.RFC3339))
}

var _ State = (*Readiness)(nil)

// NewReadiness returns a tracker that is not ready until the stream
// connects.
func NewReadiness(cfg ReadinessConfig) *Readiness {
	return &Readiness{cfg: cfg}
}

// StreamConnected records that the replication stream went up or down.
func (r *Readiness) StreamConnected(up bool, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.connected = up
	if up {
		r.life(at)
		r.behindSince = time.Time{} // a new session starts from what is confirmed
	}
}

// Acked records the confirmed LSN as seen at at (the slot's
// confirmed_flush_lsn). Only a move forward from a known position is a sign
// of life; the first value seen is just where the relay stands.
func (r *Readiness) Acked(lsn uint64, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if lsn <= r.acked {
		return
	}
	if r.acked != 0 {
		r.life(at)
	}
	r.acked = lsn
	r.behindSince = time.Time{}
	r.markBehind(at)
}

// ServerWALEnd records the WAL end the server reported (keepalive) or has
// sent to the relay (pg_stat_replication.sent_lsn).
func (r *Readiness) ServerWALEnd(lsn uint64, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.walEnd = max(r.walEnd, lsn)
	r.markBehind(at)
}

// Keepalive records a keepalive from the server: a sign of life of the
// receiving side, and a WAL end.
func (r *Readiness) Keepalive(walEnd uint64, at time.Time) {
	r.mu.Lock()
	r.life(at)
	r.mu.Unlock()
	r.ServerWALEnd(walEnd, at)
}

// Replied records that the server received a standby status update at at.
func (r *Readiness) Replied(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.replies = true
	r.life(at)
}

func (r *Readiness) life(at time.Time) {
	if at.After(r.lastLife) {
		r.lastLife = at
	}
}

func (r *Readiness) markBehind(at time.Time) {
	if r.walEnd > r.acked && r.behindSince.IsZero() {
		r.behindSince = at
	}
}

// Ready reports whether the relay is ready at now, and why (or why not).
func (r *Readiness) Ready(now time.Time) (bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.lost != "":
		return false, r.lost
	case !r.connected:
		return false, "replication stream is not connected"
	case r.replies && now.Sub(r.lastLife) > r.cfg.MaxSilence:
		return false, fmt.Sprintf("no sign of life from the replication stream for %s (limit %s)",
			now.Sub(r.lastLife).Round(time.Second), r.cfg.MaxSilence)
	case !r.behindSince.IsZero() && now.Sub(r.behindSince) >= r.cfg.StuckAfter:
		return false, fmt.Sprintf("stuck: confirmed LSN %s has not moved for %s while the server sent up to %s",
			pglogrepl.LSN(r.acked), now.Sub(r.behindSince).Round(time.Second), pglogrepl.LSN(r.walEnd))
	case r.sinkErr != "":
		return false, fmt.Sprintf("ClickHouse writes failing for %s: %s", now.Sub(r.sinkSince).Round(time.Second), r.sinkErr)
	}
	if r.acked == 0 {
		return true, "streaming"
	}
	return true, fmt.Sprintf("streaming; confirmed LSN %s", pglogrepl.LSN(r.acked))
}

// ObserveSlot feeds a slot sample from status.PollSlot: the confirmed LSN,
// what the walsender has sent (or, when pg_stat_replication hides it from
// this role, the current WAL position, which an idle relay also reaches),
// and when the server last heard from the relay (ages are by the server's
// clock, so clock skew does not matter).
func (r *Readiness) ObserveSlot(s status.SlotSample) {
	if !s.Exists || !s.Active {
		return
	}
	r.Acked(s.ConfirmedLSN, s.At)
	if end := s.SentLSN; end > 0 {
		r.ServerWALEnd(end, s.At)
	} else if s.CurrentLSN > 0 {
		r.ServerWALEnd(s.CurrentLSN, s.At)
	}
	if s.ReplyAge != nil {
		r.Replied(s.At.Add(-*s.ReplyAge))
	}
}

// Hooks returns h with the stream events also sent to r (h's own hooks
// still run first).
func (r *Readiness) Hooks(h replication.Hooks) replication.Hooks {
	connected, walEnd := h.Connected, h.ServerWALEnd
	h.Connected = func(up bool) {
		if connected != nil {
			connected(up)
		}
		r.StreamConnected(up, time.Now())
	}
	h.ServerWALEnd = func(lsn uint64) {
		if walEnd != nil {
			walEnd(lsn)
		}
		r.Keepalive(lsn, time.Now())
	}
	return h
}
