package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/event"
)

// Runner runs scenario runs and records what they measured in Report.
type Runner struct {
	Srv        *Servers
	RelayBin   string // bin/relay (or bench/cmd/relayprof for profiles)
	SelfBin    string // relaybench: its decode and poll subcommands
	WorkDir    string // child logs and results
	BatchSize  int    // CH_OUTBOX_BATCH_SIZE
	BatchBytes int64  // RELAY_BATCH_BYTES
	LoadConns  int
	// ProfileDir, when set, asks the relay binary for a CPU profile per
	// run (BENCH_CPUPROFILE; only bench/cmd/relayprof honours it).
	ProfileDir string
	// KeepLatencies writes every event's commit and seen time to WorkDir.
	KeepLatencies bool
	// RelayExtraEnv is appended to the relay's environment (KEY=VALUE).
	RelayExtraEnv []string
	Logf          func(format string, args ...any)
	Report        *Report
	Path          string // PATH for children
}

// DrainStat is one timed drain (or decode, or insert) of a dataset.
type DrainStat struct {
	Events  int
	Bytes   int64
	Elapsed time.Duration
	Proc    Usage     // the process under test; zero when in-process
	Server  ServerCPU // PostgreSQL and ClickHouse CPU in the window
}

// EventsPerSec is the throughput in events.
func (s DrainStat) EventsPerSec() float64 { return float64(s.Events) / s.Elapsed.Seconds() }

// MBPerSec is the throughput in event_context megabytes (10^6 bytes).
func (s DrainStat) MBPerSec() float64 { return float64(s.Bytes) / 1e6 / s.Elapsed.Seconds() }

// perMillion scales a CPU time to seconds per million events.
func (s DrainStat) perMillion(d time.Duration) float64 {
	return d.Seconds() / float64(s.Events) * 1e6
}

// TotalCPUPerM is process + PostgreSQL + ClickHouse CPU seconds per
// million events.
func (s DrainStat) TotalCPUPerM() float64 {
	return s.perMillion(s.Proc.CPU + s.Server.PG + s.Server.CH)
}

// record adds the stat's metrics under scenario, prefixed by system.
func (r *Runner) record(scenario, system string, s DrainStat, proc bool) {
	rep := r.Report
	rep.Add(scenario, system+" throughput", "ev/s", s.EventsPerSec())
	rep.Add(scenario, system+" throughput MB", "MB/s", s.MBPerSec())
	if proc {
		rep.Add(scenario, system+" cpu (own)", "s/M ev", s.perMillion(s.Proc.CPU))
	}
	rep.Add(scenario, system+" cpu postgres", "s/M ev", s.perMillion(s.Server.PG))
	rep.Add(scenario, system+" cpu clickhouse", "s/M ev", s.perMillion(s.Server.CH))
	if proc {
		rep.Add(scenario, system+" cpu total", "s/M ev", s.TotalCPUPerM())
		rep.Add(scenario, system+" peak RSS", "MiB", float64(s.Proc.PeakRSS)/(1<<20))
	}
}

// RSSBound is 2×RELAY_BATCH_BYTES + 64 MiB, the relay's memory goal.
func (r *Runner) RSSBound() int64 { return 2*r.BatchBytes + 64<<20 }

// prepare creates a run's databases, the slots e.Slot+suffix for each
// suffix (before loading, so that the stream has to decode every row) and
// loads the dataset.
func (r *Runner) prepare(ctx context.Context, d Dataset, slotSuffixes ...string) (*Env, error) {
	e, err := NewEnv(ctx, r.Srv)
	if err != nil {
		return nil, err
	}
	if d.ExtraColumns {
		if err := addExtraColumns(ctx, e.PG); err != nil {
			e.Close()
			return nil, err
		}
	}
	for _, s := range slotSuffixes {
		if err := e.CreateSlot(ctx, e.Slot+s); err != nil {
			e.Close()
			return nil, err
		}
	}
	start := time.Now()
	if err := Load(ctx, e.PG, d, r.LoadConns); err != nil {
		e.Close()
		return nil, err
	}
	// Same starting point for every system: hint bits set, visibility map
	// built, no checkpoint pending.
	for _, q := range []string{"VACUUM (ANALYZE) " + pgx.Identifier{config.DefaultOutboxTable}.Sanitize(), "CHECKPOINT"} {
		if _, err := e.PG.Exec(ctx, q); err != nil {
			e.Close()
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	r.Logf("  loaded %d events of %d B in %s", d.Events, d.Size, time.Since(start).Round(time.Millisecond))
	return e, nil
}

// relayEnv is the relay's environment for a run.
func (r *Runner) relayEnv(e *Env, profile string, extra ...string) []string {
	env := e.RelayEnv(r.Path, append([]string{
		"CH_OUTBOX_BATCH_SIZE=" + strconv.Itoa(r.BatchSize),
		"RELAY_BATCH_BYTES=" + strconv.FormatInt(r.BatchBytes, 10),
	}, append(extra, r.RelayExtraEnv...)...)...)
	if r.ProfileDir != "" {
		env = append(env, "BENCH_CPUPROFILE="+filepath.Join(r.ProfileDir, profile+".pprof"))
	}
	return env
}

// drainTarget is what a relay drain waits for and then checks: by default
// event_log and outbox_event (Env.defaultTarget); the streams scenario
// has several outbox and ClickHouse tables.
type drainTarget struct {
	// rows is how many rows ClickHouse holds (metadata only: polled).
	rows func(context.Context) (uint64, error)
	// empty reports whether every outbox table is empty.
	empty func(context.Context) (bool, error)
	// verify checks what ClickHouse holds once drained.
	verify func(context.Context) error
}

func (r *Runner) defaultTarget(e *Env, d Dataset) drainTarget {
	return drainTarget{rows: e.ClickHouseRows, empty: e.OutboxEmpty,
		verify: func(ctx context.Context) error { return r.verify(ctx, e, d.Events) }}
}

// RelayDrain starts bin/relay on a loaded Env and times it until ClickHouse
// holds every event and the outbox table is empty.
func (r *Runner) RelayDrain(ctx context.Context, e *Env, d Dataset, profile string) (DrainStat, error) {
	return r.relayDrain(ctx, e, d, profile, r.defaultTarget(e, d))
}

// relayDrain is RelayDrain until t is reached, with extra relay settings.
func (r *Runner) relayDrain(ctx context.Context, e *Env, d Dataset, profile string, t drainTarget, extra ...string) (DrainStat, error) {
	st := DrainStat{Events: d.Events, Bytes: d.Bytes()}
	before := r.Srv.ReadServerCPU()
	p, err := StartProc(ctx, "relay", filepath.Join(r.WorkDir, e.Name+"-relay.log"), r.RelayBin, r.relayEnv(e, profile, extra...), "run")
	if err != nil {
		return st, err
	}
	defer p.Kill()
	done, err := r.waitDrained(ctx, p, d, t)
	if err != nil {
		return st, err
	}
	st.Elapsed = done.Sub(p.Started)
	st.Server = r.Srv.ReadServerCPU().Sub(before)
	if st.Proc, err = p.Stop(time.Minute); err != nil {
		return st, err
	}
	return st, t.verify(ctx)
}

// waitDrained polls (every 50 ms) until ClickHouse holds d.Events rows and
// the outbox is empty, and returns when it saw that.
func (r *Runner) waitDrained(ctx context.Context, p *Proc, d Dataset, t drainTarget) (time.Time, error) {
	deadline := time.Now().Add(2*time.Minute + time.Duration(d.Events)*time.Millisecond + time.Duration(d.Bytes()/1e6)*time.Second)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return time.Time{}, fmt.Errorf("relay: %w:\n%s", errExited, p.Tail(20))
		}
		p.SampleRSS()
		n, err := t.rows(ctx)
		if err != nil {
			return time.Time{}, err
		}
		if n >= uint64(d.Events) {
			empty, err := t.empty(ctx)
			if err != nil {
				return time.Time{}, err
			}
			if empty {
				return time.Now(), nil
			}
		}
		time.Sleep(50 * time.Millisecond) // polling the drain condition
	}
	return time.Time{}, fmt.Errorf("relay did not drain %d events in time; log: %s", d.Events, p.LogPath)
}

// verify checks that ClickHouse holds exactly want distinct events.
func (r *Runner) verify(ctx context.Context, e *Env, want int) error {
	n, err := e.ClickHouseDistinct(ctx)
	if err != nil {
		return err
	}
	if n != uint64(want) {
		return fmt.Errorf("clickhouse holds %d distinct events, want %d", n, want)
	}
	return nil
}

// BareDecodeRun runs the decode subcommand on slot until it saw d.Events.
func (r *Runner) BareDecodeRun(ctx context.Context, e *Env, d Dataset, slot string) (DrainStat, error) {
	st := DrainStat{Events: d.Events, Bytes: d.Bytes()}
	result := filepath.Join(r.WorkDir, e.Name+"-decode.json")
	before := r.Srv.ReadServerCPU()
	p, err := StartProc(ctx, "bare-decode", filepath.Join(r.WorkDir, e.Name+"-decode.log"), r.SelfBin, []string{"PATH=" + r.Path},
		"decode", "-database-url", e.DatabaseURL, "-slot", slot, "-publication", e.Publication,
		"-events", strconv.Itoa(d.Events), "-result", result)
	if err != nil {
		return st, err
	}
	if st.Proc, err = p.Wait(10 * time.Minute); err != nil {
		return st, err
	}
	st.Elapsed = time.Since(p.Started)
	st.Server = r.Srv.ReadServerCPU().Sub(before)
	var res DecodeResult
	if err := readJSON(result, &res); err != nil {
		return st, err
	}
	st.Proc.PeakRSS = max(st.Proc.PeakRSS, res.PeakRSS)
	if res.Inserts != d.Events {
		return st, fmt.Errorf("bare decode saw %d inserts, want %d", res.Inserts, d.Events)
	}
	return st, nil
}

// PollDrain loads d into a fresh Env and times the polling baseline until
// it found the table empty.
func (r *Runner) PollDrain(ctx context.Context, d Dataset) (DrainStat, error) {
	st := DrainStat{Events: d.Events, Bytes: d.Bytes()}
	e, err := r.prepare(ctx, d)
	if err != nil {
		return st, err
	}
	defer e.Close()
	result := filepath.Join(r.WorkDir, e.Name+"-poll.json")
	before := r.Srv.ReadServerCPU()
	p, err := r.startPoller(ctx, e, time.Second, true, result)
	if err != nil {
		return st, err
	}
	if st.Proc, err = p.Wait(30 * time.Minute); err != nil {
		return st, err
	}
	st.Elapsed = time.Since(p.Started)
	st.Server = r.Srv.ReadServerCPU().Sub(before)
	var res PollResult
	if err := readJSON(result, &res); err != nil {
		return st, err
	}
	st.Proc.PeakRSS = max(st.Proc.PeakRSS, res.PeakRSS)
	empty, err := e.OutboxEmpty(ctx)
	if err != nil {
		return st, err
	}
	if !empty {
		return st, errors.New("poller stopped before the outbox was empty")
	}
	return st, r.verify(ctx, e, d.Events)
}

func (r *Runner) startPoller(ctx context.Context, e *Env, interval time.Duration, untilEmpty bool, result string) (*Proc, error) {
	return StartProc(ctx, "polling", filepath.Join(r.WorkDir, e.Name+"-poll.log"), r.SelfBin, []string{"PATH=" + r.Path},
		"poll", "-database-url", e.DatabaseURL, "-clickhouse-url", e.ClickHouseURL,
		"-batch", strconv.Itoa(r.BatchSize), "-interval", interval.String(),
		"-until-empty="+strconv.FormatBool(untilEmpty), "-result", result)
}

// RawInsert times the ClickHouse insert of the dataset's rows in batches
// cut like the relay's (BatchSize events or BatchBytes bytes), excluding
// the time spent generating the rows.
func (r *Runner) RawInsert(ctx context.Context, d Dataset) (DrainStat, error) {
	st := DrainStat{Events: d.Events, Bytes: d.Bytes()}
	e, err := NewEnv(ctx, r.Srv)
	if err != nil {
		return st, err
	}
	defer e.Close()
	w := newCHWriter(e.CH, e.DateTime64)
	var rows []Row
	var spent time.Duration
	before := r.Srv.ReadServerCPU()
	for i := 0; i < d.Events; {
		rows = r.rawBatch(d, i, rows[:0])
		i += len(rows)
		start := time.Now()
		if err := w.Write(ctx, rows); err != nil {
			return st, err
		}
		spent += time.Since(start)
	}
	st.Elapsed = spent
	st.Server = r.Srv.ReadServerCPU().Sub(before)
	return st, r.verify(ctx, e, d.Events)
}

// rawBatch generates events from first on until the relay's batch policy
// (count or bytes, as event.Event.Size counts them) would flush.
func (r *Runner) rawBatch(d Dataset, first int, rows []Row) []Row {
	bytes := int64(0)
	now := time.Now().UTC()
	for i := first; i < d.Events && len(rows) < r.BatchSize && bytes < r.BatchBytes; i++ {
		row := d.Row(i, nil)
		row.OccurredAt = now
		rows = append(rows, row)
		ev := event.Event{Type: row.Type, Environment: row.Environment, Context: row.Context}
		bytes += int64(ev.Size())
	}
	return rows
}

func readJSON(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// ratio divides paired per-run values (NaN where either is missing).
func ratio(a, b []float64) []float64 {
	out := make([]float64, max(len(a), len(b)))
	for i := range out {
		out[i] = math.NaN()
		if i < len(a) && i < len(b) && b[i] != 0 {
			out[i] = a[i] / b[i]
		}
	}
	return out
}
