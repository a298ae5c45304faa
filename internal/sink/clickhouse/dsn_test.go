package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/outbox-relay/relay/internal/retry"
)

// reading is what a connection takes from CLICKHOUSE_URL.
type reading struct {
	Addrs                []string // in the order they are tried
	User, Password, DB   string
	TLS, SkipVerify      bool
	ServerName           string
	Compression          string
	Level                int
	DialTimeout, Timeout time.Duration
	Settings             string
}

var errStop = errors.New("recorded; not connecting")

// driverReading is how clickhouse-go reads opts: the options its Open
// hands its dial strategy (defaults filled in), and the hosts its default
// strategy tries for the first connection.
func driverReading(t *testing.T, opts ch.Options) reading {
	t.Helper()
	var got reading
	opts.DialStrategy = func(ctx context.Context, connID int, o *ch.Options, _ ch.Dial) (ch.DialResult, error) {
		got = readingOf(o)
		_, _ = ch.DefaultDialStrategy(ctx, connID, o, func(_ context.Context, addr string, _ *ch.Options) (ch.DialResult, error) {
			got.Addrs = append(got.Addrs, addr)
			return ch.DialResult{}, errStop
		})
		return ch.DialResult{}, errStop
	}
	conn, err := ch.Open(&opts)
	if err != nil {
		t.Fatalf("clickhouse-go Open: %v", err)
	}
	defer func() { _ = conn.Close() }()
	if err := conn.Ping(context.Background()); !errors.Is(err, errStop) {
		t.Fatalf("clickhouse-go Ping = %v, want the recording dial strategy's error", err)
	}
	return got
}

// inserterReading is how the inserter reads opts: its options, and the
// hosts its first dial tries.
func inserterReading(t *testing.T, opts *ch.Options) (reading, error) {
	t.Helper()
	in, err := newInserter(opts)
	if err != nil {
		return reading{}, err
	}
	got := readingOf(in.opts)
	in.dialer = func(_ context.Context, addr string, _ *ch.Options) (net.Conn, error) {
		got.Addrs = append(got.Addrs, addr)
		return nil, errStop
	}
	if err := in.dial(context.Background()); !errors.Is(err, errStop) {
		t.Fatalf("inserter dial = %v, want the recording dialer's error", err)
	}
	return got, nil
}

func readingOf(o *ch.Options) reading {
	r := reading{User: o.Auth.Username, Password: o.Auth.Password, DB: o.Auth.Database,
		DialTimeout: o.DialTimeout, Timeout: o.ReadTimeout, Compression: "none"}
	if o.TLS != nil {
		r.TLS, r.SkipVerify, r.ServerName = true, o.TLS.InsecureSkipVerify, o.TLS.ServerName
	}
	if c := o.Compression; c != nil {
		r.Compression, r.Level = c.Method.String(), c.Level
	}
	var kv []string
	for k, v := range o.Settings {
		kv = append(kv, fmt.Sprintf("%s=%v(%T)", k, v, v))
	}
	slices.Sort(kv)
	r.Settings = strings.Join(kv, " ")
	return r
}

// One parsing (parseDSN, i.e. clickhouse-go's ParseDSN), two connections:
// the inserter must read every URL exactly as clickhouse-go's connections
// do — user (default when absent), password, database, TLS, compression,
// timeouts, settings, and which hosts are tried in which order.
func TestURLParity(t *testing.T) {
	urls := []string{
		"clickhouse://127.0.0.1:9000/relay",
		"clickhouse://ch:9000",
		"clickhouse://ch:9000/",
		"clickhouse://default:@ch:9000/relay",
		"clickhouse://relay:s3cret@ch:9000/events",
		"clickhouse://relay@ch:9000/events",
		"clickhouse://relay:p%40ss%2Fw%3Ard@ch:9000/events",
		"clickhouse://:pw@ch:9000/events",
		"clickhouse://ch:9000/events?username=relay&password=pw",
		"clickhouse://u1:p1@ch:9000/a?username=u2&database=b",
		"clickhouse://ch1:9000,ch2:9000,ch3:9001/events",
		"clickhouse://ch1:9000,ch2:9000/events?connection_open_strategy=in_order",
		"clickhouse://ch1:9000,ch2:9000,ch3:9000/events?connection_open_strategy=round_robin",
		"clickhouse://ch1:9000/events?alt_hosts=ch2:9000,ch3:9000",
		"clickhouse://ch1:9000/events?hosts=ch0:9000",
		"clickhouse://ch:9440/events?secure=true",
		"clickhouse://ch:9440/events?secure",
		"clickhouse://ch:9440/events?secure=true&skip_verify=true&tls_server_name=ch.example.com",
		"clickhouse://ch:9000/events?secure=false",
		"clickhouse://ch:9000/events?compress=true",
		"clickhouse://ch:9000/events?compress=lz4",
		"clickhouse://ch:9000/events?compress=lz4hc&compress_level=5",
		"clickhouse://ch:9000/events?compress=zstd",
		"clickhouse://ch:9000/events?compress=none",
		"clickhouse://ch:9000/events?compress=false",
		"clickhouse://ch:9000/events?compress_level=3",
		"clickhouse://ch:9000/events?dial_timeout=2s&read_timeout=45s",
		"clickhouse://ch:9000/events?dial_timeout=1m",
		"clickhouse://ch:9000/events?read_timeout=10m",
		"clickhouse://ch:9000/events?insert_quorum=2&max_execution_time=60&load_balancing=random",
		"clickhouse://ch:9000/events?insert_deduplicate=true&log_queries=false",
		"clickhouse://ch:9000/events?debug=true&max_open_conns=3&block_buffer_size=4",
		"clickhouse://ch:9000/events?client_info_product=app/1.0",
	}
	for _, u := range urls {
		t.Run(u, func(t *testing.T) {
			opts, err := parseDSN(u)
			if err != nil {
				t.Fatalf("parseDSN: %v", err)
			}
			want := driverReading(t, *opts)
			got, err := inserterReading(t, opts)
			if err != nil {
				t.Fatalf("the inserter refuses a URL clickhouse-go takes: %v", err)
			}
			if !equalReading(got, want) {
				t.Errorf("inserter reads\n  %+v\nclickhouse-go reads\n  %+v", got, want)
			}
		})
	}
}

// equalReading compares; both sides' settings maps hold the same values.
func equalReading(a, b reading) bool {
	return slices.Equal(a.Addrs, b.Addrs) && a.User == b.User && a.Password == b.Password && a.DB == b.DB &&
		a.TLS == b.TLS && a.SkipVerify == b.SkipVerify && a.ServerName == b.ServerName &&
		a.Compression == b.Compression && a.Level == b.Level &&
		a.DialTimeout == b.DialTimeout && a.Timeout == b.Timeout && a.Settings == b.Settings
}

// The random strategy draws a host for every try (clickhouse-go's
// DefaultDialStrategy, which the inserter calls): the same number of tries,
// each at one of the URL's hosts.
func TestURLParityRandomHosts(t *testing.T) {
	opts, err := parseDSN("clickhouse://ch1:9000,ch2:9000,ch3:9000/events?connection_open_strategy=random")
	if err != nil {
		t.Fatal(err)
	}
	want := driverReading(t, *opts)
	got, err := inserterReading(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Addrs) != len(want.Addrs) {
		t.Errorf("inserter tries %v, clickhouse-go %v", got.Addrs, want.Addrs)
	}
	for _, a := range got.Addrs {
		if !slices.Contains(opts.Addr, a) {
			t.Errorf("inserter tries %s, not a host of the URL", a)
		}
	}
	got.Addrs, want.Addrs = nil, nil
	if !equalReading(got, want) {
		t.Errorf("inserter reads %+v, clickhouse-go %+v", got, want)
	}
}

// Codecs the native protocol lacks are refused by both.
func TestURLCompressionRefused(t *testing.T) {
	for _, c := range []string{"gzip", "deflate", "br"} {
		opts, err := parseDSN("clickhouse://ch:9000/events?compress=" + c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newInserter(opts); err == nil {
			t.Errorf("compress=%s: inserter accepted it; clickhouse-go's native connections refuse it", c)
		}
	}
}

// The round robin strategy moves on with every new connection, in both.
func TestURLParityRoundRobinSecondConnection(t *testing.T) {
	opts, err := parseDSN("clickhouse://ch1:9000,ch2:9000,ch3:9000/events?connection_open_strategy=round_robin")
	if err != nil {
		t.Fatal(err)
	}
	in, err := newInserter(opts)
	if err != nil {
		t.Fatal(err)
	}
	var first []string
	in.dialer = func(_ context.Context, addr string, _ *ch.Options) (net.Conn, error) {
		first = append(first, addr)
		return nil, errStop
	}
	_ = in.dial(context.Background())
	_ = in.dial(context.Background())
	var want []string
	for connID := 1; connID <= 2; connID++ {
		o := driverDefaults(*opts)
		_, _ = ch.DefaultDialStrategy(context.Background(), connID, &o, func(_ context.Context, addr string, _ *ch.Options) (ch.DialResult, error) {
			want = append(want, addr)
			return ch.DialResult{}, errStop
		})
	}
	if !slices.Equal(first, want) {
		t.Errorf("two dials tried %v, clickhouse-go %v", first, want)
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
		msg  string
		want string
	}{
		{
			name: "password in the message",
			dsn:  "clickhouse://relay:s3cret@ch:9000/default",
			msg:  `parse "clickhouse://relay:s3cret@ch:9000/default": bad`,
			want: `parse "clickhouse://relay:xxxxx@ch:9000/default": bad`,
		},
		{
			name: "every occurrence",
			dsn:  "clickhouse://relay:s3cret@ch:9000/default",
			msg:  "s3cret and s3cret again",
			want: "xxxxx and xxxxx again",
		},
		{
			name: "password not in the message",
			dsn:  "clickhouse://relay:s3cret@ch:9000/default",
			msg:  "dial timeout: invalid duration",
			want: "dial timeout: invalid duration",
		},
		{
			name: "user without password",
			dsn:  "clickhouse://relay@ch:9000/default",
			msg:  "relay@ch: bad",
			want: "relay@ch: bad",
		},
		{
			name: "empty password",
			dsn:  "clickhouse://relay:@ch:9000/default",
			msg:  "relay:@ch: bad",
			want: "relay:@ch: bad",
		},
		{
			name: "no user info",
			dsn:  "clickhouse://ch:9000/default",
			msg:  "ch:9000: bad",
			want: "ch:9000: bad",
		},
		{
			name: "not a URL",
			dsn:  "ch:9000",
			msg:  "ch:9000: bad",
			want: "ch:9000: bad",
		},
		{
			name: "password with URL-safe punctuation",
			dsn:  "clickhouse://relay:p4ss!w0rd$@ch:9000/default",
			msg:  "relay:p4ss!w0rd$@ch",
			want: "relay:xxxxx@ch",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := errors.New(tt.msg)
			got := redact(orig, tt.dsn)
			if got.Error() != tt.want {
				t.Errorf("redact() = %q, want %q", got.Error(), tt.want)
			}
			// The original text must not be reachable by unwrapping.
			if errors.Unwrap(got) != nil || errors.Is(got, orig) {
				t.Error("redact() wraps the unredacted error")
			}
		})
	}
}

// url.Parse takes the last '@' of the authority as the end of the user
// info, so a password may hold a raw '@'.
func TestRedactPasswordWithAt(t *testing.T) {
	const dsn = "clickhouse://relay:pa@ssword@ch:9000/default"
	got := redact(errors.New("cannot use relay:pa@ssword@ch"), dsn)
	if strings.Contains(got.Error(), "ssword") {
		t.Errorf("redact() = %q leaks part of the password", got.Error())
	}
}

// Connect parses the DSN before it dials: a malformed DSN is a permanent
// error that names CLICKHOUSE_URL and never shows the password. No network
// is used.
func TestConnectMalformedDSN(t *testing.T) {
	const secret = "Sup3rS3cretPw"
	for _, dsn := range []string{
		"clickhouse://relay:" + secret + "@ch:port/default",
		"clickhouse://relay:" + secret + "@ch:9000/default?dial_timeout=soon",
		"clickhouse://relay:" + secret + "@ch:9000/default?max_open_conns=many",
		"clickhouse://relay:" + secret + "@ch:9000/default%zz",
	} {
		conn, err := Connect(context.Background(), dsn)
		if err == nil {
			_ = conn.Close()
			t.Errorf("Connect(%q) = nil error", strings.ReplaceAll(dsn, secret, "…"))
			continue
		}
		if !retry.IsPermanent(err) {
			t.Errorf("Connect() error %v is retryable, want permanent", err)
		}
		if !strings.Contains(err.Error(), "CLICKHOUSE_URL") {
			t.Errorf("Connect() error %q does not name CLICKHOUSE_URL", err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Connect() error leaks the password: %q", err)
		}
	}
}
