package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/migrate"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
)

const migrateTimeout = 2 * time.Minute

func newMigrateCmd(e *env) *cobra.Command {
	cfg := config.Defaults()
	var adopt bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create the relay's own PostgreSQL and ClickHouse objects (idempotent) and the publication",
		Long: `migrate creates the relay's own objects, never an application's: in PostgreSQL
its state tables (goose), outbox_event when a stream uses that default name and it
is missing (an outbox table of another name must exist and is never altered), and
one publication of the inserts of every stream's outbox table (tables it lacks are
added). Each outbox table is checked first as relay run checks it: its identity
column (the primary key, or the column the id field maps onto) of type uuid,
smallint, integer, bigint, text or varchar, and a column of a type the relay reads
for each field; a problem stops migrate (exit 2), naming the stream, before
anything is published. In
ClickHouse: event_log (DateTime64(6) where the server has it, DateTime plus
event_date_time_us on servers before 20.1), laid out for CLICKHOUSE_TOPOLOGY:
single (a local ReplacingMergeTree), replicated (ON CLUSTER, Replicated
engines with the {shard}/{replica} macros), sharded (those as event_log_local
plus a Distributed event_log keyed by cityHash64(toString(event_id))) or cloud.
Running it again changes nothing.

A ClickHouse table that exists already (an application's own event_log) is
kept as it is: migrate prints the guarantee it gives (exactly once, exactly
once through FINAL, or at least once: a replay after a crash is a visible
duplicate) and the statement that raises it, which --adopt runs (printed
first); nothing else of the table is changed, and no <table>_dedup view is
made over it. See docs/adopting.md.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.Load(cmd.Flags(), &cfg, e.environ, config.NeedPostgres|config.NeedClickHouse); err != nil {
				return err
			}
			log := newLogger(e, &cfg)
			ctx, cancel := context.WithTimeout(cmd.Context(), migrateTimeout)
			defer cancel()
			if err := migratePostgres(ctx, &cfg, log); err != nil {
				return err
			}
			conn, err := chsink.Connect(ctx, cfg.ClickHouseURL)
			if err != nil {
				return fmt.Errorf("connect to ClickHouse: %w", err)
			}
			defer func() { _ = conn.Close() }()
			opts := migrate.Options{Layout: cfg.Layout(), Tables: clickHouseTables(&cfg), Adopt: adopt, Out: cmd.OutOrStdout()}
			if _, err := migrate.ClickHouseTables(ctx, conn, opts, log); err != nil {
				return err
			}
			log.Info().Msg("schemas are up to date")
			return nil
		},
	}
	cmd.Flags().BoolVar(&adopt, "adopt", false, "apply to an existing ClickHouse table the statement that raises its guarantee (printed first; nothing else is changed)")
	config.RegisterFlags(cmd.Flags(), &cfg, append([]string{"database-url", "clickhouse-url", "clickhouse-topology", "clickhouse-cluster", "publication", "log-level", "log-format"}, config.StreamFlags()...)...)
	return cmd
}

// clickHouseTables are the streams' ClickHouse tables that migrate makes
// when missing: each one named (a template's tables are made on first use
// by relay run), once.
func clickHouseTables(cfg *config.Config) []string {
	var out []string
	seen := map[string]bool{}
	for _, st := range cfg.Streams() {
		t := st.ClickHouseTable
		if t == "" || st.Routed() || seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
	}
	return out
}
