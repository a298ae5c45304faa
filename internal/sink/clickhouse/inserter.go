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
