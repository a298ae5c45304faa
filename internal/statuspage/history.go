package statuspage

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/outbox-relay/relay/internal/metrics"
)

// Counters are the relay's own cumulative figures, read from its metrics.
type Counters struct {
	Events float64 // outbox_relay_events_total
	// LagSum and LagCount are the sum and count of the end-to-end lag
	// histogram (seconds from commit to ClickHouse, one per transaction).
	LagSum, LagCount float64
	// The last batch ClickHouse accepted (zero before the first).
	LastFlushUnix, LastFlushEvents, LastFlushBytes float64
}

// ReadCounters picks the Counters out of g (the relay's registry).
func ReadCounters(g prometheus.Gatherer) (Counters, error) {
	fams, err := g.Gather()
	if err != nil {
		return Counters{}, fmt.Errorf("gather metrics: %w", err)
	}
	var c Counters
	for _, f := range fams {
		if len(f.GetMetric()) == 0 {
			continue
		}
		m := f.GetMetric()[0]
		switch f.GetName() {
		case metrics.NameEventsTotal:
			c.Events = m.GetCounter().GetValue()
		case metrics.NameEndToEndLag:
			c.LagSum, c.LagCount = m.GetHistogram().GetSampleSum(), float64(m.GetHistogram().GetSampleCount())
		case metrics.NameLastFlushTimestamp:
			c.LastFlushUnix = gauge(m)
		case metrics.NameLastFlushEvents:
			c.LastFlushEvents = gauge(m)
		case metrics.NameLastFlushBytes:
			c.LastFlushBytes = gauge(m)
		}
	}
	return c, nil
}

func gauge(m *dto.Metric) float64 { return m.GetGauge().GetValue() }

// Sample is one point of the charts: what happened between the previous
// sample and T.
type Sample struct {
	T time.Time `json:"t"`
	// EventsPerSecond is the delivery rate over the interval.
	EventsPerSecond float64 `json:"events_per_second"`
	// LagSeconds is the mean end-to-end lag of the transactions delivered
	// in the interval; null when none was.
	LagSeconds *float64 `json:"lag_seconds"`
}

// History keeps the samples of a fixed window in a ring. It is safe for
// concurrent use.
type History struct {
	mu    sync.Mutex
	ring  []Sample
	next  int // where the next sample goes
	full  bool
	prev  Counters
	prevT time.Time
	last  Counters
}

// NewHistory returns a History holding window/every samples.
func NewHistory(window, every time.Duration) *History {
	return &History{ring: make([]Sample, max(1, int(window/every)))}
}

// Add records the counters read at now; the first call only sets the base.
// Counters that went down (a new registry) restart the base too.
func (h *History) Add(now time.Time, c Counters) {
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, prevT := h.prev, h.prevT
	h.prev, h.prevT, h.last = c, now, c
	dt := now.Sub(prevT).Seconds()
	if prevT.IsZero() || dt <= 0 || c.Events < prev.Events || c.LagCount < prev.LagCount {
		return
	}
	s := Sample{T: now.UTC(), EventsPerSecond: (c.Events - prev.Events) / dt}
	if n := c.LagCount - prev.LagCount; n > 0 {
		lag := (c.LagSum - prev.LagSum) / n
		s.LagSeconds = &lag
	}
	h.ring[h.next] = s
	h.next = (h.next + 1) % len(h.ring)
	h.full = h.full || h.next == 0
}

// Samples returns the samples, oldest first.
func (h *History) Samples() []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.full {
		return append([]Sample{}, h.ring[:h.next]...)
	}
	return append(append([]Sample{}, h.ring[h.next:]...), h.ring[:h.next]...)
}

// Last returns the counters of the last Add.
func (h *History) Last() Counters {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Record reads g every interval into h until ctx ends; a failed read is
// skipped (the charts show a gap, the relay goes on). It returns nil.
func Record(ctx context.Context, g prometheus.Gatherer, h *History, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if c, err := ReadCounters(g); err == nil {
			h.Add(time.Now(), c)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
