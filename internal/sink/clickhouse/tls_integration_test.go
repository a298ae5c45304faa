package clickhouse_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/migrate"
	"github.com/outbox-relay/relay/internal/retry"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/testenv"
)

// A real ClickHouse that speaks the native protocol only over TLS, with a
// certificate of a private CA, and requires a client certificate of it:
// with tls_ca_file, tls_cert_file and tls_key_file the relay's connections
// (migrate's, the sink's queries and its inserts) verify the server in
// full, by 127.0.0.1 and by localhost, and are let in. Without the client
// certificate, or trusting only the system's CAs, they are refused, for
// good.
func TestSinkRealTLSServer(t *testing.T) {
	pki := chsink.NewTestPKI(t)
	addr := testenv.StartClickHouseTLS(t, testenv.TLSServerFiles{Cert: pki.ServerCertFile, Key: pki.ServerKeyFile, ClientCA: pki.CAFile})
	ctx := context.Background()
	ca := "&tls_ca_file=" + url.QueryEscape(pki.CAFile)
	client := "&tls_cert_file=" + url.QueryEscape(pki.ClientCertFile) + "&tls_key_file=" + url.QueryEscape(pki.ClientKeyFile)
	dsn := "clickhouse://default@" + addr + "/default?secure=true" + ca + client

	conn, err := chsink.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect over TLS with the private CA and a client certificate: %v", err)
	}
	defer func() { _ = conn.Close() }()
	if err := migrate.ClickHouse(ctx, conn, zerolog.Nop()); err != nil {
		t.Fatalf("migrate over TLS: %v", err)
	}
	localhost := strings.Replace(dsn, "127.0.0.1:", "localhost:", 1)
	for _, d := range []string{dsn, localhost} {
		s, err := chsink.Open(ctx, d)
		if err != nil {
			t.Fatalf("open the sink over TLS: %v", err)
		}
		err = s.Write(ctx, "event_log", sinkEvents(1, 3))
		_ = s.Close()
		if err != nil {
			t.Fatalf("write over TLS: %v", err)
		}
	}
	var rows uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM event_log").Scan(&rows); err != nil || rows == 0 {
		t.Fatalf("event_log: %d rows, %v", rows, err)
	}

	base := "clickhouse://default@" + addr + "/default?secure=true"
	for name, d := range map[string]string{"without a client certificate": base + ca, "trusting the system's CAs": base + client} {
		s, err := chsink.Open(ctx, d)
		if err == nil {
			_ = s.Close()
			t.Errorf("%s: Open succeeded", name)
			continue
		}
		// The relay's own check of the server is decided in its handshake:
		// always a permanent certificate error. A server refusing a missing
		// client certificate may, under TLS 1.3, reset the connection
		// before its alert is read: then it is refused, not told apart
		// from a reset.
		if name == "without a client certificate" && !strings.Contains(err.Error(), "certificate") {
			continue
		}
		if !strings.Contains(err.Error(), "certificate") || !retry.IsPermanent(err) {
			t.Errorf("%s: Open = %v (permanent %t), want a permanent certificate error", name, err, retry.IsPermanent(err))
		}
	}
}
