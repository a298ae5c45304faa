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
func AddColumnOn(ctx context.Context, s *Sink, table string, servers []ClusterServer, name, typ string) error {
	t, err := s.prepare(ctx, table, nil, false)
	if err != nil {
		return err
	}
	return t.addColumnOn(ctx, servers, name, typ)
}

// TestPKI is a private CA with a server and a client certificate, for the
// TLS tests.
type TestPKI = testPKI

// NewTestPKI makes one in a temp dir.
var NewTestPKI = newTestPKI

// Fills reports whether the sink fills a column of this name and type
// itself.
func Fills(name, typ string) bool {
	_, ok := newColumn(name, typ)
	return ok
}
