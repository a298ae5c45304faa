package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/migrate"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/topology"
)

// Servers are the server-level URLs (scripts/services.sh env) and where to
// find the servers' processes for CPU accounting.
type Servers struct {
	DatabaseURL   string // PostgreSQL maintenance database URL
	ClickHouseURL string // ClickHouse URL; its database is replaced per Env
	// PGDataDir holds postmaster.pid; CHPidFile holds the server's pid.
	PGDataDir string
	CHPidFile string
	// Cluster, when set, is the ClickHouse cluster of scripts/services.sh
	// cluster-up; Layout says whether an Env's ClickHouse side is on it
	// (replicated) or on the single server (the zero Layout).
	Cluster *Cluster
	Layout  topology.Layout
}

// Cluster is the remote_servers name and the servers' URLs (replica i is
// shard (i+1)/2), as CLICKHOUSE_CLUSTER_NAME and CLICKHOUSE_CLUSTER_URLS.
type Cluster struct {
	Name string
	URLs []string
}

// Env is one scenario run's databases: a fresh PostgreSQL database and a
// fresh ClickHouse database of the same name, migrated with the relay's own
// migrations. Close drops both (and the slots in the PostgreSQL database).
type Env struct {
	Name          string
	DatabaseURL   string
	ClickHouseURL string
	Slot          string
	Publication   string
	PG            *pgxpool.Pool
	CH            driver.Conn
	// DateTime64 is whether event_log.event_date_time is DateTime64.
	DateTime64 bool

	srv    *Servers
	closed bool
}

// NewEnv creates and migrates the databases of one run.
func NewEnv(ctx context.Context, srv *Servers) (*Env, error) {
	e := &Env{Name: randomName("bench_"), srv: srv}
	e.Slot, e.Publication = e.Name+"_slot", e.Name+"_pub"
	if err := e.create(ctx); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *Env) create(ctx context.Context) error {
	admin, err := pgx.Connect(ctx, e.srv.DatabaseURL)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer func() { _ = admin.Close(ctx) }()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{e.Name}.Sanitize()); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	if e.DatabaseURL, err = withPath(e.srv.DatabaseURL, e.Name); err != nil {
		return err
	}
	if e.ClickHouseURL, err = e.srv.clickHouseURL(e.Name); err != nil {
		return err
	}
	if err := e.createClickHouse(ctx); err != nil {
		return err
	}
	if err := migrate.Postgres(ctx, e.DatabaseURL, e.Publication, true, migrate.Named(config.DefaultOutboxTable), zerolog.Nop()); err != nil {
		return fmt.Errorf("migrate postgres: %w", err)
	}
	poolCfg, err := pgxpool.ParseConfig(e.DatabaseURL)
	if err != nil {
		return err
	}
	poolCfg.MaxConns = 32
	if e.PG, err = pgxpool.NewWithConfig(ctx, poolCfg); err != nil {
		return fmt.Errorf("postgres pool: %w", err)
	}
	return nil
}

func (e *Env) createClickHouse(ctx context.Context) error {
	admin, err := chsink.Connect(ctx, e.srv.adminURL())
	if err != nil {
		return fmt.Errorf("connect to clickhouse: %w", err)
	}
	err = admin.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+e.Name+e.srv.onCluster())
	_ = admin.Close()
	if err != nil {
		return fmt.Errorf("create clickhouse database: %w", err)
	}
	if e.CH, err = chsink.Connect(ctx, e.ClickHouseURL); err != nil {
		return err
	}
	if err := migrate.ClickHouseOn(ctx, e.CH, e.srv.layout(), zerolog.Nop()); err != nil {
		return fmt.Errorf("migrate clickhouse: %w", err)
	}
	v, err := e.CH.ServerVersion()
	if err != nil {
		return err
	}
	e.DateTime64 = migrate.CapabilitiesOf(*v).DateTime64
	return nil
}

// CreateSlot creates a pgoutput slot at the current WAL position, so that
// everything written afterwards has to be decoded by whoever streams it.
func (e *Env) CreateSlot(ctx context.Context, name string) error {
	_, err := e.PG.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name)
	if err != nil {
		return fmt.Errorf("create slot %s: %w", name, err)
	}
	return nil
}

// SlotActive reports whether a walsender streams from the slot.
func (e *Env) SlotActive(ctx context.Context, name string) (bool, error) {
	var active bool
	err := e.PG.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&active)
	return active, err
}

// CurrentWAL is pg_current_wal_lsn() in bytes.
func (e *Env) CurrentWAL(ctx context.Context) (int64, error) {
	var lsn int64
	err := e.PG.QueryRow(ctx, "SELECT (pg_current_wal_lsn() - '0/0')::bigint").Scan(&lsn)
	return lsn, err
}

// ClickHouseRows is the number of rows in the active parts of event_log
// (metadata only: cheap enough to poll while a benchmark runs).
func (e *Env) ClickHouseRows(ctx context.Context) (uint64, error) {
	var n uint64
	err := e.CH.QueryRow(ctx, `SELECT toUInt64(sum(rows)) FROM system.parts
		WHERE database = ? AND table = ? AND active`, e.Name, config.DefaultClickHouseTable).Scan(&n)
	return n, err
}

// ClickHouseDistinct counts the distinct event ids in event_log.
func (e *Env) ClickHouseDistinct(ctx context.Context) (uint64, error) {
	var n uint64
	err := e.CH.QueryRow(ctx, "SELECT toUInt64(uniqExact(event_id)) FROM "+config.DefaultClickHouseTable).Scan(&n)
	return n, err
}

// OutboxEmpty reports whether outbox_event holds no row.
func (e *Env) OutboxEmpty(ctx context.Context) (bool, error) {
	var exists bool
	err := e.PG.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+pgx.Identifier{config.DefaultOutboxTable}.Sanitize()+")").Scan(&exists)
	return !exists, err
}

// Close drops the run's databases; errors are ignored (best effort).
// Closing twice is harmless.
func (e *Env) Close() {
	if e.closed {
		return
	}
	e.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if e.PG != nil {
		e.PG.Close()
	}
	if e.CH != nil {
		_ = e.CH.Close()
	}
	e.dropPostgres(ctx)
	if admin, err := chsink.Connect(ctx, e.srv.adminURL()); err == nil {
		_ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+e.Name+e.srv.onCluster())
		_ = admin.Close()
	}
}

func (e *Env) dropPostgres(ctx context.Context) {
	admin, err := pgx.Connect(ctx, e.srv.DatabaseURL)
	if err != nil {
		return
	}
	defer func() { _ = admin.Close(ctx) }()
	_, _ = admin.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE database = $1 AND active_pid IS NOT NULL`, e.Name)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		_, err := admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, e.Name)
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // cleanup only: the walsender is exiting
	}
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{e.Name}.Sanitize()+" WITH (FORCE)")
}

// RelayEnv is the environment of a bin/relay process on this Env.
func (e *Env) RelayEnv(path string, extra ...string) []string {
	env := []string{
		"DATABASE_URL=" + e.DatabaseURL,
		"CLICKHOUSE_URL=" + e.ClickHouseURL,
		"RELAY_SLOT=" + e.Slot,
		"RELAY_PUBLICATION=" + e.Publication,
		"RELAY_ADMIN_ADDR=",
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		"PATH=" + path,
	}
	if l := e.srv.layout(); l.OnCluster() {
		env = append(env, "CLICKHOUSE_TOPOLOGY="+string(l.Topology), "CLICKHOUSE_CLUSTER="+l.Cluster)
	}
	return append(env, extra...)
}

// OnCluster returns a copy of srv whose Envs are on the cluster in
// topology topo (replicated: the relay inserts through shard 1's replicas).
func (srv *Servers) OnCluster(topo topology.Topology) *Servers {
	c := *srv
	c.Layout = topology.Layout{Topology: topo, Cluster: srv.Cluster.Name}
	return &c
}

func (srv *Servers) layout() topology.Layout {
	if srv.Layout.Topology == "" {
		return topology.Layout{Topology: topology.Single}
	}
	return srv.Layout
}

func (srv *Servers) onCluster() string {
	if !srv.layout().OnCluster() {
		return ""
	}
	return " ON CLUSTER " + srv.Layout.Cluster
}

// adminURL is where databases are created and dropped.
func (srv *Servers) adminURL() string {
	if srv.layout().OnCluster() {
		return srv.Cluster.URLs[0]
	}
	return srv.ClickHouseURL
}

// clickHouseURL is an Env's CLICKHOUSE_URL: its database on the single
// server, or through the replicas of shard 1 (sharded: every server).
func (srv *Servers) clickHouseURL(db string) (string, error) {
	if !srv.layout().OnCluster() {
		return withPath(srv.ClickHouseURL, db)
	}
	replicas := srv.Cluster.URLs
	if srv.Layout.Topology == topology.Replicated {
		replicas = replicas[:2]
	}
	var hosts []string
	for _, r := range replicas {
		u, err := url.Parse(r)
		if err != nil {
			return "", fmt.Errorf("parse cluster URL: %w", err)
		}
		hosts = append(hosts, u.Host)
	}
	u, err := url.Parse(replicas[0])
	if err != nil {
		return "", fmt.Errorf("parse cluster URL: %w", err)
	}
	u.Host, u.Path = strings.Join(hosts, ","), "/"+db
	return u.String(), nil
}

func randomName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func withPath(raw, db string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parse server URL: %w", err)
	}
	u.Path = "/" + db
	return u.String(), nil
}
