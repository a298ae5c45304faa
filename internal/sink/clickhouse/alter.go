package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/outbox-relay/relay/internal/sink/clickhouse/chsql"

	"github.com/ClickHouse/ch-go/proto"
	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outbox-relay/relay/internal/retry"
	"github.com/outbox-relay/relay/internal/topology"
)

// addColumn runs ALTER TABLE … ADD COLUMN where each step of the layout
// says (on a cluster: the replicated table on one replica of every shard,
// then in sharded the Distributed table on every server) and rereads the
// table.
func (t *table) addColumn(ctx context.Context, name, typ string) error {
	var servers []ClusterServer
	if t.s.opts.layout.OnCluster() {
		var err error
		if servers, err = t.s.clusterServers(ctx); err != nil {
			return err
		}
	}
	return t.addColumnOn(ctx, servers, name, typ)
}

// addColumnOn is addColumn over the cluster's servers.
func (t *table) addColumnOn(ctx context.Context, servers []ClusterServer, name, typ string) error {
	s := t.s
	for _, step := range addColumnSteps(t.name, s.opts.layout, name, typ, s.caps) {
		var err error
		ddl, n := step.ddl, 1
		switch step.scope {
		case alterHere:
			err = s.exec(ctx, "", ddl)
		case alterPerShard:
			n, err = s.execPerShard(ctx, servers, ddl)
			if err != nil && !retry.IsPermanent(err) && ctx.Err() == nil && step.onCluster != "" {
				// The servers can reach what the relay cannot.
				s.log.Warn().Err(err).Str("ddl", step.onCluster).
					Msg("no replica of a shard answers the relay: adding the column ON CLUSTER")
				ddl, n = step.onCluster, len(servers)
				err = s.exec(ctx, "", ddl)
			}
		case alterEveryHost:
			n = len(servers)
			for _, sv := range servers {
				if err = s.exec(ctx, sv.Addr, ddl); err != nil {
					break
				}
			}
		}
		if err != nil {
			return err
		}
		s.log.Info().Str("table", t.name).Str("column", name).Str("type", typ).Str("ddl", ddl).Int("servers", n).
			Msg("added the outbox table's new column to ClickHouse")
	}
	return t.refresh(ctx)
}

// alterScope is where one ALTER of an ADD COLUMN runs.
type alterScope int

const (
	// alterHere: once, on the server CLICKHOUSE_URL leads to.
	alterHere alterScope = iota
	// alterPerShard: on one replica of every shard of the cluster; the
	// replicated table carries it to the shard's other replicas itself.
	alterPerShard
	// alterEveryHost: on every server of the cluster, for a table each
	// server has for itself (the Distributed table).
	alterEveryHost
)

// alterStep is one ALTER of an ADD COLUMN and where it runs; onCluster is
// its ON CLUSTER form, for a shard none of whose replicas the relay can
// reach itself (remote_servers may name hosts only the servers resolve).
type alterStep struct {
	ddl       string
	scope     alterScope
	onCluster string
}

// addColumnSteps renders the ALTERs that add an extra column in a layout:
// to the table, or in sharded to the local table under it and then to the
// Distributed table (readers see a column only once every shard has it).
//
// ON CLUSTER only where the relay cannot reach a shard. A replicated
// table's ALTER is replicated by the table itself, so one replica per
// shard is enough (ON CLUSTER runs it once per shard too), while the
// distributed DDL queue waits for every host of the cluster: one replica
// down holds the column up for distributed_ddl_task_timeout and then
// fails, and on 18.16 a race between two replicas taking the same
// replicated ALTER from the queue stops that server's DDL worker for good.
// The Distributed table is altered server by server: an ALTER ON CLUSTER
// of a table that is not replicated, over a cluster whose shards are
// (internal_replication), runs on one replica per shard only, and 18.16
// refuses it outright (INCONSISTENT_CLUSTER_DEFINITION, 371).
func addColumnSteps(table string, l topology.Layout, column, typ string, caps Caps) []alterStep {
	if !l.OnCluster() {
		return []alterStep{{ddl: addColumnDDL(table, "", column, typ, caps)}}
	}
	replicated := table
	if local := l.LocalTable(table); local != table {
		replicated = local
	}
	steps := []alterStep{{ddl: addColumnDDL(replicated, "", column, typ, caps), scope: alterPerShard,
		onCluster: addColumnDDL(replicated, l.Cluster, column, typ, caps)}}
	if replicated != table {
		steps = append(steps, alterStep{ddl: addColumnDDL(table, "", column, typ, caps), scope: alterEveryHost})
	}
	return steps
}

// addColumnDDL renders one ALTER that adds an extra column, ON CLUSTER
// when a cluster is given, IF NOT EXISTS where the server has it (on
// older ones a concurrent add shows as "already exists", which the sink
// treats as done).
func addColumnDDL(table, cluster, column, typ string, caps Caps) string {
	var b strings.Builder
	b.WriteString("ALTER TABLE ")
	b.WriteString(chsql.Ident(table))
	if cluster != "" {
		b.WriteString(" ON CLUSTER ")
		b.WriteString(chsql.Ident(cluster))
	}
	b.WriteString(" ADD COLUMN ")
	if caps.AddIfNotExists {
		b.WriteString("IF NOT EXISTS ")
	}
	b.WriteString(chsql.Ident(column))
	b.WriteByte(' ')
	b.WriteString(typ)
	return b.String()
}

// execPerShard runs ddl on one replica of every shard: the first that
// takes it; a replica that cannot be reached (or fails retryably) passes
// the ALTER on to the next one of its shard. It returns how many shards
// ran it.
func (s *Sink) execPerShard(ctx context.Context, servers []ClusterServer, ddl string) (int, error) {
	shards := 0
	for i := 0; i < len(servers); {
		j := i
		for j < len(servers) && servers[j].Shard == servers[i].Shard {
			j++
		}
		var err error
		for _, sv := range servers[i:j] {
			if err = s.exec(ctx, sv.Addr, ddl); err == nil || retry.IsPermanent(err) || ctx.Err() != nil {
				break
			}
			s.log.Warn().Err(err).Str("server", sv.Addr).Uint32("shard", sv.Shard).
				Msg("adding the column through another replica of the shard")
		}
		if err != nil {
			return shards, fmt.Errorf("shard %d: %w", servers[i].Shard, err)
		}
		shards++
		i = j
	}
	return shards, nil
}

// exec runs one ALTER, on host when given (else where CLICKHOUSE_URL
// leads); "the column exists already" (a concurrent add, or one that a
// crash interrupted before the sink read the table) is success.
func (s *Sink) exec(ctx context.Context, host, ddl string) error {
	var conn driver.Conn
	var err error
	if host == "" {
		conn, err = Connect(ctx, s.dsn)
	} else {
		conn, err = ConnectHost(ctx, s.dsn, host)
	}
	if err != nil {
		return err
	}
	err = conn.Exec(ctx, ddl)
	_ = conn.Close()
	if err != nil && !columnExists(err) {
		return classify("add column", fmt.Errorf("%s: %w", ddl, err))
	}
	return nil
}

// columnExists tells whether an ADD COLUMN failed because the column is
// there already: it lost a race (DUPLICATE_COLUMN, or ILLEGAL_COLUMN).
func columnExists(err error) bool {
	var ex *ch.Exception
	return errors.As(err, &ex) && (proto.Error(ex.Code) == proto.ErrDuplicateColumn || proto.Error(ex.Code) == proto.ErrIllegalColumn)
}
