package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/outbox-relay/relay/internal/topology"
)

// topologyRun is one run of the relay in one topology: a drain of the
// dataset, then latency at a steady rate.
type topologyRun struct {
	drain DrainStat
	lat   latencyStat
}

// Topologies compares the relay on the single server with the relay on the
// replicated topology of the cluster (ON CLUSTER tables, inserts into
// shard 1's first replica), back to back in each run: drain throughput of
// d and end-to-end latency at lc's rate. Only the relay's own numbers are
// recorded: the servers' CPU accounting knows the single server alone.
func (r *Runner) Topologies(ctx context.Context, d Dataset, lc LatencyConfig, interval time.Duration, runs int) string {
	sc := fmt.Sprintf("topologies: %s, latency %d ev/s", d.scenario("drain"), lc.Rate)
	if r.Srv.Cluster == nil {
		r.Logf("%s: skipped (no cluster: scripts/services.sh cluster-up)", sc)
		return sc
	}
	steady := *r
	steady.BatchSize = SteadyBatchSize
	layouts := []topology.Topology{topology.Single, topology.Replicated}
	for i := range runs {
		r.Logf("%s: run %d/%d (load average %.1f)", sc, i+1, runs, LoadAvg1())
		got := map[topology.Topology]topologyRun{}
		for _, topo := range layouts {
			run, err := r.topologyRun(ctx, &steady, topo, d, lc, interval)
			if err != nil {
				r.fail(sc, i, fmt.Errorf("%s: %w", topo, err))
				break
			}
			got[topo] = run
		}
		if len(got) != len(layouts) {
			continue
		}
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		for _, topo := range layouts {
			run := got[topo]
			r.Report.Add(sc, string(topo)+" drain throughput", "ev/s", run.drain.EventsPerSec())
			r.Report.Add(sc, string(topo)+" p50", "ms", ms(run.lat.res.Quantile(0.50)))
			r.Report.Add(sc, string(topo)+" p99", "ms", ms(run.lat.res.Quantile(0.99)))
			r.Report.Add(sc, string(topo)+" achieved rate", "ev/s", run.lat.res.Achieved)
			r.Report.Add(sc, string(topo)+" missing", "events", float64(run.lat.res.Missing))
		}
	}
	for _, v := range ratio(r.Report.Get(sc, "replicated drain throughput"), r.Report.Get(sc, "single drain throughput")) {
		r.Report.Add(RatioScenario, "topologies replicated/single drain ev/s", "×", v)
	}
	for _, v := range ratio(r.Report.Get(sc, "replicated p99"), r.Report.Get(sc, "single p99")) {
		r.Report.Add(RatioScenario, fmt.Sprintf("topologies replicated/single latency p99 @%d ev/s", lc.Rate), "×", v)
	}
	return sc
}

// topologyRun drains d, then measures latency, with the relay's ClickHouse
// side in topo (single: the single server).
func (r *Runner) topologyRun(ctx context.Context, steady *Runner, topo topology.Topology, d Dataset, lc LatencyConfig, interval time.Duration) (topologyRun, error) {
	var run topologyRun
	rr := *r
	if topo != topology.Single {
		rr.Srv = r.Srv.OnCluster(topo)
	}
	e, err := rr.prepareStream(ctx, d, false)
	if err != nil {
		return run, err
	}
	run.drain, err = rr.RelayDrain(ctx, e, d, "")
	e.Close()
	if err != nil {
		return run, fmt.Errorf("drain: %w", err)
	}
	ss := *steady
	ss.Srv = rr.Srv
	if run.lat, err = ss.latencyRun(ctx, "relay", lc, interval, ""); err != nil {
		return run, fmt.Errorf("latency: %w", err)
	}
	r.Logf("  %s: drain %.0f ev/s; latency p50 %s p99 %s", topo, run.drain.EventsPerSec(),
		run.lat.res.Quantile(0.5).Round(time.Millisecond), run.lat.res.Quantile(0.99).Round(time.Millisecond))
	return run, nil
}
