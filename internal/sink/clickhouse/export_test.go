package clickhouse

import (
	"context"

	"github.com/rs/zerolog"
)

// ExecPerShard runs ddl as the sink's ADD COLUMN runs a replicated table's
// ALTER (one replica of every shard), for the cluster tests.
func ExecPerShard(ctx context.Context, dsn string, servers []ClusterServer, ddl string) (int, error) {
	s := &Sink{dsn: dsn, log: zerolog.Nop()}
	return s.execPerShard(ctx, servers, ddl)
}

// AddColumnOn adds a column as the sink does, over the given servers
// instead of system.clusters', for the cluster tests.
func AddColumnOn(ctx context.Context, s *Sink, servers []ClusterServer, name, typ string) error {
	return s.addColumnOn(ctx, servers, name, typ)
}

// TestPKI is a private CA with a server and a client certificate, for the
// TLS tests.
type TestPKI = testPKI

// NewTestPKI makes one in a temp dir.
var NewTestPKI = newTestPKI
