package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// RatioScenario is the scenario name of the derived ratios (printed last).
const RatioScenario = "ratios"

// SizeName prints an event size the way the report names datasets.
func SizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

func (d Dataset) scenario(prefix string) string {
	s := fmt.Sprintf("%s %d×%s", prefix, d.Events, SizeName(d.Size))
	if d.PerTx >= d.Events {
		s += " (1 tx)"
	}
	return s
}

// drainRun is one run of the drain scenario; nil stats were not measured.
type drainRun struct {
	relay, bare, raw, poll *DrainStat
}

// Drain runs the backlog drain of d runs times: the relay and the bare
// decoder on the same load (two slots created before loading), the raw
// ClickHouse insert of the same rows, and (when polling) the polling
// baseline on a second load. A failed run is logged and left out, so that
// per-run ratios stay paired.
func (r *Runner) Drain(ctx context.Context, d Dataset, runs int, polling bool) {
	sc := d.scenario("drain")
	for i := range runs {
		load := LoadAvg1()
		r.Logf("%s: run %d/%d (load average %.1f)", sc, i+1, runs, load)
		run, err := r.drainRun(ctx, d, polling, fmt.Sprintf("drain-%s-%d", SizeName(d.Size), i+1))
		if err != nil {
			r.fail(sc, i, err)
			continue
		}
		r.Report.Add(sc, "host load average at start", "1 min", load)
		r.record(sc, "relay", *run.relay, true)
		r.record(sc, "bare-decode", *run.bare, true)
		r.record(sc, "raw-ch-insert", *run.raw, false)
		if run.poll != nil {
			r.record(sc, "polling", *run.poll, true)
		}
	}
	r.drainRatios(sc, d, polling)
}

func (r *Runner) drainRun(ctx context.Context, d Dataset, polling bool, profile string) (drainRun, error) {
	var run drainRun
	e, err := r.prepareStream(ctx, d, true)
	if err != nil {
		return run, err
	}
	defer e.Close()
	bare, err := r.BareDecodeRun(ctx, e, d, e.Slot+"_bare")
	if err != nil {
		return run, fmt.Errorf("bare decode: %w", err)
	}
	r.Logf("  bare decode: %.0f ev/s", bare.EventsPerSec())
	relay, err := r.RelayDrain(ctx, e, d, profile)
	if err != nil {
		return run, fmt.Errorf("relay: %w", err)
	}
	r.Logf("  relay: %.0f ev/s, %.1f MB/s, peak RSS %d MiB", relay.EventsPerSec(), relay.MBPerSec(), relay.Proc.PeakRSS>>20)
	e.Close()
	raw, err := r.RawInsert(ctx, d)
	if err != nil {
		return run, fmt.Errorf("raw insert: %w", err)
	}
	r.Logf("  raw clickhouse insert: %.0f ev/s, %.1f MB/s", raw.EventsPerSec(), raw.MBPerSec())
	run = drainRun{relay: &relay, bare: &bare, raw: &raw}
	if polling {
		poll, err := r.PollDrain(ctx, d)
		if err != nil {
			return run, fmt.Errorf("polling: %w", err)
		}
		r.Logf("  polling: %.0f ev/s", poll.EventsPerSec())
		run.poll = &poll
	}
	return run, nil
}

// prepareStream is prepare with the relay's slot (and the bare decoder's).
func (r *Runner) prepareStream(ctx context.Context, d Dataset, bare bool) (*Env, error) {
	if bare {
		return r.prepare(ctx, d, "", "_bare")
	}
	return r.prepare(ctx, d, "")
}

func (r *Runner) drainRatios(sc string, d Dataset, polling bool) {
	rep := r.Report
	relay := rep.Get(sc, "relay throughput")
	label := SizeName(d.Size)
	if polling {
		name := "drain " + label + " relay/polling ev/s"
		for _, v := range ratio(relay, rep.Get(sc, "polling throughput")) {
			rep.Add(RatioScenario, name, "×", v)
		}
		rep.Goal(RatioScenario, name, ">=", 1.5)
		name = "drain " + label + " cpu total/M relay/polling"
		for _, v := range ratio(rep.Get(sc, "relay cpu total"), rep.Get(sc, "polling cpu total")) {
			rep.Add(RatioScenario, name, "×", v)
		}
		rep.Goal(RatioScenario, name, "<=", 0.9)
	}
	name := "drain " + label + " relay/bare-decode ev/s"
	for _, v := range ratio(relay, rep.Get(sc, "bare-decode throughput")) {
		rep.Add(RatioScenario, name, "×", v)
	}
	rep.Goal(RatioScenario, name, ">=", 0.7)
	name = "drain " + label + " relay/raw-ch-insert MB/s"
	for _, v := range ratio(rep.Get(sc, "relay throughput MB"), rep.Get(sc, "raw-ch-insert throughput MB")) {
		rep.Add(RatioScenario, name, "×", v)
	}
	if d.Size >= 64<<10 {
		rep.Goal(RatioScenario, name, ">=", 0.7)
	}
	r.rssRatio(sc, label)
}

func (r *Runner) rssRatio(sc, label string) {
	rep := r.Report
	name := label + " relay peak RSS/(2×batch bytes+64MiB)"
	bound := float64(r.RSSBound()) / (1 << 20)
	for _, v := range rep.Get(sc, "relay peak RSS") {
		rep.Add(RatioScenario, name, "×", v/bound)
	}
	rep.Goal(RatioScenario, name, "<=", 1)
}

// Resources drains d with the relay only (no baselines): large events and
// large transactions, for CPU and peak RSS.
func (r *Runner) Resources(ctx context.Context, d Dataset, runs int) {
	sc := d.scenario("resources")
	for i := range runs {
		load := LoadAvg1()
		r.Logf("%s: run %d/%d (load average %.1f)", sc, i+1, runs, load)
		st, err := r.resourceRun(ctx, d, fmt.Sprintf("resources-%s-%d-%d", SizeName(d.Size), d.PerTx, i+1))
		if err != nil {
			r.fail(sc, i, err)
			continue
		}
		r.Logf("  relay: %.0f ev/s, %.1f MB/s, peak RSS %d MiB", st.EventsPerSec(), st.MBPerSec(), st.Proc.PeakRSS>>20)
		r.Report.Add(sc, "host load average at start", "1 min", load)
		r.record(sc, "relay", st, true)
	}
	label := SizeName(d.Size)
	if d.PerTx >= d.Events {
		label = fmt.Sprintf("1 tx of %d", d.Events)
	}
	r.rssRatio(sc, label)
}

func (r *Runner) resourceRun(ctx context.Context, d Dataset, profile string) (DrainStat, error) {
	e, err := r.prepareStream(ctx, d, false)
	if err != nil {
		return DrainStat{}, err
	}
	defer e.Close()
	return r.RelayDrain(ctx, e, d, profile)
}

// Latency measures end-to-end latency at a fixed rate for the relay (flush
// interval interval, CH_OUTBOX_BATCH_SIZE batch) and the polling baseline
// (poll interval interval, the same batch).
// It returns the scenario name and the name of the p99 ratio.
func (r *Runner) Latency(ctx context.Context, lc LatencyConfig, interval time.Duration, batch, runs int) (sc, p99Ratio, cpuRatio, ownRatio string) {
	// The steady-state targets are stated for batch 1,000 (relay and
	// poller alike), not the drain's 10,000.
	steady := *r
	steady.BatchSize = batch
	r = &steady
	sc = fmt.Sprintf("latency %s ev/s, interval %s, batch %d", lc.Label(), interval, r.BatchSize)
	if lc.StepRate > 0 {
		sc = fmt.Sprintf("latency %s ev/s (turns of %s), interval %s, batch %d", lc.Label(), lc.StepEvery, interval, r.BatchSize)
	}
	for i := range runs {
		load := LoadAvg1()
		r.Logf("%s: run %d/%d (%s each, load average %.1f)", sc, i+1, runs, lc.Duration, load)
		relay, err := r.latencyRun(ctx, "relay", lc, interval, fmt.Sprintf("latency-%s-%d", strings.ReplaceAll(lc.Label(), "/", "-"), i+1))
		if err != nil {
			r.fail(sc, i, err)
			continue
		}
		poll, err := r.latencyRun(ctx, "polling", lc, interval, "")
		if err != nil {
			r.fail(sc, i, err)
			continue
		}
		r.Report.Add(sc, "host load average at start", "1 min", load)
		relay.record(r.Report, sc, "relay")
		poll.record(r.Report, sc, "polling")
	}
	p99Ratio = fmt.Sprintf("latency p99 @%s ev/s/%s relay/polling", lc.Label(), interval)
	for _, v := range ratio(r.Report.Get(sc, "relay p99"), r.Report.Get(sc, "polling p99")) {
		r.Report.Add(RatioScenario, p99Ratio, "×", v)
	}
	cpuRatio = fmt.Sprintf("latency cpu total/M @%s ev/s/%s relay/polling", lc.Label(), interval)
	for _, v := range ratio(r.Report.Get(sc, "relay cpu total"), r.Report.Get(sc, "polling cpu total")) {
		r.Report.Add(RatioScenario, cpuRatio, "×", v)
	}
	// The relay's process alone against the poller's: what waking up for
	// each streamed message costs, apart from the servers.
	ownRatio = fmt.Sprintf("latency cpu own/M @%s ev/s/%s relay/polling", lc.Label(), interval)
	for _, v := range ratio(r.Report.Get(sc, "relay cpu (own)"), r.Report.Get(sc, "polling cpu (own)")) {
		r.Report.Add(RatioScenario, ownRatio, "×", v)
	}
	return sc, p99Ratio, cpuRatio, ownRatio
}

// latencyStat is one steady-state run.
type latencyStat struct {
	res   LatencyResult
	usage Usage
	cpu   ServerCPU
}

func (s latencyStat) record(rep *Report, sc, system string) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	rep.Add(sc, system+" p50", "ms", ms(s.res.Quantile(0.50)))
	rep.Add(sc, system+" p99", "ms", ms(s.res.Quantile(0.99)))
	rep.Add(sc, system+" max", "ms", ms(s.res.Quantile(1)))
	rep.Add(sc, system+" achieved rate", "ev/s", s.res.Achieved)
	rep.Add(sc, system+" missing", "events", float64(s.res.Missing))
	rep.Add(sc, system+" tail after last commit", "ms", ms(s.res.Tail))
	rep.Add(sc, system+" watcher resolution", "ms", ms(s.res.Resolution))
	perM := func(d time.Duration) float64 { return d.Seconds() / float64(max(s.res.Sent, 1)) * 1e6 }
	rep.Add(sc, system+" cpu (own)", "s/M ev", perM(s.usage.CPU))
	rep.Add(sc, system+" cpu postgres", "s/M ev", perM(s.cpu.PG))
	rep.Add(sc, system+" cpu clickhouse", "s/M ev", perM(s.cpu.CH))
	rep.Add(sc, system+" cpu total", "s/M ev", perM(s.usage.CPU+s.cpu.PG+s.cpu.CH))
}

func (r *Runner) latencyRun(ctx context.Context, system string, lc LatencyConfig, interval time.Duration, profile string) (latencyStat, error) {
	var st latencyStat
	e, err := NewEnv(ctx, r.Srv)
	if err != nil {
		return st, err
	}
	defer e.Close()
	p, err := r.startSteady(ctx, e, system, interval, profile)
	if err != nil {
		return st, err
	}
	if r.KeepLatencies {
		lc.Dump = filepath.Join(r.WorkDir, fmt.Sprintf("latency-%s-%s.csv", system, strings.ReplaceAll(lc.Label(), "/", "-")))
	}
	defer p.Kill()
	before := r.Srv.ReadServerCPU()
	if st.res, err = RunLatency(ctx, e, lc); err != nil {
		return st, err
	}
	st.cpu = r.Srv.ReadServerCPU().Sub(before)
	if p.Exited() {
		return st, fmt.Errorf("%s: %w:\n%s", system, errExited, p.Tail(20))
	}
	if st.usage, err = p.Stop(time.Minute); err != nil {
		return st, err
	}
	r.Logf("  %s: p50 %s p99 %s max %s, %.0f ev/s achieved, %d missing", system,
		st.res.Quantile(0.5).Round(time.Millisecond), st.res.Quantile(0.99).Round(time.Millisecond),
		st.res.Quantile(1).Round(time.Millisecond), st.res.Achieved, st.res.Missing)
	return st, nil
}

// startSteady starts the relay (streaming once its slot is active) or the
// poller on an empty Env.
// SteadyBatchSize is CH_OUTBOX_BATCH_SIZE (and the poller's batch) in the
// latency scenarios.
const SteadyBatchSize = 1000

func (r *Runner) startSteady(ctx context.Context, e *Env, system string, interval time.Duration, profile string) (*Proc, error) {
	if system == "polling" {
		return r.startPoller(ctx, e, interval, false, filepath.Join(r.WorkDir, e.Name+"-poll.json"))
	}
	if err := e.CreateSlot(ctx, e.Slot); err != nil {
		return nil, err
	}
	env := r.relayEnv(e, profile, "CH_OUTBOX_PROCESSING_FREQUENCY_SEC="+strconv.FormatFloat(interval.Seconds(), 'f', -1, 64))
	p, err := StartProc(ctx, "relay", filepath.Join(r.WorkDir, e.Name+"-relay.log"), r.RelayBin, env, "run")
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if active, err := e.SlotActive(ctx, e.Slot); err == nil && active {
			return p, nil
		}
		if p.Exited() {
			break
		}
		time.Sleep(50 * time.Millisecond) // waiting for the relay to stream
	}
	p.Kill()
	return nil, fmt.Errorf("relay did not start streaming:\n%s", p.Tail(20))
}

func (r *Runner) fail(sc string, run int, err error) {
	r.Logf("%s: run %d FAILED: %v", sc, run+1, err)
	r.Report.Notes = append(r.Report.Notes, fmt.Sprintf("%s run %d failed: %v", sc, run+1, err))
}
