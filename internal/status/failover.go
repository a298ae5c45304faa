package status

import (
	"context"
	"fmt"
	"strings"

	"github.com/outbox-relay/relay/internal/standby"
)

// minFailoverVersion is the first server_version_num with failover slots.
const minFailoverVersion = 170000

// Failover says whether a primary failover would keep the slot: PostgreSQL
// 17+ synchronizes a logical slot created with failover = true to the
// physical standbys that run with sync_replication_slots = on, and
// synchronized_standby_slots on the primary holds logical decoding back
// until those standbys have the WAL, so the promoted standby's copy of the
// slot is never behind what the relay was sent.
type Failover struct {
	// Supported is true on PostgreSQL 17+.
	Supported bool `json:"supported"`
	// SlotFailover is the slot's pg_replication_slots.failover; SlotSynced
	// its synced (true on a standby's copy, and on a promoted standby).
	SlotFailover bool `json:"slot_failover"`
	SlotSynced   bool `json:"slot_synced"`
	// InRecovery is true when DATABASE_URL is a standby.
	InRecovery bool `json:"in_recovery"`
	// SynchronizedStandbySlots is the primary's setting, as a list.
	SynchronizedStandbySlots []string `json:"synchronized_standby_slots"`
	// Standbys are the physical slots it names, as the primary sees them.
	Standbys []StandbySlot `json:"standby_slots"`
	// Ready is "failover-ready: yes"; Missing names what is missing
	// otherwise.
	Ready   bool   `json:"ready"`
	Missing string `json:"missing"`
}

// StandbySlot is one slot named in synchronized_standby_slots.
type StandbySlot struct {
	Name string `json:"name"`
	// Physical is true when the slot exists and is physical.
	Physical bool `json:"physical"`
	Active   bool `json:"active"`
	// State is its walsender's pg_stat_replication.state ("streaming" when
	// the standby is caught up and receiving); "" when none.
	State string `json:"state"`
}

// gatherFailover fills r.Failover. Nothing is read before PostgreSQL 17.
func gatherFailover(ctx context.Context, db DB, r *Report, slot string, versionNum int) error {
	f := &Failover{Supported: versionNum >= minFailoverVersion, SynchronizedStandbySlots: []string{}, Standbys: []StandbySlot{}}
	r.Failover = f
	if !f.Supported {
		judgeFailover(r)
		return nil
	}
	var setting string
	err := db.QueryRow(ctx, `SELECT coalesce(bool_or(failover), false), coalesce(bool_or(synced), false), pg_is_in_recovery(),
		current_setting('synchronized_standby_slots')
		FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`, slot).
		Scan(&f.SlotFailover, &f.SlotSynced, &f.InRecovery, &setting)
	if err != nil {
		return fmt.Errorf("read the slot's failover flag: %w", err)
	}
	f.SynchronizedStandbySlots = standby.SlotList(setting)
	if len(f.SynchronizedStandbySlots) > 0 {
		var (
			physical, active []bool
			states           []string
		)
		err := db.QueryRow(ctx, `SELECT coalesce(array_agg(coalesce(s.slot_type = 'physical', false) ORDER BY n.i), '{}'),
			coalesce(array_agg(coalesce(s.active, false) ORDER BY n.i), '{}'), coalesce(array_agg(coalesce(r.state, '') ORDER BY n.i), '{}')
			FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i)
			LEFT JOIN pg_replication_slots s ON s.slot_name = n.name
			LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid`, f.SynchronizedStandbySlots).Scan(&physical, &active, &states)
		if err != nil {
			return fmt.Errorf("read the slots of synchronized_standby_slots: %w", err)
		}
		for i, name := range f.SynchronizedStandbySlots {
			f.Standbys = append(f.Standbys, StandbySlot{Name: name, Physical: physical[i], Active: active[i], State: states[i]})
		}
	}
	judgeFailover(r)
	return nil
}

// judgeFailover sets r.Failover.Ready and Missing: the first thing a
// failover would need and does not have, naming the setting. It is pure.
func judgeFailover(r *Report) {
	f := r.Failover
	f.Ready, f.Missing = false, ""
	switch {
	case !f.Supported:
		f.Missing = fmt.Sprintf("PostgreSQL 17 or later (failover slots); this server is %s: a failover loses the slot (relay run then backfills from outbox_event; message mode loses the gap)",
			strings.Fields(r.PostgresVersion + " ?")[0])
	case f.InRecovery:
		f.Missing = "a primary: DATABASE_URL is a standby (point relay status at the primary)"
	case !r.SlotExists:
		f.Missing = fmt.Sprintf("the slot %q (relay run creates it)", r.Slot)
	case !f.SlotFailover:
		f.Missing = "the slot's failover flag: RELAY_SLOT_FAILOVER=true (the default; relay run sets it at start)"
	case len(f.SynchronizedStandbySlots) == 0:
		f.Missing = "synchronized_standby_slots on the primary: name the standby's physical slot (its primary_slot_name)"
	default:
		f.Missing = standbyMissing(f.Standbys)
		f.Ready = f.Missing == ""
	}
}

// standbyMissing says what keeps every named standby slot from a ready
// standby ("" when one is streaming).
func standbyMissing(slots []StandbySlot) string {
	var why []string
	for _, s := range slots {
		switch {
		case s.State == "streaming":
			return ""
		case !s.Physical:
			why = append(why, fmt.Sprintf("%q is no physical slot on the primary", s.Name))
		case !s.Active:
			why = append(why, fmt.Sprintf("no standby streams from %q", s.Name))
		default:
			why = append(why, fmt.Sprintf("the standby on %q is %s, not streaming", s.Name, s.State))
		}
	}
	return "a streaming standby in synchronized_standby_slots: " + strings.Join(why, "; ") +
		" (the standby needs primary_slot_name, primary_conninfo with dbname, hot_standby_feedback = on, sync_replication_slots = on)"
}

// FailoverLine is "yes" or "no: <what is missing>", as relay status shows it.
func FailoverLine(f *Failover) string {
	if f == nil {
		return "unknown"
	}
	if f.Ready {
		return "yes"
	}
	return "no: missing " + f.Missing
}

// failover warns when synchronized_standby_slots names a slot no standby
// streams from: PostgreSQL 17 then holds back the failover slot's changes
// until that standby confirms them, so the relay stalls.
func (j *judgement) failover(r *Report) {
	f := r.Failover
	if f == nil || !f.Supported || f.InRecovery || !f.SlotFailover {
		return
	}
	for _, s := range f.Standbys {
		if !s.Active {
			j.add(Warning, "synchronized_standby_slots names %q, which no standby streams from: PostgreSQL holds the failover slot's changes back until it does (start the standby, or remove it from synchronized_standby_slots)", s.Name)
		}
	}
}
