package clickhouse

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	chcolumn "github.com/ClickHouse/clickhouse-go/v2/lib/column"

	"github.com/outbox-relay/relay/internal/event"
)

// benchBatch is the batch size of the benchmarks (CH_OUTBOX_BATCH_SIZE in
// make bench).
const benchBatch = 10000

// benchSchemas are event_log's insertable columns as the sink finds them on
// 18.16 (DateTime plus microseconds) and on 20.1 and newer (DateTime64).
var benchSchemas = []struct {
	name string
	cols [][2]string
}{
	{"ch18.16", [][2]string{{"event_id", "UUID"}, {"event_type", "String"}, {"event_date_time", "DateTime('UTC')"},
		{"event_date_time_us", "UInt32"}, {"environment", "String"}, {"event_context", "String"},
		{"metadata_version", "UInt64"}, {"commit_lsn", "UInt64"}}},
	{"ch20.1+", [][2]string{{"event_id", "UUID"}, {"event_type", "String"}, {"event_date_time", "DateTime64(6, 'UTC')"},
		{"environment", "String"}, {"event_context", "String"}, {"metadata_version", "UInt64"}, {"commit_lsn", "UInt64"}}},
}

func benchEvents(n, size int) []event.Event {
	evs := make([]event.Event, n)
	t := time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC)
	for i := range evs {
		ctx := make([]byte, size)
		for j := range ctx {
			ctx[j] = 'a' + byte((i+j)%26)
		}
		evs[i] = event.Event{ID: [16]byte{byte(i), byte(i >> 8), 0x40}, Type: "user_created", OccurredAt: t.Add(time.Duration(i)),
			Environment: "production", Context: ctx, MetadataVersion: 1, CommitLSN: uint64(i / 100)}
	}
	return evs
}

func benchFillers(b *testing.B, cols [][2]string) []func([]event.Event) any {
	b.Helper()
	out := make([]func([]event.Event) any, len(cols))
	for i, c := range cols {
		f, ok := filler(c[0], c[1])
		if !ok {
			b.Fatalf("no filler for %s %s", c[0], c[1])
		}
		out[i] = f
	}
	return out
}

// perEvent reports ns/event and allocs/event for ops of benchBatch events.
func perEvent(b *testing.B, ms0 *runtime.MemStats) {
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	events := float64(b.N) * benchBatch
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/events, "allocs/event")
}

func batchBytes(evs []event.Event) int64 {
	var n int64
	for i := range evs {
		n += int64(evs[i].Size())
	}
	return n
}

// BenchmarkFill measures the sink's column fillers (event.Event slice ->
// one typed slice per column). One op is one 10,000-event batch.
func BenchmarkFill(b *testing.B) {
	evs := benchEvents(benchBatch, 512)
	for _, s := range benchSchemas {
		b.Run(s.name, func(b *testing.B) {
			fill := benchFillers(b, s.cols)
			b.SetBytes(batchBytes(evs))
			b.ReportAllocs()
			var ms0 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			for b.Loop() {
				for _, f := range fill {
					_ = f(evs)
				}
			}
			perEvent(b, &ms0)
		})
	}
}

// BenchmarkFillAppendEncode is the client-side CPU of Sink.Write without
// the network: fill, append to the driver's columns (as Batch.Column(i).
// Append does) and encode them into a native-protocol block buffer.
func BenchmarkFillAppendEncode(b *testing.B) {
	for _, size := range []int{512, 64 << 10} {
		n := benchBatch
		if size > 512 {
			n = 256 // the relay's batches of 64 KiB events are cut by RELAY_BATCH_BYTES (16 MiB)
		}
		evs := benchEvents(n, size)
		for _, s := range benchSchemas {
			b.Run(fmt.Sprintf("%s/%dB", s.name, size), func(b *testing.B) {
				benchAppendEncode(b, s.cols, evs)
			})
		}
	}
}

func benchAppendEncode(b *testing.B, cols [][2]string, evs []event.Event) {
	fill := benchFillers(b, cols)
	sc := &chcolumn.ServerContext{Timezone: time.UTC}
	var buf proto.Buffer
	b.SetBytes(batchBytes(evs))
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	for b.Loop() {
		buf.Reset()
		for i, c := range cols {
			col, err := chcolumn.Type(c[1]).Column(c[0], sc)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := col.Append(fill[i](evs)); err != nil {
				b.Fatal(err)
			}
			col.Encode(&buf)
		}
	}
	runtime.ReadMemStats(&ms1)
	events := float64(b.N) * float64(len(evs))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/events, "allocs/event")
}

// BenchmarkContextColumn isolates the event_context String column: the
// sink hands the driver [][]byte, which it converts row by row with
// string(v) (an allocation and a copy per event); []string is appended
// without that conversion. Both grow the driver's buffer from empty in
// every batch; "chgo-reused" is the floor: ch-go's ColStr kept across
// batches, so its buffer is sized once.
func BenchmarkContextColumn(b *testing.B) {
	evs := benchEvents(benchBatch, 512)
	asBytes := func() any { return mapEvents(evs, func(e *event.Event) []byte { return e.Context }) }
	strs := mapEvents(evs, func(e *event.Event) string { return string(e.Context) })
	asStrings := func() any { return strs }
	for _, bc := range []struct {
		name   string
		values func() any
	}{{"bytes", asBytes}, {"strings", asStrings}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(batchBytes(evs))
			b.ReportAllocs()
			var ms0 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			for b.Loop() {
				col, err := chcolumn.Type("String").Column("event_context", nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := col.Append(bc.values()); err != nil {
					b.Fatal(err)
				}
			}
			perEvent(b, &ms0)
		})
	}
	b.Run("chgo-reused", func(b *testing.B) {
		var col proto.ColStr
		b.SetBytes(batchBytes(evs))
		b.ReportAllocs()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		for b.Loop() {
			col.Reset()
			for i := range evs {
				col.AppendBytes(evs[i].Context)
			}
		}
		perEvent(b, &ms0)
	})
}
