package bench

import (
	"testing"

	"github.com/outbox-relay/relay/internal/config"
)

func TestStreamsWant(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		three bool
		// want: events and distinct event types per ClickHouse table.
		want map[string][2]int
	}{
		{name: "one stream", n: 30, want: map[string][2]int{config.DefaultClickHouseTable: {30, 5}}},
		{name: "three streams", n: 30, three: true, want: map[string][2]int{
			// Events 0, 3, 6, …, 27 are routed: i%5 cycles through every type.
			"events_order_created": {2, 1}, "events_order_paid": {2, 1}, "events_order_shipped": {2, 1},
			"events_invoice_sent": {2, 1}, "events_user_signed_up": {2, 1},
			config.DefaultClickHouseTable: {10, 5}, "billing_event_log": {10, 5},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := streamsWant(tt.n, tt.three)
			if len(got) != len(tt.want) {
				t.Errorf("%d tables, want %d: %v", len(got), len(tt.want), got)
			}
			for table, w := range tt.want {
				g := got[table]
				if g == nil || g.events != uint64(w[0]) || len(g.types) != w[1] {
					t.Errorf("%s: %+v, want %d events of %d types", table, g, w[0], w[1])
				}
			}
		})
	}
}

// Each loading transaction of a three-stream run touches all three outbox
// tables, in the proportions the drain's ratios assume.
func TestOutboxOf(t *testing.T) {
	seen := map[int]int{}
	for i := range 100 {
		if k := outboxOf(i, false); k != 0 {
			t.Fatalf("one stream: event %d goes to outbox %d", i, k)
		}
		seen[outboxOf(i, true)]++
	}
	if len(seen) != 3 || seen[0] != 34 || seen[1] != 33 || seen[2] != 33 {
		t.Errorf("three streams: a transaction of 100 deals %v", seen)
	}
}
