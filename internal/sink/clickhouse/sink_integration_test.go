package clickhouse_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/retry"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/testenv"
)

// These run against the real ClickHouse of scripts/services.sh (skipped
// without it): the sink's own INSERT path, end to end.

func sinkEvents(first int64, n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		v := first + int64(i)
		ctx := []byte(`{"n":` + uuid.NewString() + `"}`)
		if i == 1 {
			// A large one among small ones: sent from the event, in
			// several compressed frames when compression is on.
			ctx = bytes.Repeat([]byte("x"), 3<<20+5)
		}
		evs[i] = event.Event{ID: uuid.New(), Type: "type-" + strings.Repeat("é", i), Environment: []string{"prod", "", "ünï"}[i%3],
			OccurredAt: time.Date(2024, 2, 29, 23, 59, 58, int(v)*1000+123000, time.UTC), Context: ctx, MetadataVersion: v, CommitLSN: uint64(v) << 20}
	}
	return evs
}

// openSink opens a sink on dsn, closed when the test ends.
func openSink(t *testing.T, dsn string) *chsink.Sink {
	t.Helper()
	s, err := chsink.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// openEventLog opens a sink on dsn with event_log prepared (its columns
// read as they are now).
func openEventLog(t *testing.T, dsn string) *chsink.Sink {
	t.Helper()
	s := openSink(t, dsn)
	if err := s.Prepare(context.Background(), "event_log", nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// proxiedSink opens a sink that reaches ClickHouse through a fault proxy.
func proxiedSink(t *testing.T, e *testenv.Env) (*chsink.Sink, *testenv.FaultProxy) {
	t.Helper()
	proxy := testenv.NewFaultProxy(t, testenv.Host(t, e.ClickHouse))
	return openEventLog(t, testenv.ReplaceHost(t, e.ClickHouse, proxy.Addr())), proxy
}

// Three batches per connection setting, each in columns reused from the
// one before; every column reads back as written.
func TestSinkWriteRoundTrip(t *testing.T) {
	for _, q := range []string{"", "?compress=lz4", "?compress=zstd"} {
		t.Run("dsn"+q, func(t *testing.T) {
			e := testenv.New(t)
			ctx := context.Background()
			s := openSink(t, e.ClickHouse+q)
			want := append(sinkEvents(1, 4), sinkEvents(10, 2)...)
			// Small values across the boundary of a piece of the block.
			many := make([]event.Event, 4000)
			for i := range many {
				many[i] = sinkEvents(100+int64(i), 1)[0]
				many[i].Context = bytes.Repeat([]byte{'a' + byte(i%26)}, 500)
			}
			want = append(want, many...)
			if err := s.Write(ctx, "event_log", want[:4]); err != nil {
				t.Fatalf("first batch: %v", err)
			}
			if err := s.Write(ctx, "event_log", want[4:6]); err != nil {
				t.Fatalf("second batch: %v", err)
			}
			if err := s.Write(ctx, "event_log", want[6:]); err != nil {
				t.Fatalf("third batch: %v", err)
			}
			if err := s.Write(ctx, "event_log", nil); err != nil {
				t.Fatalf("empty batch: %v", err)
			}
			got := readEvents(ctx, t, e)
			if len(got) != len(want) {
				t.Fatalf("read %d rows, want %d", len(got), len(want))
			}
			for i := range want {
				w, g := want[i], got[i]
				if g.ID != w.ID || g.Type != w.Type || g.Environment != w.Environment || !bytes.Equal(g.Context, w.Context) ||
					g.MetadataVersion != w.MetadataVersion || g.CommitLSN != w.CommitLSN || !g.OccurredAt.Equal(w.OccurredAt) {
					t.Errorf("row %d = {%x %q %q %d B v%d lsn %d %s}\nwant   {%x %q %q %d B v%d lsn %d %s}", i,
						g.ID, g.Type, g.Environment, len(g.Context), g.MetadataVersion, g.CommitLSN, g.OccurredAt,
						w.ID, w.Type, w.Environment, len(w.Context), w.MetadataVersion, w.CommitLSN, w.OccurredAt)
				}
			}
		})
	}
}

// readEvents reads event_log back in metadata_version order, whichever way
// the server stores event_date_time.
func readEvents(ctx context.Context, t *testing.T, e *testenv.Env) []event.Event {
	t.Helper()
	var split uint64
	if err := e.CH.QueryRow(ctx, `SELECT count() FROM system.columns
		WHERE database = currentDatabase() AND table = 'event_log' AND name = 'event_date_time_us'`).Scan(&split); err != nil {
		t.Fatal(err)
	}
	micros := "toUInt32(0)"
	if split == 1 {
		micros = "event_date_time_us"
	}
	rows, err := e.CH.Query(ctx, `SELECT event_id, event_type, environment, event_context, metadata_version, commit_lsn,
		event_date_time, `+micros+` FROM event_log ORDER BY metadata_version`)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	var out []event.Event
	for rows.Next() {
		var (
			ev      event.Event
			id      uuid.UUID
			context string
			version uint64
			at      time.Time
			us      uint32
		)
		if err := rows.Scan(&id, &ev.Type, &ev.Environment, &context, &version, &ev.CommitLSN, &at, &us); err != nil {
			t.Fatal(err)
		}
		ev.ID, ev.Context, ev.MetadataVersion = id, []byte(context), int64(version)
		ev.OccurredAt = at.UTC().Add(time.Duration(us) * time.Microsecond)
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A table whose column changed type after the sink described it: Write
// stops with a permanent error that says so, instead of sending values the
// server would read as another type.
func TestSinkWriteTableChanged(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	s := openEventLog(t, e.ClickHouse)
	if err := e.CH.Exec(ctx, "ALTER TABLE event_log MODIFY COLUMN metadata_version Int64"); err != nil {
		t.Fatal(err)
	}
	err := s.Write(ctx, "event_log", sinkEvents(1, 2))
	if err == nil || !retry.IsPermanent(err) || !strings.Contains(err.Error(), "table changed") {
		t.Fatalf("Write = %v, want a permanent 'table changed' error", err)
	}
	if errors.Is(err, event.ErrRejected) {
		t.Errorf("Write = %v: a schema change must not dead-letter the events", err)
	}
}

// A server exception (the table is gone) is permanent and names the cause;
// it is not taken for a rejected event.
func TestSinkWriteServerException(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	s := openEventLog(t, e.ClickHouse)
	if err := e.CH.Exec(ctx, "DROP TABLE event_log"); err != nil {
		t.Fatal(err)
	}
	err := s.Write(ctx, "event_log", sinkEvents(1, 2))
	if err == nil || !retry.IsPermanent(err) || errors.Is(err, event.ErrRejected) || !strings.Contains(err.Error(), "event_log") {
		t.Fatalf("Write = %v, want a permanent error naming event_log", err)
	}
}

// The connection breaks between batches, then the server is unreachable
// for a while: Write fails with retryable errors meanwhile, and the next
// Write after the server is back dials again and succeeds.
func TestSinkWriteReconnects(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	s, proxy := proxiedSink(t, e)
	if err := s.Write(ctx, "event_log", sinkEvents(1, 2)); err != nil {
		t.Fatal(err)
	}
	// The kept connection is closed while idle (as a server does after
	// its idle timeout): the next write goes through on a new one.
	proxy.Down()
	proxy.Up()
	if err := s.Write(ctx, "event_log", sinkEvents(5, 2)); err != nil {
		t.Fatalf("write after the idle connection was closed: %v", err)
	}
	proxy.Down()
	for i := range 2 {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.Write(wctx, "event_log", sinkEvents(10, 2))
		cancel()
		if err == nil || retry.IsPermanent(err) {
			t.Fatalf("write %d while the server is unreachable = %v, want a retryable error", i, err)
		}
	}
	proxy.Up()
	if err := s.Write(ctx, "event_log", sinkEvents(10, 2)); err != nil {
		t.Fatalf("write after the server came back: %v", err)
	}
	if got := len(readEvents(ctx, t, e)); got != 6 {
		t.Errorf("event_log holds %d rows, want 6", got)
	}
}

// A write that outlives its context is cut off: the attempt timeout the
// relay sets is honoured even when the server stops answering.
func TestSinkWriteHonoursContext(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	s, proxy := proxiedSink(t, e)
	proxy.Pause()
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Write(wctx, "event_log", sinkEvents(1, 2))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write on a paused connection = %v, want the context's deadline", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Write returned after %s, long after its 500ms deadline", took)
	}
	proxy.Resume()
	if err := s.Write(ctx, "event_log", sinkEvents(1, 2)); err != nil {
		t.Fatalf("write after the pause: %v", err)
	}
}

// secure=true: the sink's connections (queries and inserts) speak TLS. The
// test server has no TLS port, so a TLS-terminating proxy stands in front.
func TestSinkWriteTLS(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	addr := tlsProxy(t, testenv.Host(t, e.ClickHouse))
	dsn := testenv.ReplaceHost(t, e.ClickHouse, addr) + "?secure=true&skip_verify=true"
	s := openSink(t, dsn)
	if err := s.Write(ctx, "event_log", sinkEvents(1, 3)); err != nil {
		t.Fatal(err)
	}
	if got := len(readEvents(ctx, t, e)); got != 3 {
		t.Errorf("event_log holds %d rows, want 3", got)
	}
}

// A server whose certificate a private CA signed, and which asks for a
// client certificate of that CA: CLICKHOUSE_URL's tls_ca_file,
// tls_cert_file and tls_key_file let the sink verify it in full (the name
// 127.0.0.1 included) and be verified. Without the CA, or without the
// client certificate, it is refused, and the refusal is permanent: no
// retry mends a certificate.
func TestSinkWritePrivateCA(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	pki := chsink.NewTestPKI(t)
	addr := tlsProxyWith(t, testenv.Host(t, e.ClickHouse), &tls.Config{Certificates: []tls.Certificate{pki.Server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.CAs, MinVersion: tls.VersionTLS12})
	base := testenv.ReplaceHost(t, e.ClickHouse, addr) + "?secure=true"
	ca := "&tls_ca_file=" + url.QueryEscape(pki.CAFile)
	client := "&tls_cert_file=" + url.QueryEscape(pki.ClientCertFile) + "&tls_key_file=" + url.QueryEscape(pki.ClientKeyFile)

	s := openSink(t, base+ca+client)
	if err := s.Write(ctx, "event_log", sinkEvents(1, 3)); err != nil {
		t.Fatal(err)
	}
	if got := len(readEvents(ctx, t, e)); got != 3 {
		t.Errorf("event_log holds %d rows, want 3", got)
	}
	for name, dsn := range map[string]string{"without the CA": base + client, "without a client certificate": base + ca} {
		s, err := chsink.Open(ctx, dsn)
		if err == nil {
			_ = s.Close()
			t.Errorf("%s: Open succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), "certificate") || !retry.IsPermanent(err) {
			t.Errorf("%s: Open = %v (permanent %t), want a permanent certificate error", name, err, retry.IsPermanent(err))
		}
	}
}

// tlsProxy accepts TLS on a loopback port (a fresh self-signed
// certificate) and forwards the plaintext to target.
func tlsProxy(t *testing.T, target string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tlsProxyWith(t, target, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12})
}

// tlsProxyWith accepts TLS with cfg on a loopback port and forwards the
// plaintext to target.
func tlsProxyWith(t *testing.T, target string, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// Settings in CLICKHOUSE_URL reach the INSERT, as clickhouse-go sends them
// with every query: harmless ones let it through, readonly=1 refuses it.
func TestSinkWriteSettings(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	s := openSink(t, e.ClickHouse+"?insert_deduplicate=1&max_insert_block_size=1048576")
	if err := s.Write(ctx, "event_log", sinkEvents(1, 3)); err != nil {
		t.Fatalf("write with settings: %v", err)
	}
	ro := openSink(t, e.ClickHouse+"?readonly=1")
	err := ro.Write(ctx, "event_log", sinkEvents(10, 3))
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "readonly") || !retry.IsPermanent(err) {
		t.Fatalf("write with readonly=1 = %v, want the server's readonly refusal, permanent (no retry grants the right)", err)
	}
	if got := len(readEvents(ctx, t, e)); got != 3 {
		t.Errorf("event_log holds %d rows, want 3", got)
	}
}

// A ClickHouse that accepts connections and never answers fails a write
// by itself, under a context without deadline: the kept connection's
// INSERT waits for the server's first answer only so long, the new
// connection's handshake only the dial timeout; and clickhouse-go's query
// connection gives up its handshake too. Each error says the server did
// not answer and is retryable.
func TestSinkHungServer(t *testing.T) {
	e := testenv.New(t)
	ctx := context.Background()
	s, proxy := proxiedSink(t, e)
	if err := s.Write(ctx, "event_log", sinkEvents(1, 2)); err != nil {
		t.Fatal(err)
	}
	proxy.Pause()
	hungDSN := testenv.ReplaceHost(t, e.ClickHouse, proxy.Addr())
	steps := []struct {
		name string
		want string
		run  func() error
	}{
		{"write on the kept connection, then a new one", "no handshake from ClickHouse within", func() error { return s.Write(ctx, "event_log", sinkEvents(3, 2)) }},
		{"write on a new connection", "no handshake from ClickHouse within", func() error { return s.Write(ctx, "event_log", sinkEvents(3, 2)) }},
		{"query connection", "", func() error {
			conn, err := chsink.Connect(ctx, hungDSN)
			if err == nil {
				_ = conn.Close()
			}
			return err
		}},
	}
	for _, st := range steps {
		done := make(chan error, 1)
		go func() { done <- st.run() }()
		select {
		case err := <-done:
			if err == nil || retry.IsPermanent(err) || !strings.Contains(err.Error(), st.want) {
				t.Errorf("%s on a hung server = %v, want a retryable error containing %q", st.name, err, st.want)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s on a hung server still waiting after a minute", st.name)
		}
	}
	proxy.Resume()
	if err := s.Write(ctx, "event_log", sinkEvents(3, 2)); err != nil {
		t.Fatalf("write after the server answers again: %v", err)
	}
}

// A relay column the user made LowCardinality(String) (on 18.16 behind
// allow_experimental_low_cardinality_type): the relay would send String,
// which 18.16 does not convert ("Bad cast", code 368), so the sink refuses
// the table at once, naming the column and what to do, rather than
// leaving the column to its default (as it did) or failing every INSERT.
// Current servers convert: TestConformanceUserTables.
func TestSinkRefusesUnconvertedColumn(t *testing.T) {
	e := testenv.New(t)
	ctx := ch.Context(context.Background(), ch.WithSettings(ch.Settings{"allow_experimental_low_cardinality_type": 1}))
	if err := e.CH.Exec(ctx, "ALTER TABLE event_log MODIFY COLUMN environment LowCardinality(String)"); err != nil {
		t.Fatal(err)
	}
	s := openSink(t, e.ClickHouse)
	err := s.Prepare(context.Background(), "event_log", nil)
	if err == nil || !retry.IsPermanent(err) || !strings.Contains(err.Error(), "event_log.environment is LowCardinality(String)") || !strings.Contains(err.Error(), "23.3") {
		t.Fatalf("Prepare = %v, want a permanent error naming event_log.environment and 23.3", err)
	}
}
