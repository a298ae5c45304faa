package clickhouse

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"time"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/ClickHouse/ch-go/proto"
	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/outbox-relay/relay/internal/retry"
)

// inserter runs INSERTs over one native-protocol connection of its own,
// encoding columns the sink keeps from batch to batch.
//
// Why not the driver's batch: clickhouse-go builds new columns for every
// INSERT and grows them from empty, which cost 1–4 µs and five bytes of
// garbage per event byte (the largest share of the relay's CPU in
// docs/benchmarks.md); ch-go's client, which reuses columns, cannot talk to
// 18.16 (it leaves out the client info that servers before 20.x expect).
// The protocol is the small, stable INSERT subset; the encoders are ch-go's
// (the library clickhouse-go is built on). Everything else — DDL, queries,
// migrations, status — still goes through clickhouse-go.
type inserter struct {
	// opts is clickhouse-go's reading of CLICKHOUSE_URL with the defaults
	// clickhouse-go's connections use (see newInserter).
	opts   *ch.Options
	dialer func(ctx context.Context, addr string, opts *ch.Options) (net.Conn, error)
	dials  int      // connections opened: the connection number DefaultDialStrategy takes
	host   string   // this machine's name, sent in the client info
	keys   []string // opts.Settings' names, sorted
	conn   net.Conn
	r      *proto.Reader
	rev    int // the protocol revision both sides speak
	buf    proto.Buffer
	cw     *compress.Writer
}

// insertRevision is the protocol revision the inserter announces; the
// server answers in min(this, its own). Kept low on purpose: every packet
// and field after it (ProfileEvents, OpenTelemetry, parameters, ...) is
// one the inserter does not have to know. Servers keep speaking older
// revisions to older clients.
const insertRevision = 54429

// newInserter reads opts — clickhouse-go's own parse of CLICKHOUSE_URL —
// as clickhouse-go's connections do: with the defaults its Open fills in
// (a URL without a user logs in as "default"), the hosts tried in its order
// (its DefaultDialStrategy, connection_open_strategy included), its
// compression codecs and timeouts. TestURLParity compares both readings.
func newInserter(opts *ch.Options) (*inserter, error) {
	o := driverDefaults(*opts)
	in := &inserter{opts: &o, dialer: dialTCP}
	in.host, _ = os.Hostname()
	for k := range o.Settings {
		in.keys = append(in.keys, k)
	}
	sort.Strings(in.keys)
	if c := o.Compression; c != nil {
		switch c.Method {
		case ch.CompressionNone:
		case ch.CompressionLZ4, ch.CompressionLZ4HC, ch.CompressionZSTD:
			// As clickhouse-go's native connections: the method and level of the URL.
			in.cw = compress.NewWriter(compress.Level(c.Level), compress.Method(c.Method))
		default:
			return nil, retry.Permanent(fmt.Errorf("CLICKHOUSE_URL: compression %s is not supported by the native protocol (use lz4, lz4hc, zstd or none)", c.Method))
		}
	}
	return in, nil
}

// driverDefaults fills in what clickhouse-go's Open fills in before it
// connects (its Options.setDefaults, which is not exported), as far as the
// inserter uses it.
func driverDefaults(o ch.Options) ch.Options {
	if o.Auth.Username == "" {
		o.Auth.Username = "default"
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 30 * time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 300 * time.Second
	}
	if len(o.Addr) == 0 {
		o.Addr = []string{"localhost:9000"}
	}
	return o
}

// dialTCP connects as clickhouse-go does: TLS when the URL says secure,
// within the dial timeout.
func dialTCP(ctx context.Context, addr string, opts *ch.Options) (net.Conn, error) {
	d := &net.Dialer{Timeout: opts.DialTimeout}
	if opts.TLS != nil {
		return (&tls.Dialer{NetDialer: d, Config: opts.TLS}).DialContext(ctx, "tcp", addr)
	}
	return d.DialContext(ctx, "tcp", addr)
}

// close drops the connection; the next insert dials again.
func (in *inserter) close() {
	if in.conn != nil {
		_ = in.conn.Close()
		in.conn, in.r = nil, nil
	}
}

// insert runs query (INSERT INTO t (cols)) with one block of cols, whose
// names and types must be the ones the server announces for the query.
// Any error leaves the connection closed. A connection kept from an earlier
// insert that fails without an answer from the server (it may have closed
// it while idle) is replaced once at once: a repeated insert is harmless
// (see the package comment), a backoff and a warning for it are not.
func (in *inserter) insert(ctx context.Context, query string, cols []proto.InputColumn, extra []proto.Setting) error {
	reused := in.conn != nil
	err := in.attempt(ctx, query, cols, extra)
	var ex *ch.Exception
	if err != nil && reused && ctx.Err() == nil && !retry.IsPermanent(err) && !errors.As(err, &ex) {
		err = in.attempt(ctx, query, cols, extra)
	}
	return err
}

func (in *inserter) attempt(ctx context.Context, query string, cols []proto.InputColumn, extra []proto.Setting) (err error) {
	defer func() {
		if err != nil {
			in.close()
			err = withContext(ctx, err)
		}
	}()
	if in.conn == nil {
		if err := in.dial(ctx); err != nil {
			return err
		}
	}
	conn := in.conn
	stop := in.deadline(ctx, conn)
	defer stop()

	in.buf.Reset()
	if err := in.encodeQuery(query, extra); err != nil {
		return err
	}
	if err := in.encodeBlock(nil, 0); err != nil { // no external tables
		return err
	}
	if err := in.flush(); err != nil {
		return err
	}
	if err := in.answer(ctx, cols); err != nil {
		return err
	}
	rows := 0
	if len(cols) > 0 {
		rows = cols[0].Data.Rows()
	}
	if err := in.writeData(cols, rows); err != nil {
		return err
	}
	if err := in.encodeBlock(nil, 0); err != nil { // end of data
		return err
	}
	if err := in.flush(); err != nil {
		return err
	}
	return in.await(ctx)
}

// answerTimeout bounds the server's first answer to an INSERT (the
// table's columns), which it sends at once: a server that takes the query
// and never answers is given up after this, not after the whole write's
// timeout.
const answerTimeout = 10 * time.Second

// answer reads the server's first answer to the query (see header) within
// answerTimeout.
func (in *inserter) answer(ctx context.Context, cols []proto.InputColumn) error {
	actx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	return noAnswer(ctx, actx, "answer to the INSERT", answerTimeout, in.header(actx, cols))
}

// noAnswer names a timeout of bounded (a step bounded within parent) as the
// server's silence.
func noAnswer(parent, bounded context.Context, what string, d time.Duration, err error) error {
	if err == nil || parent.Err() != nil {
		return err
	}
	// The socket's deadline may fire a moment before bounded reports it.
	if dl, _ := bounded.Deadline(); bounded.Err() == nil && time.Now().Before(dl) {
		return err
	}
	return fmt.Errorf("no %s from ClickHouse within %s (server hung or overloaded): %w", what, d, err)
}

// withContext says when err comes from ctx ending: the connection's
// deadline is ctx's, so its timeout may fire a moment before ctx reports it.
func withContext(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}

// readDeadline gives the server read_timeout (300 s unless the URL says
// otherwise) to send its next packet, as clickhouse-go does, within ctx's
// deadline.
func (in *inserter) readDeadline(ctx context.Context) {
	d := time.Now().Add(in.opts.ReadTimeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	_ = in.conn.SetReadDeadline(d)
	// After the Set: when ctx ends later, deadline's AfterFunc wins.
	if ctx.Err() != nil {
		_ = in.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// deadline makes conn's I/O follow ctx: its deadline, and its end.
func (in *inserter) deadline(ctx context.Context, conn net.Conn) func() {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Time{}
	}
	_ = conn.SetDeadline(d)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return func() { stop() }
}

// dial connects to the first host that answers the handshake, in the order
// clickhouse-go would try them (CLICKHOUSE_URL's hosts, alt_hosts, and
// connection_open_strategy): a dead host is skipped for the next.
func (in *inserter) dial(ctx context.Context) error {
	in.dials++
	_, err := ch.DefaultDialStrategy(ctx, in.dials, in.opts, func(ctx context.Context, addr string, _ *ch.Options) (ch.DialResult, error) {
		return ch.DialResult{}, in.open(ctx, addr)
	})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	return nil
}

// open connects to addr and says hello; the connection is in's on success.
func (in *inserter) open(ctx context.Context, addr string) error {
	conn, err := in.dialer(ctx, addr, in.opts)
	if err != nil {
		return err
	}
	in.conn, in.r = conn, proto.NewReader(bufio.NewReaderSize(conn, 64<<10))
	if err := in.hello(ctx); err != nil {
		in.close()
		return err
	}
	return nil
}

// hello is the handshake: announce the revision, read the server's. Like
// clickhouse-go's, it must be over within the dial timeout: a server that
// accepts connections and never answers fails the attempt quickly.
func (in *inserter) hello(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, in.opts.DialTimeout)
	defer cancel()
	return noAnswer(parent, ctx, "handshake", in.opts.DialTimeout, in.handshake(ctx))
}

func (in *inserter) handshake(ctx context.Context) error {
	stop := in.deadline(ctx, in.conn)
	defer stop()
	in.buf.Reset()
	proto.ClientHello{
		Name:            "outbox-relay",
		Major:           1,
		ProtocolVersion: insertRevision,
		Database:        in.opts.Auth.Database,
		User:            in.opts.Auth.Username,
		Password:        in.opts.Auth.Password,
	}.Encode(&in.buf)
	if err := in.flush(); err != nil {
		return err
	}
	in.readDeadline(ctx)
	code, err := in.r.UVarInt()
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	switch proto.ServerCode(code) {
	case proto.ServerCodeException:
		return in.exception()
	case proto.ServerCodeHello:
	default:
		return retry.Permanent(fmt.Errorf("handshake: server sent packet %d instead of hello", code))
	}
	var sh proto.ServerHello
	if err := sh.DecodeAware(in.r, insertRevision); err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	in.rev = min(insertRevision, sh.Revision)
	return nil
}

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
