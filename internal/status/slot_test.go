package status

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outbox-relay/relay/internal/metrics"
)

// scrape returns the text exposition of m.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), "GET", "/metrics", nil))
	return rec.Body.String()
}

func TestSlotGauges(t *testing.T) {
	present := SlotSample{Exists: true, Active: true, WALStatus: "reserved", LagBytes: ptr(int64(123)), RetainedBytes: ptr(int64(456))}
	missing := SlotSample{}
	tests := []struct {
		name    string
		samples []SlotSample
		want    []string // lines that must be in the exposition
	}{
		{name: "nothing read yet", want: []string{`outbox_relay_wal_status{status="missing"} 0`, `outbox_relay_wal_status{status="reserved"} 0`}},
		{name: "present", samples: []SlotSample{present}, want: []string{
			`outbox_relay_wal_status{status="reserved"} 1`, "outbox_relay_slot_lag_bytes 123", "outbox_relay_retained_wal_bytes 456"}},
		{name: "missing once at start: being created", samples: []SlotSample{missing}, want: []string{`outbox_relay_wal_status{status="missing"} 0`}},
		{name: "missing twice", samples: []SlotSample{missing, missing}, want: []string{`outbox_relay_wal_status{status="missing"} 1`}},
		{name: "created after one miss", samples: []SlotSample{missing, present}, want: []string{
			`outbox_relay_wal_status{status="missing"} 0`, `outbox_relay_wal_status{status="reserved"} 1`}},
		{name: "disappeared", samples: []SlotSample{present, missing}, want: []string{
			`outbox_relay_wal_status{status="missing"} 1`, `outbox_relay_wal_status{status="reserved"} 0`, "outbox_relay_slot_lag_bytes 123"}},
		{name: "unreserved", samples: []SlotSample{present, {Exists: true, WALStatus: "unreserved", LagBytes: ptr(int64(9))}}, want: []string{
			`outbox_relay_wal_status{status="unreserved"} 1`, `outbox_relay_wal_status{status="reserved"} 0`, "outbox_relay_slot_lag_bytes 9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			observe := SlotGauges(m)
			for _, s := range tt.samples {
				observe(s)
			}
			body := scrape(t, m)
			for _, line := range tt.want {
				if !strings.Contains(body, line+"\n") {
					t.Errorf("exposition lacks %q", line)
				}
			}
		})
	}
}
