package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Variants of the streams scenario.
const (
	streamsOne   = "one stream"
	streamsThree = "three streams"
)

func streamsName(three bool) string {
	if three {
		return streamsThree
	}
	return streamsOne
}

// Streams compares the relay's drain of d through one stream (outbox_event
// into event_log, the default settings) with the same events dealt over
// three streams of one relay (a RELAY_CONFIG file; see streamsConfig):
// a Django-named outbox with a bigint key into event_log, a text-keyed
// outbox under a column map into billing_event_log, and outbox_event routed
// by event_type into five tables. Each loading transaction touches all
// three outbox tables. Both variants run in each run, the order
// alternating between runs (one, three; three, one; …) so that neither
// always runs on the warmer servers; the ratios pair the two of a run.
func (r *Runner) Streams(ctx context.Context, d Dataset, runs int) string {
	sc := d.scenario("streams")
	for i := range runs {
		load := LoadAvg1()
		r.Logf("%s: run %d/%d (load average %.1f)", sc, i+1, runs, load)
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false}
		}
		stats := map[bool]DrainStat{}
		for _, three := range order {
			profile := fmt.Sprintf("streams-%s-%d", strings.Fields(streamsName(three))[0], i+1) // streams-one-1
			st, err := r.streamsRun(ctx, d, three, profile)
			if err != nil {
				r.fail(sc, i, fmt.Errorf("%s: %w", streamsName(three), err))
				break
			}
			r.Logf("  %s: relay drained %.0f ev/s, %.1f µs CPU/event", streamsName(three), st.EventsPerSec(), st.perMillion(st.Proc.CPU))
			stats[three] = st
		}
		if len(stats) != 2 {
			continue
		}
		r.Report.Add(sc, "host load average at start", "1 min", load)
		for _, three := range []bool{false, true} {
			r.record(sc, streamsName(three), stats[three], true)
		}
	}
	r.streamsRatios(sc)
	return sc
}

// streamsRatios pairs the runs' three- and one-stream drains. The goals
// are the issue's: routing costs at most 10 % of throughput and of the
// relay's own CPU per event (s per M events = µs per event).
func (r *Runner) streamsRatios(sc string) {
	rep := r.Report
	for _, m := range []struct {
		metric, name, op string
		goal             float64
	}{
		{"throughput", "streams three/one drain ev/s", ">=", 0.9},
		{"cpu (own)", "streams three/one relay cpu/event", "<=", 1.1},
		{"cpu total", "streams three/one cpu total/event", "", 0},
	} {
		for _, v := range ratio(rep.Get(sc, streamsThree+" "+m.metric), rep.Get(sc, streamsOne+" "+m.metric)) {
			rep.Add(RatioScenario, m.name, "×", v)
		}
		if m.op != "" {
			rep.Goal(RatioScenario, m.name, m.op, m.goal)
		}
	}
}

// streamsRun prepares a fresh Env for one variant, loads d behind the
// relay's slot and times the relay's drain of it.
func (r *Runner) streamsRun(ctx context.Context, d Dataset, three bool, profile string) (DrainStat, error) {
	e, err := NewEnv(ctx, r.Srv)
	if err != nil {
		return DrainStat{}, err
	}
	defer e.Close()
	var extra []string
	if three {
		path, err := r.setUpStreams(ctx, e)
		if err != nil {
			return DrainStat{}, err
		}
		extra = append(extra, "RELAY_CONFIG="+path)
	}
	if err := e.CreateSlot(ctx, e.Slot); err != nil {
		return DrainStat{}, err
	}
	start := time.Now()
	if err := loadStreams(ctx, e.PG, d, three, r.LoadConns); err != nil {
		return DrainStat{}, err
	}
	if err := vacuumOutboxes(ctx, e, three); err != nil {
		return DrainStat{}, err
	}
	r.Logf("  %s: loaded %d events of %d B in %s", streamsName(three), d.Events, d.Size, time.Since(start).Round(time.Millisecond))
	return r.relayDrain(ctx, e, d, profile, r.streamsTarget(e, d, three), extra...)
}

// setUpStreams creates the two extra outbox tables, writes the relay's
// config file, and runs `relay migrate` with it, which must publish every
// outbox table (before the slot and the load, or the rows would not be
// decoded). The streams' ClickHouse tables not made by migrate are made
// here like event_log; the routed ones are the relay's to create.
func (r *Runner) setUpStreams(ctx context.Context, e *Env) (string, error) {
	for _, q := range streamsDDL {
		if _, err := e.PG.Exec(ctx, q); err != nil {
			return "", fmt.Errorf("create outbox tables: %w", err)
		}
	}
	raw, err := streamsConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(r.WorkDir, e.Name+"-streams.yaml")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return "", err
	}
	p, err := StartProc(ctx, "relay migrate", filepath.Join(r.WorkDir, e.Name+"-migrate.log"), r.RelayBin,
		e.RelayEnv(r.Path, "RELAY_CONFIG="+path), "migrate")
	if err != nil {
		return "", err
	}
	if _, err := p.Wait(2 * time.Minute); err != nil {
		return "", fmt.Errorf("relay migrate with RELAY_CONFIG: %w", err)
	}
	if err := checkPublished(ctx, e); err != nil {
		return "", err
	}
	return path, r.ensureStreamTables(ctx, e)
}

// checkPublished says which outbox table `relay migrate` left out of the
// publication: a relay that cannot publish several tables cannot run the
// three-stream variant.
func checkPublished(ctx context.Context, e *Env) error {
	rows, err := e.PG.Query(ctx, "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1", e.Publication)
	if err != nil {
		return fmt.Errorf("read publication: %w", err)
	}
	published, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read publication: %w", err)
	}
	for _, o := range streamOutboxes {
		if !slices.Contains(published, o.qualified) {
			return fmt.Errorf("relay migrate with RELAY_CONFIG did not publish %s (publication %s holds %v): this relay binary cannot migrate several streams (issue 22)",
				o.qualified, e.Publication, published)
		}
	}
	return nil
}

// ensureStreamTables creates each non-routed stream's ClickHouse table
// that migrate did not, with event_log's engine, columns and settings.
func (r *Runner) ensureStreamTables(ctx context.Context, e *Env) error {
	for _, t := range streamPlainTables {
		var n uint64
		if err := e.CH.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", e.Name, t).Scan(&n); err != nil {
			return fmt.Errorf("look for clickhouse table %s: %w", t, err)
		}
		if n > 0 {
			continue
		}
		if err := e.CH.Exec(ctx, "CREATE TABLE "+t+" AS event_log"); err != nil {
			return fmt.Errorf("create clickhouse table %s: %w", t, err)
		}
		r.Logf("  %s: relay migrate left out clickhouse table %s; created like event_log", streamsThree, t)
	}
	return nil
}

// vacuumOutboxes gives every system the same start: hint bits set,
// visibility map built, no checkpoint pending.
func vacuumOutboxes(ctx context.Context, e *Env, three bool) error {
	n := 1
	if three {
		n = len(streamOutboxes)
	}
	for _, o := range streamOutboxes[:n] {
		if _, err := e.PG.Exec(ctx, "VACUUM (ANALYZE) "+o.ident.Sanitize()); err != nil {
			return fmt.Errorf("vacuum %s: %w", o.qualified, err)
		}
	}
	return e.checkpoint(ctx)
}
