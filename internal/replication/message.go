package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/payload"
	"github.com/outbox-relay/relay/internal/retry"
)

// ldMessage is a pgoutput logical decoding message (protocol 1, after the
// 'M' byte). Content is a view into the network buffer.
type ldMessage struct {
	transactional bool
	lsn           uint64
	prefix        []byte
	content       []byte
}

// parseMessage reads Byte1 flags, Int64 LSN, String prefix, Int32 length
// and the content. It is pglogrepl's LogicalDecodingMessage.Decode without
// the prefix's allocation (the stream compares it per message) and with
// bounds checks; a test compares the two.
func parseMessage(src []byte) (ldMessage, error) {
	var m ldMessage
	if len(src) < 1+8+1+4 {
		return m, errMalformed
	}
	m.transactional = src[0]&1 == 1
	m.lsn = binary.BigEndian.Uint64(src[1:])
	rest := src[9:]
	nul := bytes.IndexByte(rest, 0)
	if nul < 0 || len(rest) < nul+1+4 {
		return m, errMalformed
	}
	m.prefix = rest[:nul]
	rest = rest[nul+1:]
	n := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(n) != uint64(len(rest)) {
		return m, errMalformed
	}
	m.content = rest
	return m, nil
}

// message turns a transactional message of our prefix into an event;
// every other message is counted and skipped. A transactional message
// always arrives between BEGIN and COMMIT, so it carries the commit's LSN
// like the inserts around it, and keeps its place among them.
func (ss *session) message(hctx context.Context, body []byte) error {
	m, err := parseMessage(body)
	if err != nil {
		return retry.Permanent(fmt.Errorf("decode logical decoding message: %w", err))
	}
	if string(m.prefix) != ss.src.cfg.MessagePrefix {
		ss.ignored(MessageOtherPrefix)
		return nil
	}
	if !m.transactional || !ss.tx {
		// Decoded even when its transaction rolled back: never an event.
		ss.ignored(MessageNonTransactional)
		ss.src.log.Warn().Str("prefix", ss.src.cfg.MessagePrefix).Str("lsn", pglogrepl.LSN(m.lsn).String()).
			Msg("non-transactional message with the outbox prefix ignored: publish with pg_logical_emit_message(true, ...)")
		return nil
	}
	ev := event.Event{CommitLSN: ss.commitLSN, CommitTime: ss.commitTime, FromMessage: true}
	if err := ss.decodePayload(m.content, &ev); err != nil {
		ev = undecodable(m, ss.commitLSN, ss.commitTime, err)
	}
	return ss.handOn(hctx, ev)
}

// undecodable is the event of a message with the outbox prefix that holds
// no outbox payload: pg_logical_emit_message is open to every role, so a
// stranger's message must not stop the stream. It goes to the dead letters
// with its payload and the error, under an id derived from its position
// (the same on every replay, so it is stored once).
func undecodable(m ldMessage, commitLSN uint64, commitTime time.Time, err error) event.Event {
	at := pglogrepl.LSN(m.lsn).String()
	return event.Event{
		ID:         uuid.NewSHA1(uuid.NameSpaceOID, []byte("outbox-relay message "+at)),
		OccurredAt: commitTime, CommitLSN: commitLSN, CommitTime: commitTime, FromMessage: true,
		Undecodable: &event.Undecodable{
			Err: fmt.Errorf("message at %s in the transaction committing at %s: %w", at, pglogrepl.LSN(commitLSN), err),
			Raw: bytes.Clone(m.content),
		},
	}
}

// decodePayload fills ev from a payload, copying what it keeps: content
// points into the network buffer.
func (ss *session) decodePayload(content []byte, ev *event.Event) error {
	f, err := payload.Decode(content)
	if err != nil {
		return err
	}
	if len(f.Type) == 0 {
		return errors.New("event type is empty")
	}
	ev.ID = f.ID
	ev.Type = intern(&ss.msgType, f.Type)
	ev.Environment = intern(&ss.msgEnv, f.Environment)
	ev.OccurredAt = time.UnixMicro(f.OccurredAtMicros).UTC()
	ev.MetadataVersion = max(f.MetadataVersion, 1)
	ev.Context = append([]byte(nil), f.Context...)
	if len(f.Shape()) > 0 {
		ev.Columns = ss.src.messageShape(f)
		ev.Extra = messageExtra(f)
	}
	return nil
}

// messageExtra re-frames a payload's values as event.Extra (pgoutput's
// TupleData, binary kind), in one allocation: each value drops its type
// OID (4 bytes) and gains a kind byte, so the record's size bounds it.
func messageExtra(f payload.Fields) []byte {
	extra := make([]byte, 0, f.ValuesSize())
	_ = f.Values(func(_ int, val []byte, null bool) error {
		if null {
			extra = event.AppendValue(extra, event.KindNull, nil)
		} else {
			extra = event.AppendValue(extra, event.KindBinary, val)
		}
		return nil
	})
	return extra
}

func (ss *session) ignored(reason string) {
	if ss.src.hooks.MessageIgnored != nil {
		ss.src.hooks.MessageIgnored(reason)
	}
}
