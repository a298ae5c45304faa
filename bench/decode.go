package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/outbox-relay/relay/internal/procfs"
)

// DecodeResult is what the bare decode loop received.
type DecodeResult struct {
	Inserts  int   `json:"inserts"`
	Commits  int   `json:"commits"`
	WALBytes int64 `json:"wal_bytes"` // pgoutput payload bytes received
	PeakRSS  int64 `json:"peak_rss"`  // the decoder's own VmHWM
}

// statusEvery keeps wal_sender_timeout away during long runs.
const statusEvery = 5 * time.Second

var errMalformedInsert = errors.New("malformed pgoutput insert")

// BareDecode is the ceiling of the stream: a minimal pglogrepl consumer
// with the relay's plugin options. It walks every Insert message's tuple
// (validating the framing, copying nothing), counts Begin/Commit, and stops
// after the commit that completes want inserts, which it then acknowledges.
func BareDecode(ctx context.Context, connString, slot, publication string, want int) (DecodeResult, error) {
	var res DecodeResult
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		return res, err
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("replication connection: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	start, err := confirmedFlush(ctx, conn, slot)
	if err != nil {
		return res, err
	}
	err = pglogrepl.StartReplication(ctx, conn, pgx.Identifier{slot}.Sanitize(), 0, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", "publication_names " + literal(publication), "binary 'true'"},
	})
	if err != nil {
		return res, fmt.Errorf("start replication: %w", err)
	}
	d := &decoder{conn: conn, want: want, confirmed: start, lastEnd: start}
	if err := d.loop(ctx); err != nil {
		return d.res, err
	}
	d.confirmed = d.lastEnd // acknowledge once, at the end
	d.res.PeakRSS, _ = procfs.PeakRSS(os.Getpid())
	return d.res, d.status(ctx)
}

// confirmedFlush reads the slot's position on the replication connection
// (which accepts simple SQL queries in database mode).
func confirmedFlush(ctx context.Context, conn *pgconn.PgConn, slot string) (pglogrepl.LSN, error) {
	res, err := conn.Exec(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = "+literal(slot)).ReadAll()
	if err != nil {
		return 0, fmt.Errorf("read slot %s: %w", slot, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return 0, fmt.Errorf("slot %s not found", slot)
	}
	return pglogrepl.ParseLSN(string(res[0].Rows[0][0]))
}

type decoder struct {
	conn       *pgconn.PgConn
	want       int
	res        DecodeResult
	lastEnd    pglogrepl.LSN
	confirmed  pglogrepl.LSN
	done       bool
	nextStatus time.Time
}

func (d *decoder) loop(ctx context.Context) error {
	d.nextStatus = time.Now().Add(statusEvery)
	for !d.done {
		if time.Now().After(d.nextStatus) {
			if err := d.status(ctx); err != nil {
				return err
			}
		}
		rctx, cancel := context.WithDeadline(ctx, d.nextStatus)
		msg, err := d.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		if err := d.handle(ctx, msg); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) handle(ctx context.Context, msg pgproto3.BackendMessage) error {
	switch m := msg.(type) {
	case *pgproto3.ErrorResponse:
		return pgconn.ErrorResponseToPgError(m)
	case *pgproto3.CopyData:
		if len(m.Data) == 0 {
			return nil
		}
		switch m.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
			if err != nil {
				return err
			}
			if ka.ReplyRequested {
				return d.status(ctx)
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(m.Data[1:])
			if err != nil {
				return err
			}
			d.res.WALBytes += int64(len(xld.WALData))
			return d.message(xld.WALData)
		}
	}
	return nil
}

func (d *decoder) message(data []byte) error {
	if len(data) == 0 {
		return errMalformedInsert
	}
	switch pglogrepl.MessageType(data[0]) {
	case pglogrepl.MessageTypeInsert:
		if err := walkInsert(data[1:]); err != nil {
			return err
		}
		d.res.Inserts++
	case pglogrepl.MessageTypeCommit:
		var c pglogrepl.CommitMessage
		if err := c.Decode(data[1:]); err != nil {
			return err
		}
		d.res.Commits++
		d.lastEnd = c.TransactionEndLSN
		d.done = d.res.Inserts >= d.want
	case pglogrepl.MessageTypeBegin, pglogrepl.MessageTypeRelation:
		if _, err := pglogrepl.Parse(data); err != nil {
			return err
		}
	}
	return nil
}

// walkInsert checks the framing of an Insert body: relation id, 'N', the
// column count, then per column a kind byte and, for text or binary
// values, a length and the value.
func walkInsert(b []byte) error {
	if len(b) < 7 || b[4] != 'N' {
		return errMalformedInsert
	}
	n := int(binary.BigEndian.Uint16(b[5:]))
	p := 7
	for range n {
		if p >= len(b) {
			return errMalformedInsert
		}
		kind := b[p]
		p++
		if kind != 't' && kind != 'b' {
			continue
		}
		if p+4 > len(b) {
			return errMalformedInsert
		}
		p += 4 + int(binary.BigEndian.Uint32(b[p:]))
		if p > len(b) {
			return errMalformedInsert
		}
	}
	return nil
}

// status reports what was received and what is confirmed (the slot's
// start position until the end of the run).
func (d *decoder) status(ctx context.Context) error {
	d.nextStatus = time.Now().Add(statusEvery)
	return pglogrepl.SendStandbyStatusUpdate(ctx, d.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: d.lastEnd, WALFlushPosition: d.confirmed, WALApplyPosition: d.confirmed,
	})
}

// literal quotes s as an SQL string literal (replication connections take
// no parameters).
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
