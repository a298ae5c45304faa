// Package config is the relay's configuration: one typed struct filled from
// defaults, then the environment, then command-line flags (a flag set on the
// command line wins over its environment twin).
//
// Every field has an environment variable (tag env) and a flag (tag flag);
// the README's configuration table lists the same pairs. Validate reports
// every problem at once; no message contains a secret.
package config

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/caarlos0/env/v11"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/topology"
)

// Config holds every setting of every command.
type Config struct {
	DatabaseURL   string `env:"DATABASE_URL" flag:"database-url" help:"PostgreSQL URL or DSN (libpq form)"`
	ClickHouseURL string `env:"CLICKHOUSE_URL" flag:"clickhouse-url" help:"ClickHouse DSN, native protocol: clickhouse://user:pass@host:9000/database"`

	ClickHouseTopology string `env:"CLICKHOUSE_TOPOLOGY" envDefault:"single" flag:"clickhouse-topology" help:"single, replicated, sharded or cloud: how migrate lays out event_log and where run inserts"`
	ClickHouseCluster  string `env:"CLICKHOUSE_CLUSTER" flag:"clickhouse-cluster" help:"remote_servers cluster for ON CLUSTER DDL: required for replicated and sharded, rejected for single and cloud"`

	Slot        string `env:"RELAY_SLOT" envDefault:"outbox_relay" flag:"slot" help:"logical replication slot (created when missing)"`
	Publication string `env:"RELAY_PUBLICATION" envDefault:"outbox_pub" flag:"publication" help:"publication of the outbox table (created by migrate)"`

	SlotFailover bool `env:"RELAY_SLOT_FAILOVER" envDefault:"true" flag:"slot-failover" help:"PostgreSQL 17+: make the slot a failover slot (failover = true; relay run sets it on an existing slot too), which a physical standby with sync_replication_slots = on keeps across a promotion; false turns it off (README, High availability)"`

	ConfigFile      string `env:"RELAY_CONFIG" flag:"config" help:"YAML file of the relay's streams, several outbox tables each to its ClickHouse table (README, Streams); RELAY_OUTBOX_TABLE, CLICKHOUSE_TABLE and RELAY_OUTBOX_COLUMNS, _CONSTANTS and _IGNORE, when set, override its stream if it has one and are refused if it has several"`
	OutboxTable     string `env:"RELAY_OUTBOX_TABLE" envDefault:"outbox_event" flag:"outbox-table" help:"the outbox table of the one stream, schema-qualified allowed (e.g. public.core_outboxevent)"`
	ClickHouseTable string `env:"CLICKHOUSE_TABLE" envDefault:"event_log" flag:"clickhouse-table" help:"the ClickHouse table of the one stream; a template such as events_{event_type} (or {environment}) routes each value to a table of its own, at most 100"`
	OutboxColumns   string `env:"RELAY_OUTBOX_COLUMNS" flag:"outbox-columns" help:"field=column pairs mapping the relay's fields (id, event_type, event_date_time, environment, event_context, metadata_version) onto the outbox table's columns (e.g. event_date_time=created_at,event_context=payload); a field not named uses its own name"`
	OutboxConstants string `env:"RELAY_OUTBOX_CONSTANTS" flag:"outbox-constants" help:"field=value pairs for environment or metadata_version when the outbox table has no such column (e.g. environment=production,metadata_version=1)"`
	OutboxIgnore    string `env:"RELAY_OUTBOX_IGNORE" flag:"outbox-ignore" help:"outbox columns the relay neither carries nor refuses, comma-separated (e.g. a polling worker's processed)"`

	MessagePrefix string `env:"RELAY_MESSAGE_PREFIX" flag:"message-prefix" help:"message mode (PostgreSQL 14+): relay run also streams transactional logical decoding messages of this prefix as events, relay api publishes its events as such messages; empty = off (table only)"`

	BatchSize    int     `env:"CH_OUTBOX_BATCH_SIZE" envDefault:"1000" flag:"batch-size" help:"flush after this many events"`
	BatchBytes   int64   `env:"RELAY_BATCH_BYTES" envDefault:"16777216" flag:"batch-bytes" help:"flush after this many bytes of events (payload plus ~256 B each); at most twice this is held in memory"`
	FlushSeconds float64 `env:"CH_OUTBOX_PROCESSING_FREQUENCY_SEC" envDefault:"1" flag:"processing-frequency-sec" help:"flush this many seconds after the first buffered event (fractions allowed)"`

	StatusInterval time.Duration `env:"RELAY_STATUS_INTERVAL" envDefault:"10s" flag:"status-interval" help:"longest time between standby status updates to PostgreSQL"`
	ReceiveWait    time.Duration `env:"RELAY_RECEIVE_WAIT" envDefault:"10ms" flag:"receive-wait" help:"once the stream caught up, wait at least this long before reading again, so that the next transactions arrive in one read (fewer wake-ups at a steady trickle; adds up to this much latency); the wait grows, up to 250ms, while the next batch is far from due, and ends early when much is queued; 0 reads at once"`
	ShutdownGrace  time.Duration `env:"RELAY_SHUTDOWN_TIMEOUT" envDefault:"30s" flag:"shutdown-timeout" help:"time to flush and acknowledge on SIGTERM before exiting"`

	InsertConcurrency int `env:"RELAY_INSERT_CONCURRENCY" envDefault:"2" flag:"insert-concurrency" help:"batches written to ClickHouse at once, each on its own connection (the next is sent while ClickHouse stores the last); deletes and acknowledgements stay in order"`

	SchemaEvolution string `env:"RELAY_SCHEMA_EVOLUTION" envDefault:"add" flag:"schema-evolution" help:"a column added to outbox_event that event_log lacks: add it to event_log, fill only columns event_log has, or refuse (stop)"`

	// AdminAddr defaults to loopback: the page and /metrics show hosts,
	// users and column names, without authentication.
	AdminAddr string `env:"RELAY_ADMIN_ADDR" envDefault:"127.0.0.1:9090" flag:"admin-addr" help:"address of the status page /, /healthz, /readyz and /metrics (no authentication: loopback by default, :9090 for every interface); empty switches it off"`
	APIAddr   string `env:"API_ADDR" envDefault:":8080" flag:"api-addr" help:"listen address of the demo HTTP API (relay api)"`

	LogLevel  string `env:"LOG_LEVEL" envDefault:"info" flag:"log-level" help:"debug, info, warn or error"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"auto" flag:"log-format" help:"json, console, or auto (console on a terminal)"`

	SentryDSN         string  `env:"SENTRY_DSN" flag:"sentry-dsn" help:"Sentry DSN; empty disables Sentry"`
	SentryEnvironment string  `env:"SENTRY_ENVIRONMENT" envDefault:"production" flag:"sentry-environment" help:"Sentry environment tag"`
	SentrySampleRate  float64 `env:"SENTRY_TRACES_SAMPLE_RATE" envDefault:"0" flag:"sentry-traces-sample-rate" help:"share of flushes traced in Sentry (0..1)"`

	// streams is what Validate made of the settings above (Streams).
	streams []Stream
	// explicit names the single-stream settings set on the command line or
	// in the environment (Resolve), whatever their value: those override a
	// config file's stream. Nil when there is none.
	explicit map[string]bool
	// file is what Resolve read of RELAY_CONFIG, ${VAR} expanded from its
	// environment; Validate checks it.
	file *streamFile
}

// The default outbox and ClickHouse tables (RELAY_OUTBOX_TABLE,
// CLICKHOUSE_TABLE): those relay migrate creates when missing.
const (
	DefaultOutboxTable     = "outbox_event"
	DefaultClickHouseTable = "event_log"
)

// MaxBatchBytes bounds RELAY_BATCH_BYTES: the relay holds twice it in
// memory, and larger values would overflow that arithmetic.
const MaxBatchBytes = 1 << 30

// Error is a configuration problem (exit code 2).
type Error struct{ Problems []error }

func (e *Error) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = "  - " + p.Error()
	}
	return "invalid configuration:\n" + strings.Join(msgs, "\n")
}

// Defaults returns the configuration with every default applied.
func Defaults() Config {
	var c Config
	// Parsing an empty environment only applies envDefault tags; it cannot fail.
	_ = env.ParseWithOptions(&c, env.Options{Environment: only(nil)})
	return c
}

// only returns environ as the complete environment for env.ParseWithOptions,
// which falls back to the process environment when given an empty map.
func only(environ map[string]string) map[string]string {
	m := make(map[string]string, len(environ)+1)
	for k, v := range environ {
		m[k] = v
	}
	m["RELAY_CONFIG_NO_PROCESS_ENV"] = "1" // never read; keeps the map non-empty
	return m
}

// field describes one setting.
type field struct {
	index     int
	env, flag string
	help      string
}

func fields() []field {
	t := reflect.TypeFor[Config]()
	out := make([]field, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("env") == "" {
			continue // derived, not a setting
		}
		out = append(out, field{index: i, env: f.Tag.Get("env"), flag: f.Tag.Get("flag"), help: f.Tag.Get("help")})
	}
	return out
}

// RegisterFlags adds the flags named in names (all when empty) to fs, bound
// to c, with their environment twin in the help text.
func RegisterFlags(fs *pflag.FlagSet, c *Config, names ...string) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	v := reflect.ValueOf(c).Elem()
	for _, f := range fields() {
		if len(want) > 0 && !want[f.flag] {
			continue
		}
		usage := fmt.Sprintf("%s (env %s)", f.help, f.env)
		switch p := v.Field(f.index).Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, f.flag, *p, usage)
		case *bool:
			fs.BoolVar(p, f.flag, *p, usage)
		case *int:
			fs.IntVar(p, f.flag, *p, usage)
		case *int64:
			fs.Int64Var(p, f.flag, *p, usage)
		case *float64:
			fs.Float64Var(p, f.flag, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, f.flag, *p, usage)
		}
	}
}

// Resolve fills every field whose flag was not set on the command line
// from environ (a KEY=VALUE map), and reads RELAY_CONFIG's file with ${VAR}
// expanded from environ (Validate reports its problems). Malformed values
// are reported together.
func Resolve(fs *pflag.FlagSet, c *Config, environ map[string]string) error {
	fromEnv := Defaults()
	var problems []error
	if err := env.ParseWithOptions(&fromEnv, env.Options{Environment: only(environ)}); err != nil {
		problems = append(problems, envProblems(err)...)
	}
	src := reflect.ValueOf(&fromEnv).Elem()
	// A variable set to the empty string means empty (e.g. RELAY_ADMIN_ADDR=
	// switches the admin server off), not "use the default".
	for _, f := range fields() {
		if v, ok := environ[f.env]; ok && v == "" && src.Field(f.index).Kind() == reflect.String {
			src.Field(f.index).SetString("")
		}
	}
	dst := reflect.ValueOf(c).Elem()
	for _, f := range fields() {
		if fl := fs.Lookup(f.flag); fl != nil && fl.Changed {
			continue
		}
		dst.Field(f.index).Set(src.Field(f.index))
	}
	c.explicit = nil
	for _, s := range c.streamSettings() {
		_, inEnv := environ[s.env]
		if fl := fs.Lookup(s.flag); inEnv || (fl != nil && fl.Changed) {
			if c.explicit == nil {
				c.explicit = map[string]bool{}
			}
			c.explicit[s.env] = true
		}
	}
	c.file = nil
	if c.ConfigFile != "" {
		c.file = readStreamFile(c.ConfigFile, environ) // its problems are Validate's
	}
	if len(problems) > 0 {
		return &Error{Problems: problems}
	}
	return nil
}

func envProblems(err error) []error {
	byName := map[string]field{}
	t := reflect.TypeFor[Config]()
	for _, f := range fields() {
		byName[t.Field(f.index).Name] = f
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return []error{err}
	}
	var out []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			f := byName[pe.Name]
			out = append(out, fmt.Errorf("%s: not a valid %s", f.env, kindName(pe.Type)))
			continue
		}
		out = append(out, e)
	}
	return out
}

func kindName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "duration (e.g. 10s, 500ms)"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "whole number"
	case t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() == reflect.Bool:
		return "boolean (true or false)"
	}
	return t.String()
}

// Need names what a command requires beyond the common checks.
type Need int

const (
	NeedPostgres Need = 1 << iota
	NeedClickHouse
	NeedStream
)

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Validate reports every problem at once as an *Error.
func (c *Config) Validate(need Need) error {
	var p []error
	add := func(format string, args ...any) { p = append(p, fmt.Errorf(format, args...)) }
	if need&NeedPostgres != 0 {
		if c.DatabaseURL == "" {
			add("DATABASE_URL (--database-url) is required")
		} else if _, err := pgconn.ParseConfig(c.DatabaseURL); err != nil {
			add("DATABASE_URL is not a valid PostgreSQL URL or DSN")
		}
	}
	if need&NeedClickHouse != 0 {
		if c.ClickHouseURL == "" {
			add("CLICKHOUSE_URL (--clickhouse-url) is required")
		} else if _, err := ch.ParseDSN(c.ClickHouseURL); err != nil || !strings.HasPrefix(c.ClickHouseURL, "clickhouse://") {
			add("CLICKHOUSE_URL is not a valid ClickHouse DSN (want clickhouse://user:pass@host:9000/database)")
		} else if err := chsink.CheckTLSParams(c.ClickHouseURL); err != nil {
			add("CLICKHOUSE_URL: %w", err) // names parameters and files, never the password
		}
		if _, err := topology.Parse(c.ClickHouseTopology, c.ClickHouseCluster); err != nil {
			p = append(p, unjoin(err)...)
		}
	}
	if need&(NeedStream|NeedPostgres) != 0 {
		var sp []error
		c.streams, sp = c.buildStreams()
		p = append(p, sp...)
	}
	if need&NeedStream != 0 {
		if !slotName.MatchString(c.Slot) {
			add("RELAY_SLOT %q: use 1-63 lowercase letters, digits or underscores", c.Slot)
		}
		if strings.IndexByte(c.MessagePrefix, 0) >= 0 {
			add("RELAY_MESSAGE_PREFIX contains a NUL byte")
		}
		if c.Publication == "" {
			add("RELAY_PUBLICATION is required")
		}
		if c.BatchSize < 1 {
			add("CH_OUTBOX_BATCH_SIZE must be at least 1, got %d", c.BatchSize)
		}
		if c.BatchBytes < 1024 || c.BatchBytes > MaxBatchBytes {
			add("RELAY_BATCH_BYTES must be between 1024 and %d (1 GiB), got %d", MaxBatchBytes, c.BatchBytes)
		}
		if !(c.FlushSeconds > 0 && c.FlushSeconds <= 3600) { // also rejects NaN
			add("CH_OUTBOX_PROCESSING_FREQUENCY_SEC must be in (0, 3600], got %g", c.FlushSeconds)
		}
		if c.StatusInterval < 100*time.Millisecond || c.StatusInterval > 10*time.Minute {
			add("RELAY_STATUS_INTERVAL must be between 100ms and 10m, got %s", c.StatusInterval)
		}
		if c.InsertConcurrency < 1 || c.InsertConcurrency > 8 {
			add("RELAY_INSERT_CONCURRENCY must be between 1 and 8, got %d", c.InsertConcurrency)
		}
		if c.ReceiveWait < 0 || c.ReceiveWait > 100*time.Millisecond {
			add("RELAY_RECEIVE_WAIT must be between 0 and 100ms, got %s", c.ReceiveWait)
		}
		if c.ShutdownGrace <= 0 {
			add("RELAY_SHUTDOWN_TIMEOUT must be positive, got %s", c.ShutdownGrace)
		}
		switch c.SchemaEvolution {
		case "add", "fill", "refuse":
		default:
			add("RELAY_SCHEMA_EVOLUTION %q: use add, fill or refuse", c.SchemaEvolution)
		}
		if c.AdminAddr != "" {
			if err := checkListenAddr(c.AdminAddr); err != nil {
				add("RELAY_ADMIN_ADDR %q%w", c.AdminAddr, err)
			}
		}
	}
	if _, err := zerolog.ParseLevel(c.LogLevel); err != nil || c.LogLevel == "" {
		add("LOG_LEVEL %q: use debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "console", "auto":
	default:
		add("LOG_FORMAT %q: use json, console or auto", c.LogFormat)
	}
	if !(c.SentrySampleRate >= 0 && c.SentrySampleRate <= 1) { // also rejects NaN
		add("SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1, got %g", c.SentrySampleRate)
	}
	if len(p) > 0 {
		return &Error{Problems: p}
	}
	return nil
}

// checkListenAddr finds what makes addr unusable for a TCP listener
// before a listen would, in words a user can act on; the error text
// continues "RELAY_ADMIN_ADDR "addr"".
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New(" is not host:port")
	}
	n, err := strconv.Atoi(port)
	switch {
	case err != nil:
		return fmt.Errorf(": port %q is not a number", port)
	case n < 0 || n > 65535:
		return fmt.Errorf(": port %d is out of range (0 to 65535)", n)
	}
	return nil
}

// unjoin splits an errors.Join into its problems.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Layout is CLICKHOUSE_TOPOLOGY and CLICKHOUSE_CLUSTER, as Validate checked them.
func (c *Config) Layout() topology.Layout {
	return topology.Layout{Topology: topology.Topology(c.ClickHouseTopology), Cluster: c.ClickHouseCluster}
}

// FlushInterval is CH_OUTBOX_PROCESSING_FREQUENCY_SEC as a duration.
func (c *Config) FlushInterval() time.Duration {
	return time.Duration(c.FlushSeconds * float64(time.Second))
}

// Environ turns os.Environ()-style pairs into a map.
func Environ(pairs []string) map[string]string {
	m := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// Load resolves c from environ and validates it for need; every problem of
// both steps comes back in one *Error.
func Load(fs *pflag.FlagSet, c *Config, environ map[string]string, need Need) error {
	var problems []error
	var ce *Error
	if err := Resolve(fs, c, environ); errors.As(err, &ce) {
		problems = append(problems, ce.Problems...)
	}
	if err := c.Validate(need); errors.As(err, &ce) {
		problems = append(problems, ce.Problems...)
	}
	if len(problems) > 0 {
		return &Error{Problems: problems}
	}
	return nil
}
