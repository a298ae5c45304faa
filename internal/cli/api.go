package cli

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/outbox-relay/relay/internal/api"
	"github.com/outbox-relay/relay/internal/buildinfo"
	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/report"
	"github.com/outbox-relay/relay/outbox"
)

func newAPICmd(e *env) *cobra.Command {
	cfg := config.Defaults()
	var environment string
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Serve the demo HTTP API: POST /users writes the user and its user_created event in one transaction",
		Long: `api serves the demo "create user" use case on API_ADDR: POST /users inserts the
user and publishes a user_created event into outbox_event in the same
transaction (with RELAY_MESSAGE_PREFIX set: as a transactional logical
decoding message of that prefix instead of a row); GET /users/{id}; /healthz and /readyz. The relay (relay run)
delivers the events to ClickHouse; the API keeps working while ClickHouse is down.
The API is described in api/openapi.yaml.

At start it creates its own schema where missing: the users table and the column
outbox_event.user_id (relay migrate creates the relay's objects only, outbox_event
among them, and must have run first).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.Load(cmd.Flags(), &cfg, e.environ, config.NeedPostgres); err != nil {
				return err
			}
			if v, ok := e.environ["RELAY_ENVIRONMENT"]; ok && !cmd.Flags().Changed("environment") {
				environment = v
			}
			log := newLogger(e, &cfg)
			rep, err := report.New(report.Options{DSN: cfg.SentryDSN, Environment: cfg.SentryEnvironment, Release: buildinfo.Version})
			if err != nil {
				return usageError(fmt.Errorf("SENTRY_DSN: %w", err))
			}
			defer rep.Flush(5 * time.Second)
			pool, err := pgxpool.New(cmd.Context(), cfg.DatabaseURL)
			if err != nil {
				return usageError(fmt.Errorf("DATABASE_URL: %w", err))
			}
			defer pool.Close()
			if err := api.EnsureSchema(cmd.Context(), pool); err != nil {
				return fmt.Errorf("demo schema: %w", err)
			}
			// The extra columns events may set (user_id), with the types
			// message mode carries them with.
			cols, err := outbox.ColumnTypes(cmd.Context(), pool)
			if err != nil {
				return fmt.Errorf("%w (run `relay migrate`)", err)
			}
			pubOpts := []outbox.Option{outbox.WithColumnTypes(cols...)}
			if cfg.MessagePrefix != "" {
				// Message mode: events as transactional logical decoding
				// messages, read by a relay with the same prefix.
				pubOpts = append(pubOpts, outbox.WithMessages(cfg.MessagePrefix))
			}
			pub, err := outbox.NewPublisher(environment, pubOpts...)
			if err != nil {
				return usageError(err)
			}
			var opts []api.Option
			if rep.Enabled() {
				opts = append(opts, api.WithSentryHub(rep.Hub()))
			}
			srv, err := api.New(api.Config{Addr: cfg.APIAddr}, pool, pub, log, opts...)
			if err != nil {
				return usageError(err)
			}
			log.Info().Str("message_prefix", cfg.MessagePrefix).Msg("api starting") // the server logs "api listening" with the address it got
			return srv.Run(cmd.Context())
		},
	}
	config.RegisterFlags(cmd.Flags(), &cfg, "database-url", "api-addr", "log-level", "log-format", "sentry-dsn", "sentry-environment", "message-prefix")
	cmd.Flags().StringVar(&environment, "environment", "local", "environment stamped on published events (env RELAY_ENVIRONMENT)")
	return cmd
}
