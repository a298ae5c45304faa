package relay

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/deadletter"
	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/replication"
)

func TestRouteTable(t *testing.T) {
	r := NewRoute(config.Stream{Name: "billing", ClickHouseTable: "billing_{event_type}_v1", MaxTables: 3},
		[]string{"billing_old_v1", "event_log", "billing__v2"})
	tests := []struct {
		typ, want, wantErr string
	}{
		{typ: "invoice", want: "billing_invoice_v1"},
		{typ: "invoice", want: "billing_invoice_v1"}, // known: no new table
		{typ: "order.paid-eu", want: "billing_order_paid_eu_v1"},
		{typ: "", wantErr: "event_type is empty"},
		{typ: strings.Repeat("x", 190), wantErr: "table name of 201 bytes"},
		{typ: "refund", wantErr: "limit of 3 tables (max_tables)"}, // billing_old_v1 counts
		{typ: "old", want: "billing_old_v1"},                       // existing, so within the limit
		{typ: "`; DROP TABLE x", wantErr: "limit of 3"},            // sanitized, then past the limit
	}
	for _, tt := range tests {
		got, err := r.table(&event.Event{Type: tt.typ})
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("table(%q) = %q, %v; want an error containing %q", tt.typ, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("table(%q) = %q, %v; want %q", tt.typ, got, err, tt.want)
		}
	}
	plain := NewRoute(config.Stream{Name: "app", ClickHouseTable: "event_log"}, nil)
	if got, err := plain.table(&event.Event{Type: "anything"}); got != "event_log" || err != nil || plain.Routed() {
		t.Errorf("a plain table routes to %q, %v", got, err)
	}
	if s := sanitize("a.b-c d_é9"); s != "a_b_c_d___9" {
		t.Errorf("sanitize = %q", s)
	}
}

// Several streams in one transaction: each event is written into its
// stream's table (a template's per value), every part under the batch's
// token; what no table can take is dead-lettered with its stream; every
// row is deleted from its own stream's table before the commit is
// confirmed.
func TestStreamsWrittenInPartsByTable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newRig(t, bigBudget)
		g.routes = []Route{
			NewRoute(config.Stream{Name: "app", ClickHouseTable: "event_log"}, nil),
			NewRoute(config.Stream{Name: "billing", ClickHouseTable: "billing_{event_type}", MaxTables: 2}, nil),
		}
		var mu sync.Mutex
		var writes []string
		g.sink.writeTable = func(_ context.Context, table string, evs []event.Event, token string) error {
			mu.Lock()
			defer mu.Unlock()
			writes = append(writes, fmt.Sprintf("%s %v token=%t", table, evIDs(evs), token == ""))
			return nil
		}
		var dead []deadletter.Rejected
		g.dead.put = func(_ context.Context, rs []deadletter.Rejected) error {
			mu.Lock()
			defer mu.Unlock()
			dead = append(dead, rs...)
			return nil
		}
		var deleted []event.Row
		g.cleaner.deleteRows = func(_ context.Context, rows []event.Row) (int64, error) {
			deleted = append(deleted, rows...)
			g.log.add("delete confirmed=%d", g.tracker.Confirmed())
			return int64(len(rows)), nil
		}
		mk := func(n byte, stream uint16, typ string) replication.Item {
			e := ev(n)
			e.Stream, e.Type = stream, typ
			if stream == 1 {
				e.Key = fmt.Sprint(n)
			}
			return replication.Item{Event: e}
		}
		after, flushed := g.signal()
		live := []replication.Item{mk(1, 0, "user.created"), mk(2, 1, "invoice"), mk(3, 1, "refund.eu"), mk(4, 0, "user.deleted"),
			mk(5, 1, "credit"), mk(6, 1, ""), mk(7, 1, "invoice"), {Commit: true, EndLSN: 100, AfterConfirm: after}}
		g.sources = []Source{g.stream(script{live: live, together: true})}
		x := start(t, g.relay(batch.Policy{MaxEvents: 100, MaxAge: 10 * time.Millisecond}))
		x.until(t, flushed, "the flush")
		if err := x.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		want := []string{"event_log [1 4] token=true", "billing_invoice [2 7] token=true", "billing_refund_eu [3] token=true"}
		if !slices.Equal(writes, want) {
			t.Errorf("writes %q, want %q", writes, want)
		}
		if len(dead) != 2 || dead[0].Event.ID[15] != 5 || dead[1].Event.ID[15] != 6 {
			t.Fatalf("dead letters %v, want events 5 (past the limit) and 6 (empty type)", dead)
		}
		for _, d := range dead {
			if d.Stream != "billing" || d.Table != "" {
				t.Errorf("event %d dead-lettered as stream %q table %q, want billing and no table", d.Event.ID[15], d.Stream, d.Table)
			}
		}
		if !strings.Contains(dead[0].Err.Error(), "limit of 2 tables") || !strings.Contains(dead[1].Err.Error(), "event_type is empty") {
			t.Errorf("dead letter errors %v / %v do not say why", dead[0].Err, dead[1].Err)
		}
		if len(deleted) != 7 {
			t.Errorf("deleted %d rows, want all 7 (dead letters included)", len(deleted))
		}
		for _, r := range deleted {
			if want := map[bool]uint16{true: 1}[r.Key != ""]; r.Stream != want {
				t.Errorf("row %d deleted from stream %d, want %d", r.ID[15], r.Stream, want)
			}
		}
		checkLog(t, g.log.get(), []string{"delete confirmed=0", "after-flush confirmed=100", "drained confirmed=100"})
		g.checkBudget()
	})
}

// BenchmarkRoute splits a batch of 10,000 events: one plain stream (no
// split), and three streams of which one is routed into five tables.
func BenchmarkRoute(b *testing.B) {
	types := []string{"order.created", "order.paid", "order.shipped", "invoice.sent", "user.signed_up"}
	evs := make([]event.Event, 10_000)
	for i := range evs {
		evs[i] = ev(byte(i))
		evs[i].Stream, evs[i].Type = uint16(i%3), types[i%len(types)]
	}
	one := []Route{NewRoute(config.Stream{Name: "default", ClickHouseTable: "event_log"}, nil)}
	three := []Route{
		NewRoute(config.Stream{Name: "app", ClickHouseTable: "event_log"}, nil),
		NewRoute(config.Stream{Name: "billing", ClickHouseTable: "billing_event_log"}, nil),
		NewRoute(config.Stream{Name: "events", ClickHouseTable: "events_{event_type}", MaxTables: 10}, nil),
	}
	for _, bc := range []struct {
		name   string
		routes []Route
	}{{"one-stream", one}, {"three-streams", three}} {
		b.Run(bc.name, func(b *testing.B) {
			s := &session{Relay: &Relay{routes: bc.routes}}
			b.ReportAllocs()
			for b.Loop() {
				parts, _ := s.route(evs)
				if len(parts) == 0 {
					b.Fatal("no parts")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
		})
	}
}
