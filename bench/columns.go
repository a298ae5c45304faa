package bench

import (
	"context"
	"fmt"
	"strings"

	"github.com/outbox-relay/relay/internal/config"
)

// Variants of the columns scenario.
const (
	columnsWithout = "without extra columns"
	columnsWith    = "with 5 extra columns"
)

// Columns compares the relay's drain of d with and without ExtraColumns on
// outbox_event (typed, every row filled; the relay adds them to event_log
// in its default add mode), both in each run. The order alternates between
// runs so that neither variant always runs on the warmer servers.
func (r *Runner) Columns(ctx context.Context, d Dataset, runs int) string {
	sc := d.scenario("columns")
	for i := range runs {
		load := LoadAvg1()
		r.Logf("%s: run %d/%d (load average %.1f)", sc, i+1, runs, load)
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false}
		}
		stats := map[bool]DrainStat{}
		for _, extra := range order {
			dd := d
			dd.ExtraColumns = extra
			st, err := r.columnsRun(ctx, dd, fmt.Sprintf("columns-%t-%d", extra, i+1))
			if err != nil {
				r.fail(sc, i, fmt.Errorf("%s: %w", columnsName(extra), err))
				break
			}
			r.Logf("  %s: relay drained %.0f ev/s", columnsName(extra), st.EventsPerSec())
			stats[extra] = st
		}
		if len(stats) != 2 {
			continue
		}
		r.Report.Add(sc, "host load average at start", "1 min", load)
		for _, extra := range []bool{false, true} {
			r.record(sc, columnsName(extra), stats[extra], true)
		}
	}
	name := "columns with/without 5 extra columns drain ev/s"
	for _, v := range ratio(r.Report.Get(sc, columnsWith+" throughput"), r.Report.Get(sc, columnsWithout+" throughput")) {
		r.Report.Add(RatioScenario, name, "×", v)
	}
	r.Report.Goal(RatioScenario, name, ">=", 0.9)
	return sc
}

func columnsName(extra bool) string {
	if extra {
		return columnsWith
	}
	return columnsWithout
}

func (r *Runner) columnsRun(ctx context.Context, d Dataset, profile string) (DrainStat, error) {
	e, err := r.prepareStream(ctx, d, false)
	if err != nil {
		return DrainStat{}, err
	}
	defer e.Close()
	st, err := r.RelayDrain(ctx, e, d, profile)
	if err != nil || !d.ExtraColumns {
		return st, err
	}
	return st, verifyExtraColumns(ctx, e, d.Events)
}

// verifyExtraColumns checks that every event reached event_log with a
// value in each extra column (so the run measured the columns' cost).
func verifyExtraColumns(ctx context.Context, e *Env, want int) error {
	conds := make([]string, len(ExtraColumns))
	for i, c := range ExtraColumns {
		conds[i] = "isNotNull(" + c.Name + ")"
	}
	var n uint64
	q := "SELECT toUInt64(uniqExact(event_id)) FROM " + config.DefaultClickHouseTable + " WHERE " + strings.Join(conds, " AND ")
	if err := e.CH.QueryRow(ctx, q).Scan(&n); err != nil {
		return fmt.Errorf("count extra columns: %w", err)
	}
	if n != uint64(want) {
		return fmt.Errorf("clickhouse holds %d events with all 5 extra columns set, want %d", n, want)
	}
	return nil
}
