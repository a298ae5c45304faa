package cli

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/pflag"

	"github.com/outbox-relay/relay/internal/buildinfo"
	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/metrics"
	"github.com/outbox-relay/relay/internal/status"
	"github.com/outbox-relay/relay/internal/statuspage"
)

// Chart samples of the status page: every 5 s over 15 minutes.
const (
	pageSampleEvery = 5 * time.Second
	pageWindow      = 15 * time.Minute
)

// loadPageThresholds reads the RELAY_STATUS_* thresholds the page judges by
// (relay run has no flags for them; relay status does).
func loadPageThresholds(environ map[string]string) (status.Thresholds, error) {
	th := status.DefaultThresholds()
	return th, th.Load(pflag.NewFlagSet("run", pflag.ContinueOnError), environ)
}

// newStatusPage builds the page of relay run's admin address and the loop
// that samples its charts from m.
func newStatusPage(cfg *config.Config, th status.Thresholds, pool *pgxpool.Pool, m *metrics.Metrics) (*statuspage.Page, func(context.Context) error, error) {
	target := statusTarget(cfg)
	history := statuspage.NewHistory(pageWindow, pageSampleEvery)
	page, err := statuspage.New(statuspage.Options{
		Gather: func(ctx context.Context) (*status.Report, error) {
			r, err := status.Gather(ctx, pool, target)
			if err != nil {
				return nil, err
			}
			r.Judge(th)
			return r, nil
		},
		Metrics: m.Registry(), History: history, Every: pageSampleEvery,
		Settings: cfg.Settings(), Version: buildinfo.Version, Started: time.Now(),
	})
	record := func(ctx context.Context) error {
		return statuspage.Record(ctx, m.Registry(), history, pageSampleEvery)
	}
	return page, record, err
}
