package config

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

const (
	testDatabaseURL   = "postgres://relay:pgpw@localhost:5432/app"
	testClickHouseURL = "clickhouse://default:chpw@localhost:9000/default"
)

func TestDefaults(t *testing.T) {
	want := Config{
		ClickHouseTopology: "single",
		Slot:               "outbox_relay",
		Publication:        "outbox_pub",
		SlotFailover:       true,
		OutboxTable:        "outbox_event",
		ClickHouseTable:    "event_log",
		BatchSize:          1000,
		BatchBytes:         16 << 20,
		FlushSeconds:       1,
		StatusInterval:     10 * time.Second,
		ReceiveWait:        10 * time.Millisecond,
		InsertConcurrency:  2,
		ShutdownGrace:      30 * time.Second,
		SchemaEvolution:    "add",
		AdminAddr:          "127.0.0.1:9090",
		APIAddr:            ":8080",
		LogLevel:           "info",
		LogFormat:          "auto",
		SentryEnvironment:  "production",
	}
	if got := Defaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("Defaults() = %+v\nwant %+v", got, want)
	}
}

func TestTable(t *testing.T) {
	flags, envs := map[string]bool{}, map[string]bool{}
	for _, f := range fields() {
		flag, env, help := f.flag, f.env, f.help
		if flag == "" || env == "" || help == "" {
			t.Errorf("field %+v: flag, env and help must all be set", f)
		}
		if flags[flag] || envs[env] {
			t.Errorf("field %+v: flag or env used twice", f)
		}
		flags[flag], envs[env] = true, true
	}
	if len(flags) == 0 {
		t.Fatal("no fields")
	}
}

func TestRegisterFlags(t *testing.T) {
	c := Defaults()
	fs := pflag.NewFlagSet("relay", pflag.ContinueOnError)
	RegisterFlags(fs, &c)
	for _, fd := range fields() {
		flag, env := fd.flag, fd.env
		f := fs.Lookup(flag)
		if f == nil {
			t.Errorf("flag --%s not registered", flag)
			continue
		}
		if !strings.Contains(f.Usage, "(env "+env+")") {
			t.Errorf("--%s usage %q does not name %s", flag, f.Usage, env)
		}
	}
	for flag, want := range map[string]string{"batch-size": "1000", "slot": "outbox_relay", "status-interval": "10s", "processing-frequency-sec": "1"} {
		if f := fs.Lookup(flag); f == nil || f.DefValue != want {
			t.Errorf("--%s default = %v, want %q", flag, f, want)
		}
	}
	// Flags write into the Config they were registered with.
	if err := fs.Parse([]string{"--batch-size=7", "--status-interval=2s", "--processing-frequency-sec=0.5", "--batch-bytes=4096", "--slot=s1"}); err != nil {
		t.Fatal(err)
	}
	if c.BatchSize != 7 || c.StatusInterval != 2*time.Second || c.FlushSeconds != 0.5 || c.BatchBytes != 4096 || c.Slot != "s1" {
		t.Errorf("after Parse: %+v", c)
	}
}

func TestRegisterFlagsSubset(t *testing.T) {
	c := Defaults()
	fs := pflag.NewFlagSet("migrate", pflag.ContinueOnError)
	RegisterFlags(fs, &c, "database-url", "log-level")
	n := 0
	fs.VisitAll(func(*pflag.Flag) { n++ })
	if n != 2 || fs.Lookup("database-url") == nil || fs.Lookup("log-level") == nil {
		t.Errorf("registered %d flags, want exactly --database-url and --log-level", n)
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name         string
		flags        []string // names to register; all when nil
		args         []string
		environ      map[string]string
		want         func(*Config) // edits Defaults() into the wanted Config
		wantProblems []string
	}{
		{
			name: "defaults",
			want: func(*Config) {},
		},
		{
			name: "environment over defaults",
			environ: map[string]string{
				"DATABASE_URL": testDatabaseURL, "CH_OUTBOX_BATCH_SIZE": "500", "RELAY_BATCH_BYTES": "2048",
				"CH_OUTBOX_PROCESSING_FREQUENCY_SEC": "0.25", "RELAY_STATUS_INTERVAL": "3s", "LOG_LEVEL": "debug",
			},
			want: func(c *Config) {
				c.DatabaseURL, c.BatchSize, c.BatchBytes = testDatabaseURL, 500, 2048
				c.FlushSeconds, c.StatusInterval, c.LogLevel = 0.25, 3*time.Second, "debug"
			},
		},
		{
			name: "flags over defaults",
			args: []string{"--batch-size=20", "--log-format=json"},
			want: func(c *Config) { c.BatchSize, c.LogFormat = 20, "json" },
		},
		{
			name:    "flag on the command line wins over the environment",
			args:    []string{"--batch-size=20", "--status-interval=1s"},
			environ: map[string]string{"CH_OUTBOX_BATCH_SIZE": "500", "RELAY_STATUS_INTERVAL": "3s", "RELAY_SLOT": "from_env"},
			want: func(c *Config) {
				c.BatchSize, c.StatusInterval, c.Slot = 20, time.Second, "from_env"
			},
		},
		{
			name:    "flag set to its default still wins",
			args:    []string{"--slot=outbox_relay"},
			environ: map[string]string{"RELAY_SLOT": "from_env"},
			want:    func(*Config) {},
		},
		{
			name:    "settings without a registered flag come from the environment",
			flags:   []string{"slot"},
			args:    []string{"--slot=s1"},
			environ: map[string]string{"RELAY_SLOT": "from_env", "RELAY_PUBLICATION": "pub_env"},
			want:    func(c *Config) { c.Slot, c.Publication = "s1", "pub_env" },
		},
		{
			name:    "empty string variable means empty, not default",
			environ: map[string]string{"RELAY_ADMIN_ADDR": ""},
			want:    func(c *Config) { c.AdminAddr = "" },
		},
		{
			name: "malformed values reported together",
			environ: map[string]string{
				"CH_OUTBOX_BATCH_SIZE": "many", "RELAY_STATUS_INTERVAL": "10", "SENTRY_TRACES_SAMPLE_RATE": "half",
				"RELAY_SLOT": "still_read",
			},
			want: func(c *Config) { c.Slot = "still_read" },
			wantProblems: []string{
				"CH_OUTBOX_BATCH_SIZE: not a valid whole number",
				"RELAY_STATUS_INTERVAL: not a valid duration",
				"SENTRY_TRACES_SAMPLE_RATE: not a valid number",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			fs := pflag.NewFlagSet("relay", pflag.ContinueOnError)
			RegisterFlags(fs, &c, tt.flags...)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatalf("parse %v: %v", tt.args, err)
			}
			err := Resolve(fs, &c, tt.environ)
			assertProblems(t, err, tt.wantProblems)
			want := Defaults()
			tt.want(&want)
			if !reflect.DeepEqual(c, want) {
				t.Errorf("Resolve() config = %+v\nwant %+v", c, want)
			}
		})
	}
}

// assertProblems checks err is nil when want is empty, otherwise an *Error
// with exactly len(want) problems, each containing the matching string.
func assertProblems(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("error = %v, want nil", err)
		}
		return
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want *config.Error", err, err)
	}
	if len(ce.Problems) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(ce.Problems), len(want), err)
	}
	for _, w := range want {
		found := false
		for _, p := range ce.Problems {
			found = found || strings.Contains(p.Error(), w)
		}
		if !found {
			t.Errorf("no problem contains %q:\n%v", w, err)
		}
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Error() does not list %q", w)
		}
	}
}

func validConfig() Config {
	c := Defaults()
	c.DatabaseURL, c.ClickHouseURL = testDatabaseURL, testClickHouseURL
	return c
}

const needAll = NeedPostgres | NeedClickHouse | NeedStream

func TestValidate(t *testing.T) {
	tests := []struct {
		name         string
		need         Need
		edit         func(*Config)
		wantProblems []string
	}{
		{name: "valid", need: needAll, edit: func(*Config) {}},
		{name: "URLs not needed", need: NeedStream, edit: func(c *Config) { c.DatabaseURL, c.ClickHouseURL = "", "" }},
		{name: "DSN form database URL", need: NeedPostgres, edit: func(c *Config) { c.DatabaseURL = "host=localhost user=relay dbname=app" }},
		{name: "admin server off", need: needAll, edit: func(c *Config) { c.AdminAddr = "" }},
		{name: "smallest settings", need: needAll, edit: func(c *Config) {
			c.BatchSize, c.BatchBytes, c.FlushSeconds, c.StatusInterval = 1, 1024, 0.001, 100*time.Millisecond
		}},
		{name: "largest settings", need: needAll, edit: func(c *Config) {
			c.FlushSeconds, c.StatusInterval, c.SentrySampleRate = 3600, 10*time.Minute, 1
		}},
		{name: "missing DATABASE_URL", need: NeedPostgres, edit: func(c *Config) { c.DatabaseURL = "" },
			wantProblems: []string{"DATABASE_URL (--database-url) is required"}},
		{name: "invalid DATABASE_URL", need: NeedPostgres, edit: func(c *Config) { c.DatabaseURL = "postgres://relay@localhost:notaport/app" },
			wantProblems: []string{"DATABASE_URL is not a valid PostgreSQL URL or DSN"}},
		{name: "missing CLICKHOUSE_URL", need: NeedClickHouse, edit: func(c *Config) { c.ClickHouseURL = "" },
			wantProblems: []string{"CLICKHOUSE_URL (--clickhouse-url) is required"}},
		{name: "CLICKHOUSE_URL over HTTP", need: NeedClickHouse, edit: func(c *Config) { c.ClickHouseURL = "http://localhost:8123/default" },
			wantProblems: []string{"CLICKHOUSE_URL is not a valid ClickHouse DSN"}},
		{name: "invalid CLICKHOUSE_URL", need: NeedClickHouse, edit: func(c *Config) { c.ClickHouseURL = "clickhouse://localhost:port/db" },
			wantProblems: []string{"CLICKHOUSE_URL is not a valid ClickHouse DSN"}},
		{name: "CLICKHOUSE_URL with an unknown TLS parameter", need: NeedClickHouse, edit: func(c *Config) { c.ClickHouseURL = "clickhouse://ch:9440/db?secure=true&tls_ca=/ca.pem" },
			wantProblems: []string{"CLICKHOUSE_URL: unknown TLS parameter tls_ca"}},
		{name: "CLICKHOUSE_URL with a CA file that is not there", need: NeedClickHouse, edit: func(c *Config) {
			c.ClickHouseURL = "clickhouse://ch:9440/db?secure=true&tls_ca_file=/nonexistent/ca.pem"
		},
			wantProblems: []string{"CLICKHOUSE_URL: tls_ca_file"}},
		{name: "sharded with a cluster", need: NeedClickHouse, edit: func(c *Config) { c.ClickHouseTopology, c.ClickHouseCluster = "sharded", "prod" }},
		{name: "cloud", need: NeedClickHouse, edit: func(c *Config) { c.ClickHouseTopology = "cloud" }},
		{name: "replicated without a cluster", need: NeedClickHouse, edit: func(c *Config) { c.ClickHouseTopology = "replicated" },
			wantProblems: []string{"CLICKHOUSE_CLUSTER (--clickhouse-cluster) is required for CLICKHOUSE_TOPOLOGY=replicated"}},
		{name: "cluster on a single server", need: NeedClickHouse, edit: func(c *Config) { c.ClickHouseCluster = "prod" },
			wantProblems: []string{"CLICKHOUSE_CLUSTER is only for the replicated and sharded topologies"}},
		{name: "unknown topology", need: NeedClickHouse, edit: func(c *Config) { c.ClickHouseTopology = "galaxy" },
			wantProblems: []string{`CLICKHOUSE_TOPOLOGY "galaxy"`}},
		{name: "topology not checked without ClickHouse", need: NeedPostgres, edit: func(c *Config) { c.ClickHouseTopology = "galaxy" }},
		{name: "slot with capitals", need: NeedStream, edit: func(c *Config) { c.Slot = "Outbox" },
			wantProblems: []string{`RELAY_SLOT "Outbox"`}},
		{name: "slot too long", need: NeedStream, edit: func(c *Config) { c.Slot = strings.Repeat("s", 64) },
			wantProblems: []string{"RELAY_SLOT"}},
		{name: "empty slot", need: NeedStream, edit: func(c *Config) { c.Slot = "" },
			wantProblems: []string{"RELAY_SLOT"}},
		{name: "empty publication", need: NeedStream, edit: func(c *Config) { c.Publication = "" },
			wantProblems: []string{"RELAY_PUBLICATION is required"}},
		{name: "zero batch size", need: NeedStream, edit: func(c *Config) { c.BatchSize = 0 },
			wantProblems: []string{"CH_OUTBOX_BATCH_SIZE must be at least 1, got 0"}},
		{name: "tiny batch bytes", need: NeedStream, edit: func(c *Config) { c.BatchBytes = 1023 },
			wantProblems: []string{"RELAY_BATCH_BYTES must be between 1024 and 1073741824 (1 GiB), got 1023"}},
		{name: "largest batch bytes", need: NeedStream, edit: func(c *Config) { c.BatchBytes = MaxBatchBytes }},
		{name: "batch bytes above 1 GiB", need: NeedStream, edit: func(c *Config) { c.BatchBytes = MaxBatchBytes + 1 },
			wantProblems: []string{"RELAY_BATCH_BYTES must be between 1024 and 1073741824 (1 GiB), got 1073741825"}},
		{name: "batch bytes whose double overflows", need: NeedStream, edit: func(c *Config) { c.BatchBytes = 4611686018427387904 },
			wantProblems: []string{"RELAY_BATCH_BYTES must be between 1024 and 1073741824 (1 GiB), got 4611686018427387904"}},
		{name: "largest int64 batch bytes", need: NeedStream, edit: func(c *Config) { c.BatchBytes = math.MaxInt64 },
			wantProblems: []string{"RELAY_BATCH_BYTES must be between 1024 and 1073741824 (1 GiB), got 9223372036854775807"}},
		{name: "zero flush frequency", need: NeedStream, edit: func(c *Config) { c.FlushSeconds = 0 },
			wantProblems: []string{"CH_OUTBOX_PROCESSING_FREQUENCY_SEC must be in (0, 3600]"}},
		{name: "flush frequency above an hour", need: NeedStream, edit: func(c *Config) { c.FlushSeconds = 3600.5 },
			wantProblems: []string{"CH_OUTBOX_PROCESSING_FREQUENCY_SEC"}},
		{name: "infinite flush frequency", need: NeedStream, edit: func(c *Config) { c.FlushSeconds = math.Inf(1) },
			wantProblems: []string{"CH_OUTBOX_PROCESSING_FREQUENCY_SEC"}},
		{name: "status interval too short", need: NeedStream, edit: func(c *Config) { c.StatusInterval = 99 * time.Millisecond },
			wantProblems: []string{"RELAY_STATUS_INTERVAL must be between 100ms and 10m, got 99ms"}},
		{name: "status interval too long", need: NeedStream, edit: func(c *Config) { c.StatusInterval = 11 * time.Minute },
			wantProblems: []string{"RELAY_STATUS_INTERVAL"}},
		{name: "no insert concurrency", need: NeedStream, edit: func(c *Config) { c.InsertConcurrency = 0 },
			wantProblems: []string{"RELAY_INSERT_CONCURRENCY must be between 1 and 8, got 0"}},
		{name: "receive wait above 100ms", need: NeedStream, edit: func(c *Config) { c.ReceiveWait = 101 * time.Millisecond },
			wantProblems: []string{"RELAY_RECEIVE_WAIT must be between 0 and 100ms, got 101ms"}},
		{name: "negative receive wait", need: NeedStream, edit: func(c *Config) { c.ReceiveWait = -time.Millisecond },
			wantProblems: []string{"RELAY_RECEIVE_WAIT"}},
		{name: "zero shutdown timeout", need: NeedStream, edit: func(c *Config) { c.ShutdownGrace = 0 },
			wantProblems: []string{"RELAY_SHUTDOWN_TIMEOUT must be positive"}},
		{name: "unknown schema evolution mode", need: NeedStream, edit: func(c *Config) { c.SchemaEvolution = "alter" },
			wantProblems: []string{`RELAY_SCHEMA_EVOLUTION "alter": use add, fill or refuse`}},
		{name: "admin addr without port", need: NeedStream, edit: func(c *Config) { c.AdminAddr = "localhost" },
			wantProblems: []string{`RELAY_ADMIN_ADDR "localhost" is not host:port`}},
		{name: "admin port out of range", need: NeedStream, edit: func(c *Config) { c.AdminAddr = "127.0.0.1:99999" },
			wantProblems: []string{`RELAY_ADMIN_ADDR "127.0.0.1:99999": port 99999 is out of range (0 to 65535)`}},
		{name: "admin port not a number", need: NeedStream, edit: func(c *Config) { c.AdminAddr = ":x9090" },
			wantProblems: []string{`RELAY_ADMIN_ADDR ":x9090": port "x9090" is not a number`}},
		{name: "unknown log level", need: 0, edit: func(c *Config) { c.LogLevel = "loud" },
			wantProblems: []string{`LOG_LEVEL "loud"`}},
		{name: "empty log level", need: 0, edit: func(c *Config) { c.LogLevel = "" },
			wantProblems: []string{`LOG_LEVEL ""`}},
		{name: "unknown log format", need: 0, edit: func(c *Config) { c.LogFormat = "xml" },
			wantProblems: []string{`LOG_FORMAT "xml"`}},
		{name: "sample rate above 1", need: 0, edit: func(c *Config) { c.SentrySampleRate = 1.5 },
			wantProblems: []string{"SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1"}},
		{name: "negative sample rate", need: 0, edit: func(c *Config) { c.SentrySampleRate = -0.1 },
			wantProblems: []string{"SENTRY_TRACES_SAMPLE_RATE"}},
		{
			name: "every problem at once",
			need: needAll,
			edit: func(c *Config) {
				*c = Config{Slot: "BAD", BatchBytes: 1, LogLevel: "x", LogFormat: "y", SentrySampleRate: 2, AdminAddr: "nope"}
			},
			wantProblems: []string{
				"DATABASE_URL", "CLICKHOUSE_URL", "CLICKHOUSE_TOPOLOGY", "RELAY_SLOT", "RELAY_PUBLICATION", "CH_OUTBOX_BATCH_SIZE",
				"RELAY_BATCH_BYTES", "CH_OUTBOX_PROCESSING_FREQUENCY_SEC", "RELAY_STATUS_INTERVAL", "RELAY_INSERT_CONCURRENCY",
				"RELAY_SHUTDOWN_TIMEOUT", "RELAY_SCHEMA_EVOLUTION", "RELAY_ADMIN_ADDR", "LOG_LEVEL", "LOG_FORMAT", "SENTRY_TRACES_SAMPLE_RATE",
				"RELAY_OUTBOX_TABLE is required", "CLICKHOUSE_TABLE is required",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.edit(&c)
			assertProblems(t, c.Validate(tt.need), tt.wantProblems)
		})
	}
}

// NaN passes both "<= 0" and "> 3600"; the relay would then flush on every
// event (time.Duration(NaN) is negative on amd64).
func TestValidateRejectsNaN(t *testing.T) {
	c := validConfig()
	c.FlushSeconds, c.SentrySampleRate = math.NaN(), math.NaN()
	assertProblems(t, c.Validate(needAll), []string{"CH_OUTBOX_PROCESSING_FREQUENCY_SEC", "SENTRY_TRACES_SAMPLE_RATE"})
}

// Secrets in the URLs never reach an error message, whatever is wrong.
func TestNoSecretsInErrors(t *testing.T) {
	const secret = "Sup3rS3cretPw"
	tests := []struct {
		name        string
		environ     map[string]string
		wantMention []string
	}{
		{name: "postgres URL with a bad port", environ: map[string]string{"DATABASE_URL": "postgres://relay:" + secret + "@db:notaport/app"}, wantMention: []string{"DATABASE_URL"}},
		{name: "postgres URL with a bad escape", environ: map[string]string{"DATABASE_URL": "postgres://relay:" + secret + "@db:5432/app%zz"}, wantMention: []string{"DATABASE_URL"}},
		{name: "postgres DSN with a bad port", environ: map[string]string{"DATABASE_URL": "host=db password=" + secret + " port=x"}, wantMention: []string{"DATABASE_URL"}},
		{name: "postgres URL with a bad option", environ: map[string]string{"DATABASE_URL": "postgres://relay:" + secret + "@db/app?sslmode=sometimes"}, wantMention: []string{"DATABASE_URL"}},
		{name: "clickhouse URL with a bad port", environ: map[string]string{"CLICKHOUSE_URL": "clickhouse://default:" + secret + "@ch:port/default"}, wantMention: []string{"CLICKHOUSE_URL"}},
		{name: "clickhouse URL with a bad option", environ: map[string]string{"CLICKHOUSE_URL": "clickhouse://default:" + secret + "@ch:9000/default?dial_timeout=soon"}, wantMention: []string{"CLICKHOUSE_URL"}},
		{name: "clickhouse URL over HTTP", environ: map[string]string{"CLICKHOUSE_URL": "http://default:" + secret + "@ch:8123/default"}, wantMention: []string{"CLICKHOUSE_URL"}},
		{
			name: "both, with other problems",
			environ: map[string]string{
				"DATABASE_URL":         "postgres://relay:" + secret + "@db:notaport/app",
				"CLICKHOUSE_URL":       "http://default:" + secret + "@ch:8123/default",
				"CH_OUTBOX_BATCH_SIZE": secret,
			},
			wantMention: []string{"DATABASE_URL", "CLICKHOUSE_URL", "CH_OUTBOX_BATCH_SIZE"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"DATABASE_URL": testDatabaseURL, "CLICKHOUSE_URL": testClickHouseURL}
			for k, v := range tt.environ {
				env[k] = v
			}
			c := Defaults()
			fs := pflag.NewFlagSet("relay", pflag.ContinueOnError)
			RegisterFlags(fs, &c)
			err := Load(fs, &c, env, needAll)
			if err == nil {
				t.Fatal("Load() = nil, want a configuration error")
			}
			for _, m := range tt.wantMention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error does not mention %s:\n%v", m, err)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the password:\n%v", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name         string
		args         []string
		environ      map[string]string
		need         Need
		wantProblems []string
		check        func(*testing.T, Config)
	}{
		{
			name:    "valid from the environment",
			environ: map[string]string{"DATABASE_URL": testDatabaseURL, "CLICKHOUSE_URL": testClickHouseURL, "CH_OUTBOX_BATCH_SIZE": "50"},
			need:    needAll,
			check: func(t *testing.T, c Config) {
				if c.BatchSize != 50 || c.DatabaseURL != testDatabaseURL {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name:    "valid from flags",
			args:    []string{"--database-url=" + testDatabaseURL, "--clickhouse-url=" + testClickHouseURL},
			need:    needAll,
			environ: map[string]string{},
		},
		{
			name:    "a flag repairs an invalid environment value",
			args:    []string{"--slot=good_slot"},
			environ: map[string]string{"DATABASE_URL": testDatabaseURL, "CLICKHOUSE_URL": testClickHouseURL, "RELAY_SLOT": "Bad-Slot"},
			need:    needAll,
			check: func(t *testing.T, c Config) {
				if c.Slot != "good_slot" {
					t.Errorf("Slot = %q, want good_slot", c.Slot)
				}
			},
		},
		{
			name:    "resolve and validate problems in one error",
			environ: map[string]string{"CH_OUTBOX_BATCH_SIZE": "many", "RELAY_SLOT": "Bad-Slot", "LOG_FORMAT": "xml"},
			need:    needAll,
			wantProblems: []string{
				"CH_OUTBOX_BATCH_SIZE: not a valid whole number",
				"DATABASE_URL (--database-url) is required",
				"CLICKHOUSE_URL (--clickhouse-url) is required",
				`RELAY_SLOT "Bad-Slot"`,
				`LOG_FORMAT "xml"`,
			},
		},
		{
			name:         "need decides what is required",
			environ:      map[string]string{},
			need:         NeedPostgres,
			wantProblems: []string{"DATABASE_URL (--database-url) is required"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			fs := pflag.NewFlagSet("relay", pflag.ContinueOnError)
			RegisterFlags(fs, &c)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			assertProblems(t, Load(fs, &c, tt.environ, tt.need), tt.wantProblems)
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	err := &Error{Problems: []error{errors.New("A is wrong"), errors.New("B is wrong")}}
	want := "invalid configuration:\n  - A is wrong\n  - B is wrong"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestFlushInterval(t *testing.T) {
	tests := []struct {
		seconds float64
		want    time.Duration
	}{
		{1, time.Second},
		{0.25, 250 * time.Millisecond},
		{0.001, time.Millisecond},
		{3600, time.Hour},
	}
	for _, tt := range tests {
		c := Config{FlushSeconds: tt.seconds}
		if got := c.FlushInterval(); got != tt.want {
			t.Errorf("FlushInterval(%g) = %v, want %v", tt.seconds, got, tt.want)
		}
	}
}

func TestEnviron(t *testing.T) {
	got := Environ([]string{"A=1", "URL=postgres://u:p@h/db?x=y", "EMPTY=", "NOEQUALS", "A=2"})
	want := map[string]string{"A": "2", "URL": "postgres://u:p@h/db?x=y", "EMPTY": ""}
	if len(got) != len(want) {
		t.Fatalf("Environ() = %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("Environ()[%q] = %q, %v, want %q", k, g, ok, v)
		}
	}
}
