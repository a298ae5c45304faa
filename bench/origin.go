package bench

// PROTOTYPE (issue 23 item 4, measurement only): the walsender's CPU per
// event with and without the relay's DELETE session on a replication origin
// and the stream's origin 'none' (RELAY_PROTO_DELETE_ORIGIN=1, PostgreSQL
// 16+), interleaved A/B per round.

import (
	"context"
	"fmt"
	"time"
)

// Origin runs rounds of (off, on) steady-load runs of the relay.
func (r *Runner) Origin(ctx context.Context, lc LatencyConfig, interval time.Duration, rounds int) {
	steady := *r
	steady.BatchSize = SteadyBatchSize
	sc := fmt.Sprintf("origin %d ev/s, interval %s, batch %d", lc.Rate, interval, steady.BatchSize)
	for i := range rounds {
		for _, on := range []bool{false, true} {
			name := "off"
			run := steady
			run.RelayExtraEnv = append([]string(nil), r.RelayExtraEnv...)
			if on {
				name = "on"
				run.RelayExtraEnv = append(run.RelayExtraEnv, "RELAY_PROTO_DELETE_ORIGIN=1")
			}
			load := LoadAvg1()
			ws, pg, relay, res, err := run.originRun(ctx, lc, interval)
			if err != nil {
				r.fail(sc+" "+name, i, err)
				continue
			}
			perM := func(d time.Duration) float64 { return d.Seconds() / float64(max(res.Sent, 1)) * 1e6 }
			r.Report.Add(sc, name+" walsender cpu", "s/M ev", perM(ws))
			r.Report.Add(sc, name+" postgres cpu", "s/M ev", perM(pg))
			r.Report.Add(sc, name+" relay cpu", "s/M ev", perM(relay))
			r.Report.Add(sc, name+" p99", "ms", float64(res.Quantile(0.99))/float64(time.Millisecond))
			r.Report.Add(sc, name+" missing", "events", float64(res.Missing))
			r.Logf("%s round %d %s (load %.1f): walsender %.1f s/M, postgres %.1f s/M, relay %.1f s/M, sent %d, %.0f ev/s, missing %d, p99 %s",
				sc, i+1, name, load, perM(ws), perM(pg), perM(relay), res.Sent, res.Achieved, res.Missing, res.Quantile(0.99).Round(time.Millisecond))
		}
	}
}

func (r *Runner) originRun(ctx context.Context, lc LatencyConfig, interval time.Duration) (ws, pg, relay time.Duration, res LatencyResult, err error) {
	e, err := NewEnv(ctx, r.Srv)
	if err != nil {
		return
	}
	defer e.Close()
	p, err := r.startSteady(ctx, e, "relay", interval, "")
	if err != nil {
		return
	}
	defer p.Kill()
	var pid int
	if err = e.PG.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", e.Slot).Scan(&pid); err != nil {
		return
	}
	st, err := readProcStat(pid)
	if err != nil {
		return
	}
	ws0, _ := ProcCPU(pid)
	pg0, _ := TreeCPU(st.ppid)
	if res, err = RunLatency(ctx, e, lc); err != nil {
		return
	}
	ws1, err := ProcCPU(pid)
	if err != nil {
		err = fmt.Errorf("walsender %d: %w (restarted?)", pid, err)
		return
	}
	pg1, _ := TreeCPU(st.ppid)
	ws, pg = ws1-ws0, pg1-pg0
	if p.Exited() {
		err = fmt.Errorf("relay: %w:\n%s", errExited, p.Tail(20))
		return
	}
	u, err := p.Stop(time.Minute)
	if err != nil {
		return
	}
	relay = u.CPU
	var left int64
	if err = e.PG.QueryRow(ctx, "SELECT count(*) FROM outbox_event").Scan(&left); err == nil && left > int64(lc.Rate) {
		r.Logf("  %d rows left in outbox_event (deletes behind?)", left)
	}
	return
}
