// Command relaybench benchmarks the relay against its baselines on the
// servers of scripts/services.sh (see scripts/bench.sh and
// docs/benchmarks.md). It prints one table and writes a JSON report.
//
//	relaybench [flags]            run the scenarios
//	relaybench decode [flags]     the bare decode baseline (a child process)
//	relaybench poll [flags]       the polling baseline (a child process)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/bench"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "decode":
			return runDecode(ctx, args[1:])
		case "poll":
			return runPoll(ctx, args[1:])
		}
	}
	return runBench(ctx, args)
}

func runDecode(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	url := fs.String("database-url", "", "PostgreSQL URL of the database")
	slot := fs.String("slot", "", "replication slot")
	pub := fs.String("publication", "", "publication")
	events := fs.Int("events", 0, "stop after this many inserts")
	result := fs.String("result", "", "write the result as JSON here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	res, err := bench.BareDecode(ctx, *url, *slot, *pub, *events)
	if err != nil {
		return err
	}
	return writeResult(*result, res)
}

func runPoll(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("poll", flag.ContinueOnError)
	var cfg bench.PollConfig
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "PostgreSQL URL of the database")
	fs.StringVar(&cfg.ClickHouseURL, "clickhouse-url", "", "ClickHouse URL of the database")
	fs.IntVar(&cfg.Batch, "batch", 10000, "events per poll")
	fs.DurationVar(&cfg.Interval, "interval", time.Second, "sleep after a partial batch")
	fs.BoolVar(&cfg.UntilEmpty, "until-empty", false, "stop after the first partial batch")
	result := fs.String("result", "", "write the result as JSON here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	res, err := bench.Poll(ctx, cfg)
	if err != nil {
		return err
	}
	return writeResult(*result, res)
}

func writeResult(path string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if path == "" {
		_, err = fmt.Println(string(raw))
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}

// options are the driver's flags.
type options struct {
	quick         bool
	runs, latRuns int
	heavyRuns     int
	relayBin, out string
	workDir       string
	scenarios     string
	events        int
	events64K     int
	events5M      int
	eventsStreams int
	bigTx         int
	latDuration   time.Duration
	batchSize     int
	batchBytes    int64
	loadConns     int
	profileDir    string
	relayEnv      string
	rates         string
	dumpLatency   bool
	syncCommit    bool
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	quickEnv := os.Getenv("BENCH_QUICK")
	fs := flag.NewFlagSet("relaybench", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", quickEnv != "" && quickEnv != "0", "short mode (default from BENCH_QUICK)")
	fs.IntVar(&o.runs, "runs", 0, "runs of the 512 B drain and of the modes, columns and streams scenarios (default 3; quick 2)")
	fs.IntVar(&o.heavyRuns, "heavy-runs", 0, "runs of the 64 KiB drain and the resources scenarios (default 3; quick 1)")
	fs.IntVar(&o.latRuns, "latency-runs", 0, "runs per latency scenario (default 3; quick 1)")
	fs.StringVar(&o.relayBin, "relay", "bin/relay", "relay binary")
	fs.StringVar(&o.out, "out", "bench/results.json", "JSON report path")
	fs.StringVar(&o.workDir, "workdir", "", "directory for child logs (default: a temp dir, removed on success)")
	fs.StringVar(&o.scenarios, "scenarios", "drain,drain64k,latency,resources,modes,columns,streams,topologies", "comma-separated scenarios to run (modes: table vs message publishing; columns: drain with 5 extra outbox_event columns vs without; streams: one relay carrying three outbox streams, one routed into five tables, vs the one default stream, same events; topologies: single server vs the replicated cluster, needs scripts/services.sh cluster-up)")
	fs.IntVar(&o.events, "events", 0, "512 B events in the drain (default 1000000; quick 100000)")
	fs.IntVar(&o.events64K, "events-64k", 0, "64 KiB events in the drain (default 10000; quick 2000)")
	fs.IntVar(&o.eventsStreams, "events-streams", 0, "1 KiB events in each drain of the streams scenario (default 200000; quick 30000)")
	fs.IntVar(&o.events5M, "events-5m", 0, "5 MiB events in the resources scenario (default 50; quick 20)")
	fs.IntVar(&o.bigTx, "big-tx", 100000, "512 B events of the one-transaction resources scenario")
	fs.DurationVar(&o.latDuration, "latency-duration", 0, "producer time per latency run (default 30s; quick 10s)")
	fs.IntVar(&o.batchSize, "batch-size", 10000, "CH_OUTBOX_BATCH_SIZE (and the baselines' batch)")
	fs.Int64Var(&o.batchBytes, "batch-bytes", 16<<20, "RELAY_BATCH_BYTES (and the raw insert's byte cut)")
	fs.IntVar(&o.loadConns, "load-conns", 2, "connections loading the backlog")
	fs.StringVar(&o.profileDir, "cpuprofile-dir", "", "pass BENCH_CPUPROFILE=<dir>/<run>.pprof to the relay (use -relay bin/relayprof)")
	fs.StringVar(&o.rates, "rates", "2000:1s,500:1s,10000:100ms", "latency scenarios as rate[/rate]:interval[:batch] (batch 1000 when left out; two rates alternate every 1.7s; the first is compared with polling against the p99 ratio target, a 10000 ev/s one at 100ms against 250 ms)")
	fs.BoolVar(&o.syncCommit, "sync-commit", true, "latency producer commits with synchronous_commit = on (PostgreSQL's default; the test servers' default is off)")
	fs.BoolVar(&o.dumpLatency, "dump-latencies", false, "write each event's commit and seen time to the workdir (latency-<system>-<rate>.csv)")
	fs.StringVar(&o.relayEnv, "relay-env", "", "extra KEY=VALUE settings for the relay, comma-separated (e.g. GOMEMLIMIT=96MiB)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.defaults()
	return o, nil
}

func (o *options) defaults() {
	pick := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	pick(&o.runs, 3, 2)
	pick(&o.heavyRuns, 3, 1)
	pick(&o.latRuns, 3, 1)
	pick(&o.events5M, 50, 20)
	pick(&o.events, 1_000_000, 100_000)
	pick(&o.events64K, 10_000, 2_000)
	pick(&o.eventsStreams, 200_000, 30_000)
	if o.latDuration == 0 {
		o.latDuration = 30 * time.Second
		if o.quick {
			o.latDuration = 10 * time.Second
		}
	}
}

func (o *options) want(s string) bool {
	for _, x := range splitList(o.scenarios) {
		if x == s {
			return true
		}
	}
	return false
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func runBench(ctx context.Context, args []string) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	srv, err := servers()
	if err != nil {
		return err
	}
	r, cleanup, err := newRunner(o, srv)
	if err != nil {
		return err
	}
	rep := r.Report
	rep.Machine = bench.ReadMachine()
	rep.Machine.PostgreSQL, rep.Machine.ClickHouse = serverVersions(ctx, srv)
	start := time.Now()
	scenarios(ctx, o, r)
	rep.Seconds = time.Since(start).Seconds()
	printReport(rep, o)
	if err := rep.WriteJSON(o.out); err != nil {
		return err
	}
	fmt.Printf("\nJSON report: %s\n", o.out)
	if len(rep.Notes) > 0 {
		return fmt.Errorf("%d run(s) failed; logs kept in %s", len(rep.Notes), r.WorkDir)
	}
	cleanup()
	return ctx.Err()
}

func scenarios(ctx context.Context, o *options, r *bench.Runner) {
	small := bench.Dataset{Name: "512B", Events: o.events, Size: 512, PerTx: 100}
	if o.want("drain") && ctx.Err() == nil {
		r.Drain(ctx, small, o.runs, true)
	}
	if o.want("drain64k") && ctx.Err() == nil {
		r.Drain(ctx, bench.Dataset{Name: "64KiB", Events: o.events64K, Size: 64 << 10, PerTx: 100}, o.heavyRuns, false)
	}
	if o.want("latency") && ctx.Err() == nil {
		latency(ctx, o, r)
	}
	if o.want("modes") && ctx.Err() == nil {
		modes(ctx, o, r)
	}
	if o.want("columns") && ctx.Err() == nil {
		r.Columns(ctx, bench.Dataset{Name: "512B", Events: o.events, Size: 512, PerTx: 100}, o.runs)
	}
	if o.want("streams") && ctx.Err() == nil {
		r.Streams(ctx, bench.Dataset{Name: "1KiB", Events: o.eventsStreams, Size: 1 << 10, PerTx: 100}, o.runs)
	}
	if o.want("topologies") && ctx.Err() == nil {
		lc := bench.LatencyConfig{Rate: 2000, Duration: o.latDuration, Conns: 5, Size: 512, Poll: 50 * time.Millisecond,
			Settle: 30 * time.Second, SyncCommit: o.syncCommit}
		r.Topologies(ctx, bench.Dataset{Name: "512B", Events: o.events, Size: 512, PerTx: 100}, lc, time.Second, o.latRuns)
	}
	if o.want("resources") && ctx.Err() == nil {
		r.Resources(ctx, bench.Dataset{Name: "5MiB", Events: o.events5M, Size: 5 << 20, PerTx: 1}, o.heavyRuns)
		r.Resources(ctx, bench.Dataset{Name: "bigtx", Events: o.bigTx, Size: 512, PerTx: o.bigTx}, o.heavyRuns)
	}
}

// modes compares table and message publishing (512 B events): the
// producer and drain of the 512 B dataset, and latency at 2,000 ev/s.
func modes(ctx context.Context, o *options, r *bench.Runner) {
	r.Modes(ctx, bench.Dataset{Name: "512B", Events: o.events, Size: 512, PerTx: 10}, 4, o.runs)
	if ctx.Err() != nil {
		return
	}
	lc := bench.LatencyConfig{Rate: 2000, Duration: o.latDuration, Conns: 5, Size: 512, Poll: 50 * time.Millisecond,
		Settle: 30 * time.Second, SyncCommit: o.syncCommit}
	r.ModesLatency(ctx, lc, time.Second, o.latRuns)
}

func latency(ctx context.Context, o *options, r *bench.Runner) {
	for i, spec := range splitList(o.rates) {
		rate, step, interval, batch, err := parseRate(spec)
		if err != nil {
			r.Logf("-rates %q: %v", spec, err)
			continue
		}
		lc := bench.LatencyConfig{Rate: rate, Duration: o.latDuration, Conns: min(max(max(rate, step)/400, 4), 32),
			Size: 512, Poll: 50 * time.Millisecond, Settle: 30 * time.Second, SyncCommit: o.syncCommit}
		if step > 0 {
			lc.StepRate, lc.StepEvery = step, stepEvery
		}
		sc, ratio, cpuRatio, ownRatio := r.Latency(ctx, lc, interval, batch, o.latRuns)
		if i == 0 {
			r.Report.Goal(bench.RatioScenario, ratio, "<=", 0.5)
		}
		if rate == 2000 && step == 0 {
			r.Report.Goal(bench.RatioScenario, cpuRatio, "<=", 1)
			r.Report.Goal(bench.RatioScenario, ownRatio, "<=", 2)
		}
		if rate == 10000 && step == 0 && interval == 100*time.Millisecond {
			r.Report.Goal(sc, "relay p99", "<=", 250)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// stepEvery is how long each rate of an alternating spec ("500/2000:1s")
// lasts: not a multiple of the flush interval, so the changes fall at
// every point of a batch's life.
const stepEvery = 1700 * time.Millisecond

// parseRate reads "2000:1s", "10000:100ms:10000" or "500/2000:1s" (events
// per second, or two that alternate every stepEvery; flush/poll interval;
// batch size, bench.SteadyBatchSize when left out).
func parseRate(spec string) (rate, step int, interval time.Duration, batch int, err error) {
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, 0, 0, 0, errors.New("want rate[/rate]:interval[:batch]")
	}
	rates := strings.Split(parts[0], "/")
	if len(rates) > 2 {
		return 0, 0, 0, 0, fmt.Errorf("bad rate %q: at most two, as 500/2000", parts[0])
	}
	rate, err = strconv.Atoi(rates[0])
	if err != nil || rate <= 0 {
		return 0, 0, 0, 0, fmt.Errorf("bad rate %q", rates[0])
	}
	if len(rates) == 2 {
		if step, err = strconv.Atoi(rates[1]); err != nil || step <= 0 {
			return 0, 0, 0, 0, fmt.Errorf("bad rate %q", rates[1])
		}
	}
	if interval, err = time.ParseDuration(parts[1]); err != nil {
		return 0, 0, 0, 0, err
	}
	batch = bench.SteadyBatchSize
	if len(parts) == 3 {
		if batch, err = strconv.Atoi(parts[2]); err != nil || batch <= 0 {
			return 0, 0, 0, 0, fmt.Errorf("bad batch size %q", parts[2])
		}
	}
	return rate, step, interval, batch, nil
}

// servers reads the environment that `scripts/services.sh up` prints.
func servers() (*bench.Servers, error) {
	srv := &bench.Servers{DatabaseURL: os.Getenv("DATABASE_URL"), ClickHouseURL: os.Getenv("CLICKHOUSE_URL")}
	dir := os.Getenv("RELAY_SERVICES_DIR")
	if srv.DatabaseURL == "" || srv.ClickHouseURL == "" || dir == "" {
		return nil, errors.New("DATABASE_URL, CLICKHOUSE_URL and RELAY_SERVICES_DIR must be set: eval \"$(scripts/services.sh up)\" (scripts/bench.sh does)")
	}
	srv.PGDataDir, srv.CHPidFile = dir+"/pg/data", dir+"/clickhouse.pid"
	if name, urls := os.Getenv("CLICKHOUSE_CLUSTER_NAME"), os.Getenv("CLICKHOUSE_CLUSTER_URLS"); name != "" && urls != "" {
		srv.Cluster = &bench.Cluster{Name: name, URLs: strings.Split(urls, ",")}
	}
	return srv, nil
}

func newRunner(o *options, srv *bench.Servers) (*bench.Runner, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() {}
	if o.workDir == "" {
		if o.workDir, err = os.MkdirTemp("", "relaybench."); err != nil {
			return nil, nil, err
		}
		dir := o.workDir
		cleanup = func() { _ = os.RemoveAll(dir) }
	} else if err := os.MkdirAll(o.workDir, 0o755); err != nil {
		// A missing -workdir failed every run with "no such file".
		return nil, nil, fmt.Errorf("-workdir: %w", err)
	}
	mode := "full"
	if o.quick {
		mode = "quick"
	}
	rep := &bench.Report{Mode: mode, Started: time.Now().UTC(), Command: strings.Join(os.Args, " "),
		Settings: map[string]string{
			"CH_OUTBOX_BATCH_SIZE": fmt.Sprint(o.batchSize), "RELAY_BATCH_BYTES": fmt.Sprint(o.batchBytes),
			"relay_env": o.relayEnv, "runs": fmt.Sprint(o.runs), "heavy_runs": fmt.Sprint(o.heavyRuns), "latency_runs": fmt.Sprint(o.latRuns), "latency_duration": o.latDuration.String(), "producer_synchronous_commit": fmt.Sprint(o.syncCommit),
		}}
	r := &bench.Runner{Srv: srv, RelayBin: o.relayBin, SelfBin: self, WorkDir: o.workDir,
		BatchSize: o.batchSize, BatchBytes: o.batchBytes, LoadConns: o.loadConns, ProfileDir: o.profileDir,
		Report: rep, Path: os.Getenv("PATH"), RelayExtraEnv: splitList(o.relayEnv), KeepLatencies: o.dumpLatency,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
		}}
	return r, cleanup, nil
}

func serverVersions(ctx context.Context, srv *bench.Servers) (pg, ch string) {
	if conn, err := pgx.Connect(ctx, srv.DatabaseURL); err == nil {
		_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&pg)
		_ = conn.Close(ctx)
	}
	if conn, err := chsink.Connect(ctx, srv.ClickHouseURL); err == nil {
		if v, err := conn.ServerVersion(); err == nil {
			ch = fmt.Sprintf("%d.%d.%d", v.Version.Major, v.Version.Minor, v.Version.Patch)
		}
		_ = conn.Close()
	}
	return pg, ch
}

func printReport(rep *bench.Report, o *options) {
	m := rep.Machine
	fmt.Printf("relaybench (%s mode): %d CPUs (%s), %d MiB RAM, %s, PostgreSQL %s, ClickHouse %s\n",
		rep.Mode, m.CPUs, m.Model, m.MemoryMiB, m.GoVersion, m.PostgreSQL, m.ClickHouse)
	fmt.Printf("batch %d events / %d bytes; median, min and max over runs; CPU in seconds per million events\n\n",
		o.batchSize, o.batchBytes)
	rep.Print(os.Stdout)
	for _, n := range rep.Notes {
		fmt.Println("NOTE:", n)
	}
}
