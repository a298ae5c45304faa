package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/outbox-relay/relay/internal/config"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
	"github.com/outbox-relay/relay/internal/status"
	"github.com/outbox-relay/relay/internal/termsafe"
)

// statusTimeout bounds one round of status queries.
const statusTimeout = 15 * time.Second

// clearScreen moves the cursor home and clears the terminal (ANSI).
const clearScreen = "\033[H\033[2J"

// minWatch keeps --watch from querying PostgreSQL in a tight loop.
const minWatch = 100 * time.Millisecond

type statusOptions struct {
	json  bool
	watch time.Duration
}

func newStatusCmd(e *env) *cobra.Command {
	cfg := config.Defaults()
	th := status.DefaultThresholds()
	var opts statusOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the slot, the outbox backlog and ClickHouse, with a verdict (exit 0 OK, 3 WARNING, 4 CRITICAL)",
		Long: `status reads the replication slot (lag, retained WAL, wal_status), and for each
stream the backlog of its outbox table and its ClickHouse tables (rows,
guarantee), and judges them: OK (exit 0), WARNING (exit 3) or CRITICAL (exit
4). An unreachable PostgreSQL is an error (exit 1). It uses the same settings
as relay run (streams included) and works whether the relay runs or not.

--json prints one JSON object (schema in the README, "Operating"); --watch
refreshes every 2s (or --watch=10s) until Ctrl-C, which exits 0.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadStatusConfig(cmd, e, &cfg, &th, opts); err != nil {
				return err
			}
			return runStatus(cmd.Context(), e, &cfg, th, opts)
		},
	}
	config.RegisterFlags(cmd.Flags(), &cfg, append([]string{"database-url", "clickhouse-url", "clickhouse-topology", "clickhouse-cluster", "slot", "publication", "message-prefix"}, config.StreamFlags()...)...)
	status.RegisterFlags(cmd.Flags(), &th)
	cmd.Flags().BoolVar(&opts.json, "json", false, "print JSON (one object per line with --watch)")
	cmd.Flags().DurationVar(&opts.watch, "watch", 0, "refresh in place at this interval (at least 100ms) until Ctrl-C (--watch alone: 2s)")
	cmd.Flags().Lookup("watch").NoOptDefVal = "2s"
	return cmd
}

// loadStatusConfig reports the problems of the settings and the thresholds
// together.
func loadStatusConfig(cmd *cobra.Command, e *env, cfg *config.Config, th *status.Thresholds, opts statusOptions) error {
	var problems []error
	if cmd.Flags().Changed("watch") && opts.watch < minWatch {
		problems = append(problems, fmt.Errorf("--watch must be at least %s (or absent to run once), got %s", minWatch, opts.watch))
	}
	for _, err := range []error{
		config.Load(cmd.Flags(), cfg, e.environ, config.NeedPostgres|config.NeedClickHouse),
		th.Load(cmd.Flags(), e.environ),
	} {
		var ce *config.Error
		if errors.As(err, &ce) {
			problems = append(problems, ce.Problems...)
		} else if err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return &config.Error{Problems: problems}
	}
	return nil
}

func runStatus(ctx context.Context, e *env, cfg *config.Config, th status.Thresholds, opts statusOptions) error {
	pool, err := openOnePool(ctx, cfg.DatabaseURL, "outbox-relay-status")
	if err != nil {
		return err
	}
	defer pool.Close()
	target := statusTarget(cfg)
	round := func(w io.Writer) (status.Verdict, error) {
		return statusRound(ctx, pool, target, th, opts.json, w)
	}
	if opts.watch <= 0 {
		v, err := round(e.stdout)
		if err != nil {
			return err
		}
		return verdictExit(v)
	}
	return watchStatus(ctx, e.stdout, opts, round)
}

// statusTarget is what relay status and relay run's status page look at:
// every stream, and the guarantee each of its tables gives.
func statusTarget(cfg *config.Config) status.Target {
	return status.Target{Slot: cfg.Slot, Publication: cfg.Publication, Streams: cfg.Streams(),
		ClickHouseURL: cfg.ClickHouseURL, MessagePrefix: cfg.MessagePrefix, Layout: cfg.Layout(), Guarantee: tableGuarantee}
}

// tableGuarantee states the guarantee a ClickHouse table gives.
func tableGuarantee(ctx context.Context, conn driver.Conn, table string) (string, error) {
	g, ok, err := chsink.ReadGuarantee(ctx, conn, table)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", fmt.Errorf("clickhouse table %s does not exist", table)
	}
	return g.String(), nil
}

// statusRound gathers, judges and renders one report.
func statusRound(ctx context.Context, db status.DB, t status.Target, th status.Thresholds, asJSON bool, w io.Writer) (status.Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	r, err := status.Gather(ctx, db, t)
	if err != nil {
		return "", fmt.Errorf("PostgreSQL (DATABASE_URL): %w", err)
	}
	r.Judge(th)
	if asJSON {
		return r.Verdict, status.WriteJSON(w, r)
	}
	return r.Verdict, status.WriteTable(w, r)
}

// watchStatus repeats round until ctx ends (Ctrl-C: exit 0). A failed round
// is shown and the next one tried; the screen is redrawn in place unless
// the output is JSON (then one object per line).
func watchStatus(ctx context.Context, out io.Writer, opts statusOptions, round func(io.Writer) (status.Verdict, error)) error {
	t := time.NewTicker(opts.watch)
	defer t.Stop()
	for {
		var buf bytes.Buffer
		if !opts.json {
			buf.WriteString(clearScreen)
		}
		if _, err := round(&buf); err != nil && ctx.Err() == nil {
			fmt.Fprintf(&buf, "relay status: %s\n", termsafe.Escape(err.Error()))
		}
		if ctx.Err() != nil {
			return nil
		}
		if !opts.json {
			fmt.Fprintf(&buf, "\nevery %s; Ctrl-C to stop\n", opts.watch)
		}
		if _, err := out.Write(buf.Bytes()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// verdictExit maps a verdict to the exit code of the command-line contract.
func verdictExit(v status.Verdict) error {
	switch v {
	case status.Warning:
		return &exitError{code: ExitWarning}
	case status.Critical:
		return &exitError{code: ExitCritical}
	}
	return nil
}

// openOnePool opens a pool of one connection to databaseURL for a command
// that asks PostgreSQL a few questions, named app in pg_stat_activity.
func openOnePool(ctx context.Context, databaseURL, app string) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, usageError(errors.New("DATABASE_URL is not a valid PostgreSQL URL or DSN"))
	}
	pcfg.MaxConns = 1
	pcfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL (DATABASE_URL): %w", err)
	}
	return pool, nil
}
