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
	return newOn(t, topo, false, os.Getenv("DATABASE_URL"))
}

// NewOnAt is NewOn with the PostgreSQL server of serverURL (e.g. the
// failover pair's primary) instead of DATABASE_URL's.
func NewOnAt(t TB, topo topology.Topology, serverURL string) *Env {
	t.Helper()
	return newOn(t, topo, false, serverURL)
}

// NewOnAlone is NewOn for a test that stops servers of the cluster (a
// replica, a shard, ZooKeeper): it waits until no other test, in any
// package, uses the cluster, and keeps it to itself until it ends.
func NewOnAlone(t TB, topo topology.Topology) *Env {
	t.Helper()
	if os.Getenv("RELAY_SERVICES_DIR") == "" {
		t.Skip("RELAY_SERVICES_DIR not set: the test stops servers of the cluster through scripts/services.sh")
	}
	return newOn(t, topo, true, os.Getenv("DATABASE_URL"))
}

func newOn(t TB, topo topology.Topology, alone bool, serverURL string) *Env {
	t.Helper()
	if topo == topology.Single || topo == topology.Cloud {
		Skip(t)
		return NewAt(t, serverURL)
	}
	c := SkipCluster(t)
	c.lock(t, alone)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := &Env{Name: RandomName("t_"), ServerDatabaseURL: serverURL, Cluster: c,
		Layout: topology.Layout{Topology: topo, Cluster: c.Name}}
	e.Slot, e.Publication = e.Name+"_slot", e.Name+"_pub"
	e.createPostgres(ctx, t)

	// The database is created on each server directly: the test's own
	// scaffolding stays out of the distributed DDL queue, which the
	// migrations below and the relay go through.
	t.Cleanup(func() { e.dropClickHouse() })
	for i := range c.Replicas {
		if err := c.exec(ctx, i+1, "CREATE DATABASE IF NOT EXISTS "+e.Name); err != nil {
			t.Fatalf("create clickhouse database on replica %d: %v", i+1, err)
		}
	}
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
		t.Fatalf("migrate clickhouse (%s): %v\n%s", topo, err, c.DDLQueueReport())
	}
	return e
}

// column reads a query's one String column (errors as a row).
func column(ctx context.Context, conn driver.Conn, query string, args ...any) []string {
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return []string{err.Error()}
	}
	defer func() { _ = rows.Close() }()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return append(out, err.Error())
		}
		out = append(out, v)
	}
	return out
}

// exec runs one statement on replica i (1-based) alone.
func (c *Cluster) exec(ctx context.Context, i int, query string) error {
	conn, err := chsink.Connect(ctx, c.Replicas[i-1])
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	return conn.Exec(ctx, query)
}

// DDLQueueReport says why ON CLUSTER statements may be stuck: the newest
// tasks of the distributed DDL queue with the servers that have not
// finished them, each server's queries running for more than 10 s, and
// what each server's DDL worker last logged (18.16 stops that thread for
// good on some ZooKeeper errors, and every later ON CLUSTER statement then
// waits distributed_ddl_task_timeout for that server).
func (c *Cluster) DDLQueueReport() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b strings.Builder
	b.WriteString("distributed DDL queue:\n")
	if conn, err := chsink.Connect(ctx, c.Replicas[0]); err != nil {
		fmt.Fprintf(&b, "  replica 1: %v\n", err)
	} else {
		defer func() { _ = conn.Close() }()
		const queue = "/clickhouse/task_queue/ddl"
		rows, err := conn.Query(ctx, "SELECT name, value FROM system.zookeeper WHERE path = ? ORDER BY name DESC LIMIT 5", queue)
		if err != nil {
			fmt.Fprintf(&b, "  %v\n", err)
		} else {
			type task struct{ name, value string }
			var tasks []task
			for rows.Next() {
				var tk task
				if rows.Scan(&tk.name, &tk.value) == nil {
					tasks = append(tasks, tk)
				}
			}
			_ = rows.Close()
			for _, tk := range tasks {
				done := column(ctx, conn, "SELECT name FROM system.zookeeper WHERE path = ?", queue+"/"+tk.name+"/finished")
				fmt.Fprintf(&b, "  %s finished on %v: %.200q\n", tk.name, done, tk.value)
			}
		}
	}
	logs := filepath.Join(os.Getenv("RELAY_SERVICES_DIR"), "cluster")
	for i := range c.Replicas {
		host := c.Replicas[i]
		if u, err := url.Parse(host); err == nil {
			host = u.Host
		}
		fmt.Fprintf(&b, "replica %d (%s):\n", i+1, host)
		if conn, err := chsink.Connect(ctx, c.Replicas[i]); err != nil {
			fmt.Fprintf(&b, "  does not answer: %v\n", err)
		} else {
			running := column(ctx, conn, "SELECT concat(toString(round(elapsed)), ' s: ', substring(query, 1, 200)) FROM system.processes WHERE elapsed > 10")
			_ = conn.Close()
			for _, q := range running {
				fmt.Fprintf(&b, "  running %s\n", q)
			}
		}
		if os.Getenv("RELAY_SERVICES_DIR") == "" {
			continue
		}
		raw, _ := os.ReadFile(filepath.Join(logs, fmt.Sprintf("ch%d", i+1), "log", "clickhouse-server.err.log"))
		var worker []string
		for _, line := range strings.Split(string(raw), "\n") {
			// Entries start with their date; stack frames mention DDLWorker too.
			if strings.Contains(line, "DDLWorker") && line != "" && line[0] >= '0' && line[0] <= '9' && !strings.Contains(line, ". /") {
				worker = append(worker, line)
			}
		}
		if len(worker) > 3 {
			worker = worker[len(worker)-3:]
		}
		for _, line := range worker {
			fmt.Fprintf(&b, "  log: %.300s\n", line)
		}
	}
	return b.String()
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
	Services(t, args...)
}

// Services runs scripts/services.sh with args (e.g. "stop-pg17", "pg17a")
// on the state dir of RELAY_SERVICES_DIR.
func Services(t TB, args ...string) {
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
