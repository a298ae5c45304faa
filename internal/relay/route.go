package relay

import (
	"fmt"
	"slices"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/deadletter"
	"github.com/outbox-relay/relay/internal/event"
)

// maxTableName bounds a routed table's name: ClickHouse keeps a table in
// a directory of that name, and file names stop at 255 bytes.
const maxTableName = 200

// Route is where a stream's events go: one ClickHouse table, or a
// template over one field (events_{event_type}) that gives each value a
// table of its own, up to a limit.
type Route struct {
	Stream string // the stream's name
	// Table is the table, or the template's text.
	Table string
	// field, prefix and suffix split a template; field is empty for a
	// plain table.
	field, prefix, suffix string
	max                   int
	// tables are the template's tables so far (existing ones included),
	// so the limit counts across restarts. Routing runs on the session's
	// goroutine only, in stream order: the same events get the same
	// tables on every replay.
	tables map[string]bool
	// named caches the table of each value routed so far (values repeat:
	// a lookup allocates nothing), up to maxNamed values.
	named map[string]string
}

// maxNamed bounds Route.named: many values that sanitize alike are not
// all remembered.
const maxNamed = 4096

// NewRoute parses a stream's ClickHouse table; existing are the tables the
// template made before (they count toward its limit).
func NewRoute(s config.Stream, existing []string) Route {
	r := Route{Stream: s.Name, Table: s.ClickHouseTable, max: s.MaxTables}
	var ok bool
	if r.prefix, r.field, r.suffix, ok = s.Template(); !ok {
		return r
	}
	r.tables, r.named = map[string]bool{}, map[string]string{}
	for _, t := range existing {
		if s.RoutesTo(t) {
			r.tables[t] = true
		}
	}
	return r
}

// Tables are the template's tables known so far, sorted.
func (r *Route) Tables() []string {
	out := make([]string, 0, len(r.tables))
	for t := range r.tables {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Routed says the route is a template.
func (r *Route) Routed() bool { return r.field != "" }

// table is where ev goes, or why it cannot go anywhere (the event is
// dead-lettered).
func (r *Route) table(ev *event.Event) (string, error) {
	if !r.Routed() {
		return r.Table, nil
	}
	var v string
	switch r.field {
	case config.FieldEventType:
		v = ev.Type
	case config.FieldEnvironment:
		v = ev.Environment
	default:
		return "", fmt.Errorf("stream %q: the template %q routes by %q, which the relay cannot route by", r.Stream, r.Table, r.field)
	}
	if name, ok := r.named[v]; ok {
		return name, nil
	}
	name := r.prefix + sanitize(v) + r.suffix
	switch {
	case v == "":
		return "", fmt.Errorf("stream %q: %s is empty, and the template %q needs a value to name a table", r.Stream, r.field, r.Table)
	case len(name) > maxTableName:
		return "", fmt.Errorf("stream %q: %s %.40q… makes a table name of %d bytes through the template %q; ClickHouse table names here stop at %d",
			r.Stream, r.field, v, len(name), r.Table, maxTableName)
	}
	if !r.tables[name] {
		if len(r.tables) >= r.max {
			return "", fmt.Errorf("stream %q: %s %q would make table %s, past the stream's limit of %d tables (max_tables): raise the limit, then `relay deadletter replay`",
				r.Stream, r.field, v, name, r.max)
		}
		r.tables[name] = true
	}
	if len(r.named) < maxNamed {
		r.named[v] = name
	}
	return name, nil
}

// sanitize keeps ASCII letters, digits and underscores of v and turns
// every other byte into an underscore: a table name that needs no quoting
// anywhere (two values differing only there share a table).
func sanitize(v string) string {
	b := []byte(v)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// part is the events of a batch bound for one table, in batch order.
type part struct {
	stream uint16
	table  string
	events []event.Event
}

// route splits evs by destination table, in order of first appearance
// (the same on every replay of the batch), each part in batch order; the
// events no table can take come back as rejected, for the dead letters.
// It reorders evs in place (a stable partition by table, the rejected
// last): the parts are slices of it, so no event is copied into a second
// buffer (the batch's memory stays what the budget counted).
func (s *session) route(evs []event.Event) ([]part, []deadletter.Rejected) {
	if len(s.routes) == 1 && !s.routes[0].Routed() {
		return []part{{table: s.routes[0].Table, events: evs}}, nil // every event of the one stream
	}
	var parts []part
	var counts []int32
	var rejected []deadletter.Rejected
	at := map[string]int32{}
	dest := make([]int32, len(evs)) // each event's part, -1: rejected
	for i := range evs {
		ev := &evs[i]
		r := &s.routes[ev.Stream]
		table := r.Table
		if ev.Undecodable == nil { // undecodable ones are dead-lettered by writeBatch
			var err error
			if table, err = r.table(ev); err != nil {
				rejected = append(rejected, deadletter.Rejected{Event: *ev, Err: err, Stream: r.Stream})
				dest[i] = -1
				continue
			}
		}
		p, ok := at[table]
		if !ok {
			p = int32(len(parts))
			at[table] = p
			parts = append(parts, part{stream: ev.Stream, table: table})
			counts = append(counts, 0)
		}
		dest[i] = p
		counts[p]++
	}
	if len(parts) == 1 && len(rejected) == 0 {
		parts[0].events = evs
		return parts, nil
	}
	// next[p] is where part p's next event goes; the rejected follow the
	// parts. dest becomes each event's position, then evs is permuted
	// along its cycles.
	next := make([]int32, len(parts)+1)
	for p := range parts {
		next[p+1] = next[p] + counts[p]
		parts[p].events = evs[next[p] : next[p]+counts[p]]
	}
	for i, p := range dest {
		if p < 0 {
			p = int32(len(parts))
		}
		dest[i] = next[p]
		next[p]++
	}
	for i := range dest {
		for int(dest[i]) != i {
			j := dest[i]
			evs[i], evs[j] = evs[j], evs[i]
			dest[i], dest[j] = dest[j], dest[i]
		}
	}
	return parts, rejected
}
