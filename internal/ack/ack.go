// Package ack decides which WAL position the relay confirms to PostgreSQL.
//
// Two positions are kept apart: written (everything received from the
// stream) and flushed (everything durably in the sink). The standby status
// update reports flushed, so PostgreSQL only recycles WAL whose events are in
// the sink. Never report a position that was only received.
//
// When nothing is in flight (every received transaction is flushed and none
// is open), a keepalive's WAL end may be confirmed too: otherwise an idle
// outbox on a busy database would pin WAL forever.
//
// Tracker is safe for concurrent use: the relay's completer calls Confirm
// (after a batch was written and its rows deleted), the replication
// goroutine calls the rest.
package ack

import (
	"sync"
)

// Tracker holds the replication positions.
type Tracker struct {
	mu sync.Mutex
	// received is the end LSN of the last complete transaction received.
	received uint64
	// flushed is the highest position confirmed as durable in the sink.
	flushed uint64
	// inTx is true between a BEGIN and its COMMIT.
	inTx bool
	// idleEnd is a keepalive WAL end seen while nothing was in flight.
	idleEnd uint64
}

// New starts tracking from start, the slot's confirmed position.
func New(start uint64) *Tracker {
	return &Tracker{received: start, flushed: start}
}

// Begin marks a transaction as open.
func (t *Tracker) Begin() {
	t.mu.Lock()
	t.inTx = true
	t.mu.Unlock()
}

// Received records that the transaction ending at endLSN was fully received
// and handed on.
func (t *Tracker) Received(endLSN uint64) {
	t.mu.Lock()
	t.inTx = false
	if endLSN > t.received {
		t.received = endLSN
	}
	t.mu.Unlock()
}

// Confirm records that every transaction ending at or before lsn is durably
// in the sink. It is the only way the confirmed position moves forward for
// data.
func (t *Tracker) Confirm(lsn uint64) {
	t.mu.Lock()
	if lsn > t.flushed {
		t.flushed = lsn
	}
	t.mu.Unlock()
}

// Keepalive offers the server's WAL end from a keepalive. It is remembered
// only when nothing is in flight, because all messages before it have been
// received and, with nothing in flight, flushed.
func (t *Tracker) Keepalive(walEnd uint64) {
	t.mu.Lock()
	if !t.inTx && t.flushed >= t.received && walEnd > t.idleEnd {
		t.idleEnd = walEnd
	}
	t.mu.Unlock()
}

// Position is what a standby status update should report: written is what
// has been received, flushed is what may be recycled.
func (t *Tracker) Position() (written, flushed uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	flushed = t.flushed
	if !t.inTx && t.flushed >= t.received && t.idleEnd > flushed {
		flushed = t.idleEnd
	}
	written = max(t.received, flushed)
	return written, flushed
}

// Confirmed is the flushed position from the sink's point of view (without
// the idle skip-ahead).
func (t *Tracker) Confirmed() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.flushed
}

// Start raises both positions to lsn, the slot's confirmed position at
// connect time: nothing before it will be streamed again.
func (t *Tracker) Start(lsn uint64) {
	t.mu.Lock()
	t.inTx = false
	t.flushed = max(t.flushed, lsn)
	t.received = max(t.received, t.flushed)
	t.mu.Unlock()
}

// Reset sets both positions to lsn, the consistent point of a slot just
// created, dropping what the tracker held: positions of an earlier slot,
// possibly on another server (a promoted standby whose WAL is behind the
// old primary's), say nothing about this one.
func (t *Tracker) Reset(lsn uint64) {
	t.mu.Lock()
	t.inTx = false
	t.flushed, t.received, t.idleEnd = lsn, lsn, 0
	t.mu.Unlock()
}
