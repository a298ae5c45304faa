package status

import (
	"strings"
	"testing"
)

func TestJudgeFailover(t *testing.T) {
	streaming := StandbySlot{Name: "sb", Physical: true, Active: true, State: "streaming"}
	tests := []struct {
		name        string
		f           Failover
		noSlot      bool
		wantReady   bool
		wantMissing string // a part of Missing
	}{
		{name: "PostgreSQL 15", f: Failover{}, wantMissing: "PostgreSQL 17 or later"},
		{name: "standby", f: Failover{Supported: true, InRecovery: true}, wantMissing: "a primary"},
		{name: "no slot", f: Failover{Supported: true}, noSlot: true, wantMissing: "relay run creates it"},
		{name: "flag off", f: Failover{Supported: true}, wantMissing: "RELAY_SLOT_FAILOVER"},
		{name: "no standby slots", f: Failover{Supported: true, SlotFailover: true}, wantMissing: "synchronized_standby_slots on the primary"},
		{name: "not physical", f: Failover{Supported: true, SlotFailover: true, SynchronizedStandbySlots: []string{"sb"},
			Standbys: []StandbySlot{{Name: "sb"}}}, wantMissing: `"sb" is no physical slot`},
		{name: "standby down", f: Failover{Supported: true, SlotFailover: true, SynchronizedStandbySlots: []string{"sb"},
			Standbys: []StandbySlot{{Name: "sb", Physical: true}}}, wantMissing: `no standby streams from "sb"`},
		{name: "catching up", f: Failover{Supported: true, SlotFailover: true, SynchronizedStandbySlots: []string{"sb"},
			Standbys: []StandbySlot{{Name: "sb", Physical: true, Active: true, State: "catchup"}}}, wantMissing: "catchup, not streaming"},
		{name: "ready", f: Failover{Supported: true, SlotFailover: true, SynchronizedStandbySlots: []string{"x", "sb"},
			Standbys: []StandbySlot{{Name: "x", Physical: true}, streaming}}, wantReady: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			r := &Report{PostgresVersion: "15.18", Slot: "s", SlotExists: !tt.noSlot, Failover: &f}
			judgeFailover(r)
			if f.Ready != tt.wantReady || (tt.wantReady && f.Missing != "") || !strings.Contains(f.Missing, tt.wantMissing) {
				t.Errorf("ready %t missing %q; want ready %t missing containing %q", f.Ready, f.Missing, tt.wantReady, tt.wantMissing)
			}
			if line := FailoverLine(&f); (line == "yes") != tt.wantReady {
				t.Errorf("FailoverLine = %q", line)
			}
		})
	}
}
