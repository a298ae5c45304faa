package clickhouse

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	chcolumn "github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/topology"
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

func benchColumns(b *testing.B, cols [][2]string) []*relayColumn {
	b.Helper()
	out := make([]*relayColumn, len(cols))
	for i, c := range cols {
		col, ok := newColumn(c[0], c[1])
		if !ok {
			b.Fatalf("no column for %s %s", c[0], c[1])
		}
		out[i] = col
	}
	return out
}

// perEvent reports ns/event and allocs/event for ops of n events.
func perEvent(b *testing.B, ms0 *runtime.MemStats, n int) {
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	events := float64(b.N) * float64(n)
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

// benchSizes are the batches of make bench: 10,000 events of 512 B, and 256
// of 64 KiB (cut by RELAY_BATCH_BYTES, 16 MiB).
var benchSizes = []struct{ n, size int }{{benchBatch, 512}, {256, 64 << 10}}

// BenchmarkFillEncode is the client-side CPU of Sink.Write without the
// network: fill the kept columns from a batch and encode the block into the
// kept buffer. One op is one batch.
func BenchmarkFillEncode(b *testing.B) {
	for _, sz := range benchSizes {
		evs := benchEvents(sz.n, sz.size)
		for _, s := range benchSchemas {
			b.Run(fmt.Sprintf("%s/%dB", s.name, sz.size), func(b *testing.B) {
				cols := benchColumns(b, s.cols)
				inputs := make([]proto.InputColumn, len(cols))
				for i, c := range cols {
					inputs[i] = c.input()
				}
				var buf proto.Buffer
				encode := func() {
					buf.Reset()
					for _, c := range cols {
						c.fill(evs)
					}
					blk := proto.Block{Columns: len(inputs), Rows: len(evs)}
					if err := blk.EncodeBlock(&buf, insertRevision, inputs); err != nil {
						b.Fatal(err)
					}
				}
				encode() // the kept buffers grow once, as in the relay's first batch
				b.SetBytes(batchBytes(evs))
				b.ReportAllocs()
				var ms0 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				for b.Loop() {
					encode()
				}
				perEvent(b, &ms0, len(evs))
			})
		}
	}
}

// BenchmarkDriverAppendEncode is the same work done the way clickhouse-go's
// Batch does it (the sink's former path, kept as the baseline): new columns
// for every INSERT, one typed Go slice per column appended to them, and the
// block encoded into the connection's buffer.
func BenchmarkDriverAppendEncode(b *testing.B) {
	for _, sz := range benchSizes {
		evs := benchEvents(sz.n, sz.size)
		for _, s := range benchSchemas {
			b.Run(fmt.Sprintf("%s/%dB", s.name, sz.size), func(b *testing.B) {
				sc := &chcolumn.ServerContext{Timezone: time.UTC}
				var buf proto.Buffer
				b.SetBytes(batchBytes(evs))
				b.ReportAllocs()
				var ms0 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				for b.Loop() {
					buf.Reset()
					for _, c := range s.cols {
						col, err := chcolumn.Type(c[1]).Column(c[0], sc)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := col.Append(driverValues(c[0], c[1], evs)); err != nil {
							b.Fatal(err)
						}
						col.Encode(&buf)
					}
				}
				perEvent(b, &ms0, len(evs))
			})
		}
	}
}

// driverValues is a column's values as the sink used to hand them to the
// driver: one typed slice per column and batch.
func driverValues(name, typ string, evs []event.Event) any {
	switch {
	case name == "event_id":
		return mapEvents(evs, func(e *event.Event) uuid.UUID { return e.ID })
	case name == "event_type":
		return mapEvents(evs, func(e *event.Event) string { return e.Type })
	case name == "environment":
		return mapEvents(evs, func(e *event.Event) string { return e.Environment })
	case name == "event_context":
		return mapEvents(evs, func(e *event.Event) []byte { return e.Context })
	case name == "event_date_time" && strings.HasPrefix(typ, "DateTime64"):
		return mapEvents(evs, func(e *event.Event) time.Time { return e.OccurredAt })
	case name == "event_date_time":
		return mapEvents(evs, func(e *event.Event) time.Time { return e.OccurredAt.Truncate(time.Second) })
	case name == "event_date_time_us":
		return mapEvents(evs, func(e *event.Event) uint32 { return uint32(e.OccurredAt.Nanosecond() / 1000) })
	case name == "metadata_version":
		return mapEvents(evs, func(e *event.Event) uint64 { return uint64(e.MetadataVersion) })
	default:
		return mapEvents(evs, func(e *event.Event) uint64 { return e.CommitLSN })
	}
}

func mapEvents[T any](evs []event.Event, f func(*event.Event) T) []T {
	out := make([]T, len(evs))
	for i := range evs {
		out[i] = f(&evs[i])
	}
	return out
}

// benchExtra are five extra columns (bigint, uuid, numeric(12,2), text,
// timestamptz), their event_log types on 18.16, and a row's binary values.
var benchExtra = []struct {
	col    event.Column
	chType string
	val    []byte
}{
	{event.Column{Name: "user_id", TypeOID: oidInt8}, "Nullable(Int64)", []byte{0, 0, 0, 0, 0, 0, 16, 146}},
	{event.Column{Name: "tenant_id", TypeOID: oidUUID}, "Nullable(UUID)", []byte("fedcba9876543210")},
	{event.Column{Name: "amount", TypeOID: oidNumeric, TypeMod: 12<<16 | 2 + 4}, "Nullable(Decimal(12, 2))", []byte{0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 13, 172}},
	{event.Column{Name: "request_id", TypeOID: oidText}, "Nullable(String)", []byte("req-6f1c2a9e-5b7d-4e1a")},
	{event.Column{Name: "created_at", TypeOID: oidTimestamptz}, "Nullable(String)", []byte{0, 2, 205, 139, 119, 230, 240, 0}},
}

// BenchmarkFillEncodeExtraColumns is BenchmarkFillEncode's 512 B batch on
// 18.16 with none and with five extra columns: the cost the extra columns
// add to writing a batch. One op is one batch.
func BenchmarkFillEncodeExtraColumns(b *testing.B) {
	for _, extra := range []int{0, 5} {
		b.Run(fmt.Sprintf("extra%d", extra), func(b *testing.B) {
			evs := benchEvents(benchBatch, 512)
			x := newExtras(EvolveAdd, topology.Layout{}, Caps{})
			p := &plan{}
			var list []event.Column
			var row []byte
			for _, c := range benchExtra[:extra] {
				col, err := x.column(c.col, c.chType)
				if err != nil {
					b.Fatal(err)
				}
				p.targets = append(p.targets, col)
				list = append(list, c.col)
				row = event.AppendValue(row, event.KindBinary, c.val)
			}
			if extra > 0 {
				shape := event.NewColumns(1, list)
				x.plans[shape.Key] = p
				for i := range evs {
					evs[i].Columns, evs[i].Extra = shape, append([]byte(nil), row...)
				}
			}
			own := benchColumns(b, benchSchemas[0].cols)
			ownInputs := make([]proto.InputColumn, len(own))
			for i, c := range own {
				ownInputs[i] = c.input()
			}
			var buf proto.Buffer
			encode := func() {
				buf.Reset()
				n, cols := x.run(evs)
				if n != len(evs) {
					b.Fatalf("run = %d of %d events", n, len(evs))
				}
				if err := x.fill(evs, cols); err != nil {
					b.Fatal(err)
				}
				for _, c := range own {
					c.fill(evs)
				}
				_, inputs := x.query("event_log", own, ownInputs, cols)
				blk := proto.Block{Columns: len(inputs), Rows: len(evs)}
				if err := blk.EncodeBlock(&buf, insertRevision, inputs); err != nil {
					b.Fatal(err)
				}
				for _, c := range cols {
					c.enc.Reset()
				}
			}
			encode()
			b.SetBytes(batchBytes(evs))
			b.ReportAllocs()
			var ms0 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			for b.Loop() {
				encode()
			}
			perEvent(b, &ms0, len(evs))
		})
	}
}
