package batch

import (
	"runtime"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/event"
)

// BenchmarkBatcherAdd measures buffering on the relay loop's hot path: one
// op is one Add (plus a Commit every 100 events, as in 100-event
// transactions, and a Flush whenever the batch is full). The payload is
// shared, as the batcher only stores the event value.
func BenchmarkBatcherAdd(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"512B", 512}, {"64KiB", 64 << 10}} {
		b.Run(bc.name, func(b *testing.B) {
			bt := New(Policy{MaxEvents: 10000, MaxBytes: 16 << 20, MaxAge: time.Second})
			ev := event.Event{Type: "user_created", Environment: "production", Context: make([]byte, bc.size),
				OccurredAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), MetadataVersion: 1}
			now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
			b.SetBytes(int64(ev.Size()))
			b.ReportAllocs()
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			lsn := uint64(0)
			for b.Loop() {
				lsn++
				ev.CommitLSN = lsn / 100
				full := bt.Add(ev, now)
				if lsn%100 == 0 {
					bt.Commit(lsn, now)
				}
				if full {
					_ = bt.Flush()
				}
			}
			runtime.ReadMemStats(&ms1)
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/event")
		})
	}
}
