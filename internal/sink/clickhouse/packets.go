package clickhouse

import (
	"context"
	"fmt"

	"github.com/ClickHouse/ch-go/proto"
	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/outbox-relay/relay/internal/retry"
)

// The packets of the native protocol's INSERT as the inserter writes them
// (Query, then Data: the block in pieces) and reads the server's (the
// header block, progress and the like, the end of the stream, an exception).

// encodeQuery appends the Query packet for revisions up to insertRevision;
// extra are settings of this query (string-valued: sent only to revisions
// that take strings), sent in place of CLICKHOUSE_URL's of the same name.
func (in *inserter) encodeQuery(query string, extra []proto.Setting) error {
	b := &in.buf
	proto.ClientCodeQuery.Encode(b)
	b.PutString("") // query id: the server assigns one
	// Client info (every revision the inserter may speak has it).
	b.PutByte(byte(proto.ClientQueryInitial))
	b.PutString("") // initial user
	b.PutString("") // initial query id
	b.PutString("0.0.0.0:0")
	b.PutByte(byte(proto.InterfaceTCP))
	b.PutString("") // OS user
	b.PutString(in.host)
	b.PutString("outbox-relay")
	b.PutInt(1) // major
	b.PutInt(0) // minor
	b.PutInt(in.rev)
	b.PutString("") // quota key
	if proto.FeatureVersionPatch.In(in.rev) {
		b.PutInt(0)
	}
	if err := in.encodeSettings(extra); err != nil {
		return err
	}
	proto.StageComplete.Encode(b)
	if in.cw != nil {
		proto.CompressionEnabled.Encode(b)
	} else {
		proto.CompressionDisabled.Encode(b)
	}
	b.PutString(query)
	return nil
}

// encodeSettings appends the settings of CLICKHOUSE_URL (e.g.
// ?insert_quorum=2), as clickhouse-go sends them with every query: as
// strings from revision 54429 on, before that as numbers only (the old
// format is typed per setting, and numbers and booleans are what it can
// carry without knowing each setting's type).
func (in *inserter) encodeSettings(extra []proto.Setting) error {
	b := &in.buf
	strs := proto.FeatureSettingsSerializedAsStrings.In(in.rev)
	overridden := func(k string) bool {
		for _, s := range extra {
			if s.Key == k {
				return strs
			}
		}
		return false
	}
	for _, k := range in.keys {
		v := in.opts.Settings[k]
		if overridden(k) {
			continue
		}
		if proto.FeatureSettingsSerializedAsStrings.In(in.rev) {
			proto.Setting{Key: k, Value: fmt.Sprint(v), Important: true}.Encode(b)
			continue
		}
		var n uint64
		switch v := v.(type) {
		case int:
			n = uint64(v)
		case bool:
			if v {
				n = 1
			}
		default:
			return retry.Permanent(fmt.Errorf("CLICKHOUSE_URL setting %s=%v: this ClickHouse (protocol %d) takes only numeric settings", k, v, in.rev))
		}
		b.PutString(k)
		b.PutUVarInt(n)
	}
	if strs {
		for _, s := range extra {
			s.Encode(b)
		}
	}
	b.PutString("") // end of settings
	return nil
}

// encodeBlock appends a Data packet; no columns is the empty block that ends
// a stream.
func (in *inserter) encodeBlock(cols []proto.InputColumn, rows int) error {
	b := &in.buf
	proto.ClientCodeData.Encode(b)
	proto.ClientData{}.EncodeAware(b, in.rev)
	start := len(b.Buf)
	blk := proto.Block{Columns: len(cols), Rows: rows, Info: proto.BlockInfo{BucketNum: -1}}
	if err := blk.EncodeBlock(b, in.rev, cols); err != nil {
		return retry.Permanent(fmt.Errorf("encode block: %w", err))
	}
	if in.cw != nil {
		if err := in.cw.Compress(b.Buf[start:]); err != nil {
			return retry.Permanent(fmt.Errorf("compress block: %w", err))
		}
		b.Buf = append(b.Buf[:start], in.cw.Data...)
	}
	return nil
}

// chunk is how much of a block is encoded before it is sent, and with
// compression the most a compressed frame holds (the server reads a block
// across frames, as ClickHouse's own clients write them).
const chunk = 1 << 20

// directValue is the length from which a String value is sent from the
// event instead of being copied into the buffer first.
const directValue = 64 << 10

// writeData sends a Data packet holding cols, in pieces of about chunk
// bytes: the memory a block takes stays at one piece whatever the batch's
// size, and long values go from the events to the connection (or the
// compressor) without a copy.
func (in *inserter) writeData(cols []proto.InputColumn, rows int) error {
	b := &in.buf
	b.Reset()
	proto.ClientCodeData.Encode(b)
	proto.ClientData{}.EncodeAware(b, in.rev)
	if err := in.flush(); err != nil { // the packet's head is never compressed
		return err
	}
	blk := proto.Block{Columns: len(cols), Rows: rows, Info: proto.BlockInfo{BucketNum: -1}}
	blk.EncodeAware(b, in.rev)
	for _, c := range cols {
		if n := c.Data.Rows(); n != rows {
			return retry.Permanent(fmt.Errorf("encode block: column %s has %d rows, want %d", c.Name, n, rows))
		}
		c.EncodeStart(b, in.rev)
		data := c.Data
		if t, ok := data.(typed); ok {
			t.encodeNulls(b)
			data = t.ColInput
		}
		if s, ok := data.(*eventStrings); ok {
			if err := s.stream(in); err != nil {
				return err
			}
		} else {
			data.EncodeColumn(b)
		}
		if len(b.Buf) >= chunk {
			if err := in.spill(); err != nil {
				return err
			}
		}
	}
	return in.spill()
}

// value appends a String value of a block: copied into the buffer when
// short, sent from where it is when long.
func (in *inserter) value(v []byte) error {
	in.buf.PutUVarInt(uint64(len(v)))
	if len(v) < directValue {
		in.buf.Buf = append(in.buf.Buf, v...)
		if len(in.buf.Buf) >= chunk {
			return in.spill()
		}
		return nil
	}
	if err := in.spill(); err != nil {
		return err
	}
	return in.send(v)
}

// spill sends the buffered part of a block.
func (in *inserter) spill() error {
	if len(in.buf.Buf) == 0 {
		return nil
	}
	err := in.send(in.buf.Buf)
	in.buf.Reset()
	return err
}

// send writes part of a block: as is, or as compressed frames of at most
// chunk bytes each.
func (in *inserter) send(p []byte) error {
	if in.cw == nil {
		if _, err := in.conn.Write(p); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		return nil
	}
	for len(p) > 0 {
		n := min(len(p), chunk)
		if err := in.cw.Compress(p[:n]); err != nil {
			return retry.Permanent(fmt.Errorf("compress block: %w", err))
		}
		if _, err := in.conn.Write(in.cw.Data); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		p = p[n:]
	}
	return nil
}

func (in *inserter) flush() error {
	if _, err := in.conn.Write(in.buf.Buf); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	in.buf.Reset()
	return nil
}

// header reads up to the block the server announces for the INSERT and
// checks that it has cols' names and types.
func (in *inserter) header(ctx context.Context, cols []proto.InputColumn) error {
	for {
		code, err := in.packet(ctx)
		if err != nil {
			return err
		}
		if code != proto.ServerCodeData {
			continue
		}
		names, types, err := in.headerBlock()
		if err != nil {
			return err
		}
		if len(names) != len(cols) {
			return retry.Permanent(fmt.Errorf("insert: the server expects %d columns, the relay sends %d: the table changed since the relay started; restart it", len(names), len(cols)))
		}
		for i, c := range cols {
			if names[i] != c.Name || !serverCasts(c.Name, types[i], string(c.Data.Type())) {
				return retry.Permanent(fmt.Errorf("insert: the server expects column %s %s where the relay sends %s %s: the table changed since the relay started; restart it",
					names[i], types[i], c.Name, c.Data.Type()))
			}
		}
		return nil
	}
}

// headerBlock decodes a block without rows: the columns' names and types.
func (in *inserter) headerBlock() (names, types []string, err error) {
	var cd proto.ClientData // same layout from the server: the table name
	if err := cd.DecodeAware(in.r, in.rev); err != nil {
		return nil, nil, fmt.Errorf("read header: %w", err)
	}
	if in.cw != nil {
		in.r.EnableCompression()
		defer in.r.DisableCompression()
	}
	var info proto.BlockInfo
	if err := info.Decode(in.r); err != nil {
		return nil, nil, fmt.Errorf("read header: %w", err)
	}
	ncols, err := in.r.Int()
	if err != nil {
		return nil, nil, fmt.Errorf("read header: %w", err)
	}
	nrows, err := in.r.Int()
	if err != nil {
		return nil, nil, fmt.Errorf("read header: %w", err)
	}
	if nrows != 0 {
		return nil, nil, retry.Permanent(fmt.Errorf("insert: the server sent %d rows where it announces the columns", nrows))
	}
	for range ncols {
		name, err := in.r.Str()
		if err != nil {
			return nil, nil, fmt.Errorf("read header: %w", err)
		}
		typ, err := in.r.Str()
		if err != nil {
			return nil, nil, fmt.Errorf("read header: %w", err)
		}
		names, types = append(names, name), append(types, typ)
	}
	return names, types, nil
}

// await reads the server's answer to the data up to the end of the query.
func (in *inserter) await(ctx context.Context) error {
	for {
		code, err := in.packet(ctx)
		if err != nil {
			return err
		}
		switch code {
		case proto.ServerCodeEndOfStream:
			return nil
		case proto.ServerCodeData:
			if _, _, err := in.headerBlock(); err != nil {
				return err
			}
		}
	}
}

// packet reads one server packet, consuming the ones the inserter has no use
// for, and returns the code of a Data or EndOfStream packet (whose body is
// left to read). An exception is returned as the error.
func (in *inserter) packet(ctx context.Context) (proto.ServerCode, error) {
	for {
		in.readDeadline(ctx)
		v, err := in.r.UVarInt()
		if err != nil {
			return 0, fmt.Errorf("read: %w", err)
		}
		code := proto.ServerCode(v)
		switch code {
		case proto.ServerCodeData, proto.ServerCodeEndOfStream:
			return code, nil
		case proto.ServerCodeException:
			return 0, in.exception()
		case proto.ServerCodeProgress:
			var p proto.Progress
			err = p.DecodeAware(in.r, in.rev)
		case proto.ServerCodeProfile:
			var p proto.Profile
			err = p.DecodeAware(in.r, in.rev)
		case proto.ServerCodeTableColumns:
			var tc proto.TableColumns
			err = tc.DecodeAware(in.r, in.rev)
		case proto.ServerCodeLog:
			// Only with send_logs_level set (e.g. in the user's profile):
			// a block of log rows, never compressed; read and dropped.
			var cd proto.ClientData
			if err = cd.DecodeAware(in.r, in.rev); err == nil {
				var res proto.Results
				var b proto.Block
				err = b.DecodeBlock(in.r, in.rev, res.Auto())
			}
		default:
			return 0, retry.Permanent(fmt.Errorf("insert: unexpected packet %s from the server", code))
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", code, err)
		}
	}
}

// exception decodes an Exception packet into the driver's type, which
// classify knows. A nested exception that may follow is left unread: the
// connection is closed after any error.
func (in *inserter) exception() error {
	var e proto.Exception
	if err := e.DecodeAware(in.r, in.rev); err != nil {
		return fmt.Errorf("read exception: %w", err)
	}
	return &ch.Exception{Code: int32(e.Code), Name: e.Name, Message: e.Message, StackTrace: e.Stack}
}
