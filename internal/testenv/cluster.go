package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/migrate"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/topology"
)

// Cluster is the ClickHouse cluster every cluster test shares (`scripts/
// services.sh cluster-up`, started by `make test`): ZooKeeper and four
// servers, 2 shards × 2 replicas. Tests isolate themselves by database, as
// on the single server.
type Cluster struct {
	Name string // the remote_servers cluster
	// Replicas are the servers' URLs (database relay) in the order of
	// services.sh's replica numbers: replica i (1-based) is shard (i+1)/2.
	Replicas []string
}

// ClusterFromEnv is the cluster of CLICKHOUSE_CLUSTER_NAME and
// CLICKHOUSE_CLUSTER_URLS, or nil when they are unset.
func ClusterFromEnv() *Cluster {
	name, urls := os.Getenv("CLICKHOUSE_CLUSTER_NAME"), os.Getenv("CLICKHOUSE_CLUSTER_URLS")
	if name == "" || urls == "" {
		return nil
	}
	return &Cluster{Name: name, Replicas: strings.Split(urls, ",")}
}

// SkipCluster skips t unless the servers and the cluster are configured.
func SkipCluster(t TB) *Cluster {
	t.Helper()
	Skip(t)
	c := ClusterFromEnv()
	if c == nil {
		t.Skip("CLICKHOUSE_CLUSTER_NAME / CLICKHOUSE_CLUSTER_URLS not set: run `make test` (scripts/services.sh cluster-up starts the cluster)")
	}
	return c
}

// NewOn is New for a topology on the shared cluster: the ClickHouse
// database is created ON CLUSTER and migrated for the topology, and
// ClickHouse (the relay's CLICKHOUSE_URL) lists the servers the relay may
// insert through: shard 1's replicas for replicated, every server for
// sharded. Single and cloud are New.
func NewOn(t TB, topo topology.Topology) *Env {
	t.Helper()
	return newOn(t, topo, false)
}

// NewOnAlone is NewOn for a test that stops servers of the cluster (a
// replica, a shard, ZooKeeper): it waits until no other test, in any
// package, uses the cluster, and keeps it to itself until it ends.
func NewOnAlone(t TB, topo topology.Topology) *Env {
	t.Helper()
	if os.Getenv("RELAY_SERVICES_DIR") == "" {
		t.Skip("RELAY_SERVICES_DIR not set: the test stops servers of the cluster through scripts/services.sh")
	}
	return newOn(t, topo, true)
}

func newOn(t TB, topo topology.Topology, alone bool) *Env {
	t.Helper()
	if topo == topology.Single || topo == topology.Cloud {
		return New(t)
	}
	c := SkipCluster(t)
	c.lock(t, alone)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := &Env{Name: RandomName("t_"), ServerDatabaseURL: os.Getenv("DATABASE_URL"), Cluster: c,
		Layout: topology.Layout{Topology: topo, Cluster: c.Name}}
	e.Slot, e.Publication = e.Name+"_slot", e.Name+"_pub"
	e.createPostgres(ctx, t)

	admin := c.Conn(t, 1)
	defer func() { _ = admin.Close() }()
	if err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE IF NOT EXISTS %s ON CLUSTER %s", e.Name, c.Name)); err != nil {
		t.Fatalf("create clickhouse database on the cluster: %v", err)
	}
	t.Cleanup(func() { e.dropClickHouse() })
	hosts := c.Replicas
	if topo == topology.Replicated {
		hosts = hosts[:2]
	}
	e.ClickHouse = c.URL(t, e.Name, hosts...)

	e.migratePostgres(ctx, t)
	var err error
	if e.CH, err = chsink.Connect(ctx, e.ClickHouse); err != nil {
		t.Fatalf("connect to ClickHouse: %v", err)
	}
	if err := migrate.ClickHouseOn(ctx, e.CH, e.Layout, zerolog.Nop()); err != nil {
		t.Fatalf("migrate clickhouse (%s): %v", topo, err)
	}
	return e
}

// URL is a DSN for database db through the given servers (all when none).
func (c *Cluster) URL(t TB, db string, replicas ...string) string {
	t.Helper()
	if len(replicas) == 0 {
		replicas = c.Replicas
	}
	var hosts []string
	for _, r := range replicas {
		hosts = append(hosts, Host(t, r))
	}
	u, err := url.Parse(replicas[0])
	if err != nil {
		t.Fatal(err)
	}
	u.Host = strings.Join(hosts, ",")
	u.Path = "/" + db
	return u.String()
}

// Conn connects to replica i (1-based) alone; the caller closes it.
func (c *Cluster) Conn(t TB, i int) driver.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := chsink.Connect(ctx, c.Replicas[i-1])
	if err != nil {
		t.Fatalf("connect to replica %d: %v", i, err)
	}
	return conn
}

// Services runs scripts/services.sh with args (e.g. "stop-replica", "2")
// on the cluster's state dir (RELAY_SERVICES_DIR).
func (c *Cluster) Services(t TB, args ...string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "services.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, script, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("services.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (e *Env) createPostgres(ctx context.Context, t TB) {
	t.Helper()
	admin, err := pgx.Connect(ctx, e.ServerDatabaseURL)
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	defer func() { _ = admin.Close(ctx) }()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{e.Name}.Sanitize()); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() { e.dropPostgres() })
	e.DatabaseURL = withPath(t, e.ServerDatabaseURL, e.Name)
}

// lock holds a lock on the cluster for the rest of t: shared by the tests
// that only use it, exclusive for one that stops its servers. (go test runs
// packages in parallel processes, hence a file lock.)
func (c *Cluster) lock(t TB, exclusive bool) {
	t.Helper()
	sum := sha256.Sum256([]byte(strings.Join(c.Replicas, ",")))
	path := filepath.Join(os.TempDir(), "relay-cluster-"+hex.EncodeToString(sum[:6])+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("cluster lock: %v", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		_ = f.Close()
		t.Fatalf("cluster lock: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() }) // closing releases the lock
}
