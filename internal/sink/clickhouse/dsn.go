package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outbox-relay/relay/internal/retry"
)

// CLICKHOUSE_URL: its reading (parseDSN, which the inserter's connections
// start from too) and the clickhouse-go connections made with it, for the
// table's columns, DDL and the other commands' queries.

// Connect opens and pings a native-protocol connection.
func Connect(ctx context.Context, dsn string) (driver.Conn, error) {
	opts, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return connect(ctx, opts)
}

// ConnectHost is Connect to the server at addr (host:port) alone, with the
// rest of dsn (user, database, TLS, ...): to look at one replica.
func ConnectHost(ctx context.Context, dsn, addr string) (driver.Conn, error) {
	opts, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	opts.Addr = []string{addr}
	return connect(ctx, opts)
}

func connect(ctx context.Context, opts *ch.Options) (driver.Conn, error) {
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, classify("open", err)
	}
	if err := conn.Ping(ctx); err != nil {
		_ = conn.Close()
		return nil, classify("ping", err)
	}
	return conn, nil
}

func parseDSN(dsn string) (*ch.Options, error) {
	dsn, files, err := takeTLSFiles(dsn)
	if err != nil {
		return nil, retry.Permanent(fmt.Errorf("CLICKHOUSE_URL: %w", err))
	}
	opts, err := ch.ParseDSN(dsn)
	if err != nil {
		return nil, retry.Permanent(fmt.Errorf("parse CLICKHOUSE_URL: %w", redact(err, dsn)))
	}
	if err := files.apply(opts); err != nil {
		return nil, retry.Permanent(fmt.Errorf("CLICKHOUSE_URL: %w", err))
	}
	opts.Protocol = ch.Native
	if opts.DialTimeout == 0 || opts.DialTimeout > 10*time.Second {
		opts.DialTimeout = 5 * time.Second
	}
	return opts, nil
}

// redact keeps a password in the DSN out of an error message.
func redact(err error, dsn string) error {
	msg := err.Error()
	if u, perr := url.Parse(dsn); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
			msg = strings.ReplaceAll(msg, url.QueryEscape(pw), "xxxxx")
		}
	}
	return errors.New(msg)
}
