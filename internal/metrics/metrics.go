// Package metrics holds the Prometheus collectors the relay exports.
//
// Nothing here touches the global default registry: New creates a private
// *prometheus.Registry, registers every relay collector on it (plus the Go
// runtime and process collectors) and Handler serves exactly that registry.
// This keeps tests hermetic and lets several relays live in one process.
//
// Every relay metric family is prefixed "outbox_relay_"; Names lists them
// all, and the docker/ tests check that the alert rules and the Grafana
// dashboard reference only those names.
package metrics

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace is the prefix (followed by "_") of every relay metric family.
const Namespace = "outbox_relay"

// Label values of SinkErrorsTotal's "class" label.
const (
	// SinkErrorRetryable marks a ClickHouse error that the relay retries
	// (network failures, timeouts, server overload).
	SinkErrorRetryable = "retryable"
	// SinkErrorFatal marks a ClickHouse error that retrying cannot fix
	// (schema mismatch, authentication, malformed data).
	SinkErrorFatal = "fatal"
	// SinkErrorRejected counts events the sink refused for their content;
	// they are moved to outbox_dead_letter.
	SinkErrorRejected = "rejected"
)

// Label values of WALStatus's "status" label. The first four are the values
// of pg_replication_slots.wal_status; WALStatusMissing means the replication
// slot does not exist at all.
const (
	WALStatusReserved   = "reserved"
	WALStatusExtended   = "extended"
	WALStatusUnreserved = "unreserved"
	WALStatusLost       = "lost"
	WALStatusMissing    = "missing"
)

// WALStatuses lists every value of WALStatus's "status" label, in order.
func WALStatuses() []string {
	return []string{WALStatusReserved, WALStatusExtended, WALStatusUnreserved, WALStatusLost, WALStatusMissing}
}

// SinkErrorClasses lists every value of SinkErrorsTotal's "class" label.
func SinkErrorClasses() []string {
	return []string{SinkErrorRetryable, SinkErrorFatal, SinkErrorRejected}
}

// Metric family names, as exposed on /metrics.
const (
	NameEventsTotal           = "outbox_relay_events_total"
	NameBytesTotal            = "outbox_relay_bytes_total"
	NameBatchesTotal          = "outbox_relay_batches_total"
	NameBatchEvents           = "outbox_relay_batch_events"
	NameFlushDuration         = "outbox_relay_flush_duration_seconds"
	NameEndToEndLag           = "outbox_relay_end_to_end_lag_seconds"
	NameSlotLagBytes          = "outbox_relay_slot_lag_bytes"
	NameRetainedWALBytes      = "outbox_relay_retained_wal_bytes"
	NameWALStatus             = "outbox_relay_wal_status"
	NameBufferEvents          = "outbox_relay_buffer_events"
	NameBufferBytes           = "outbox_relay_buffer_bytes"
	NameAckedLSN              = "outbox_relay_acked_lsn"
	NameLastAckTimestamp      = "outbox_relay_last_ack_timestamp_seconds"
	NameStreamConnected       = "outbox_relay_stream_connected"
	NameClickHouseUp          = "outbox_relay_clickhouse_up"
	NameSinkErrorsTotal       = "outbox_relay_sink_errors_total"
	NameRowsDeletedTotal      = "outbox_relay_rows_deleted_total"
	NameReconnectsTotal       = "outbox_relay_reconnects_total"
	NameBackfilledEventsTotal = "outbox_relay_backfilled_events_total"
	NameDeadLetterEventsTotal = "outbox_relay_dead_letter_events_total"
	NameMessagesIgnoredTotal  = "outbox_relay_messages_ignored_total"
	NameLastFlushTimestamp    = "outbox_relay_last_flush_timestamp_seconds"
	NameLastFlushEvents       = "outbox_relay_last_flush_events"
	NameLastFlushBytes        = "outbox_relay_last_flush_bytes"
	NameStreamEvents          = "outbox_relay_stream_events_total"
	NameStreamDeadLetters     = "outbox_relay_stream_dead_letters_total"
	NameTableGuarantee        = "outbox_relay_table_guarantee"
)

// Names returns the name of every metric family the relay itself exports
// (the Go runtime and process families are not included). Histogram names
// are the family names, without the _bucket/_sum/_count series suffixes.
func Names() []string {
	return []string{
		NameEventsTotal,
		NameBytesTotal,
		NameBatchesTotal,
		NameBatchEvents,
		NameFlushDuration,
		NameEndToEndLag,
		NameSlotLagBytes,
		NameRetainedWALBytes,
		NameWALStatus,
		NameStreamEvents,
		NameStreamDeadLetters,
		NameTableGuarantee,
		NameBufferEvents,
		NameBufferBytes,
		NameAckedLSN,
		NameLastAckTimestamp,
		NameStreamConnected,
		NameClickHouseUp,
		NameSinkErrorsTotal,
		NameRowsDeletedTotal,
		NameReconnectsTotal,
		NameBackfilledEventsTotal,
		NameDeadLetterEventsTotal,
		NameMessagesIgnoredTotal,
		NameLastFlushTimestamp,
		NameLastFlushEvents,
		NameLastFlushBytes,
	}
}

// HistogramNames returns the subset of Names that are histograms (whose
// series carry the _bucket, _sum and _count suffixes).
func HistogramNames() []string {
	return []string{NameBatchEvents, NameFlushDuration, NameEndToEndLag}
}

// Bucket layouts.
var (
	// batchEventsBuckets: 1, 2, 5, 10, ... 100000 events (log-spaced).
	batchEventsBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000}
	// flushDurationBuckets: 1ms doubling up to ~65s.
	flushDurationBuckets = prometheus.ExponentialBuckets(0.001, 2, 17)
	// endToEndLagBuckets: 1ms up to 5 minutes.
	endToEndLagBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}
)

// Metrics holds every collector the relay exports. Create it with New; the
// zero value is not usable. All fields are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	// EventsTotal counts outbox events delivered to ClickHouse
	// (outbox_relay_events_total).
	EventsTotal prometheus.Counter
	// BytesTotal counts payload bytes of the events delivered to ClickHouse
	// (outbox_relay_bytes_total).
	BytesTotal prometheus.Counter
	// BatchesTotal counts batches flushed to ClickHouse successfully
	// (outbox_relay_batches_total).
	BatchesTotal prometheus.Counter

	// BatchEvents observes the number of events in each flushed batch
	// (outbox_relay_batch_events; buckets 1 … 100000).
	BatchEvents prometheus.Histogram
	// FlushDuration observes how long one batch insert into ClickHouse took,
	// in seconds (outbox_relay_flush_duration_seconds; buckets 1ms … ~65s).
	FlushDuration prometheus.Histogram
	// EndToEndLag observes, per event, the seconds between the Postgres
	// commit time of its transaction and ClickHouse accepting the batch
	// (outbox_relay_end_to_end_lag_seconds; buckets 1ms … 5min).
	EndToEndLag prometheus.Histogram

	// SlotLagBytes is the distance in bytes between the server's current WAL
	// position and the slot's confirmed_flush_lsn
	// (outbox_relay_slot_lag_bytes).
	SlotLagBytes prometheus.Gauge
	// RetainedWALBytes is the WAL, in bytes, the slot keeps on the server
	// (current WAL position minus restart_lsn)
	// (outbox_relay_retained_wal_bytes).
	RetainedWALBytes prometheus.Gauge
	// WALStatus is 1 for the slot's current pg_replication_slots.wal_status
	// and 0 for the other values (outbox_relay_wal_status{status}). Set it
	// with SetWALStatus.
	WALStatus *prometheus.GaugeVec
	// BufferEvents is the number of events decoded and not yet accepted
	// by ClickHouse, a batch being written included (outbox_relay_buffer_events).
	BufferEvents prometheus.Gauge
	// BufferBytes is the bytes of those events (outbox_relay_buffer_bytes).
	BufferBytes prometheus.Gauge
	// AckedLSN is the last LSN confirmed to Postgres as flushed, as a
	// number (outbox_relay_acked_lsn).
	AckedLSN prometheus.Gauge
	// LastAckTimestamp is the Unix time, in seconds, of the last LSN
	// acknowledgement (outbox_relay_last_ack_timestamp_seconds).
	LastAckTimestamp prometheus.Gauge
	// StreamConnected is 1 while the replication stream is connected, else 0
	// (outbox_relay_stream_connected).
	StreamConnected prometheus.Gauge
	// ClickHouseUp is 1 while ClickHouse answers, else 0
	// (outbox_relay_clickhouse_up).
	ClickHouseUp prometheus.Gauge

	// SinkErrorsTotal counts failed ClickHouse inserts by class, "retryable"
	// or "fatal" (outbox_relay_sink_errors_total{class}).
	SinkErrorsTotal *prometheus.CounterVec
	// RowsDeletedTotal counts delivered outbox_event rows deleted from
	// Postgres (outbox_relay_rows_deleted_total).
	RowsDeletedTotal prometheus.Counter
	// ReconnectsTotal counts reconnections of the replication stream
	// (outbox_relay_reconnects_total).
	ReconnectsTotal prometheus.Counter
	// BackfilledEventsTotal counts events delivered by the backfill of rows
	// left in outbox_event rather than from the replication stream
	// (outbox_relay_backfilled_events_total).
	BackfilledEventsTotal prometheus.Counter
	// DeadLetterEventsTotal counts events that could not be delivered and
	// were set aside (outbox_relay_dead_letter_events_total).
	DeadLetterEventsTotal prometheus.Counter
	// MessagesIgnoredTotal counts logical decoding messages that were not
	// events, by reason (other_prefix, non_transactional); message mode only.
	MessagesIgnoredTotal *prometheus.CounterVec

	// LastFlushTimestamp, LastFlushEvents and LastFlushBytes describe the
	// last batch ClickHouse accepted: when, how many events, how many bytes
	// (outbox_relay_last_flush_timestamp_seconds, _events, _bytes).
	LastFlushTimestamp, LastFlushEvents, LastFlushBytes prometheus.Gauge

	// StreamEvents counts the events ClickHouse took, by stream and table
	// (outbox_relay_stream_events_total{stream,table}).
	StreamEvents *prometheus.CounterVec
	// StreamDeadLetters counts dead-lettered events by stream
	// (outbox_relay_stream_dead_letters_total{stream}).
	StreamDeadLetters *prometheus.CounterVec
	// TableGuarantee is 1 for the delivery guarantee each ClickHouse table
	// gives (exactly_once, exactly_once_through_final, at_least_once), 0
	// for the others (outbox_relay_table_guarantee{stream,table,guarantee}).
	TableGuarantee *prometheus.GaugeVec
}

// New creates a Metrics whose collectors, together with the Go runtime and
// process collectors, are registered on a fresh private registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,

		EventsTotal:  counter(NameEventsTotal, "Outbox events delivered to ClickHouse."),
		BytesTotal:   counter(NameBytesTotal, "Payload bytes of the outbox events delivered to ClickHouse."),
		BatchesTotal: counter(NameBatchesTotal, "Batches flushed to ClickHouse successfully."),

		BatchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    NameBatchEvents,
			Help:    "Number of events in each batch flushed to ClickHouse.",
			Buckets: batchEventsBuckets,
		}),
		FlushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    NameFlushDuration,
			Help:    "Time taken by one batch insert into ClickHouse.",
			Buckets: flushDurationBuckets,
		}),
		EndToEndLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    NameEndToEndLag,
			Help:    "Time from the Postgres commit of an event to ClickHouse accepting it.",
			Buckets: endToEndLagBuckets,
		}),

		SlotLagBytes:     gauge(NameSlotLagBytes, "Bytes between the current WAL position and the slot's confirmed_flush_lsn."),
		RetainedWALBytes: gauge(NameRetainedWALBytes, "Bytes of WAL retained on the server for the slot (current WAL position minus restart_lsn)."),
		WALStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: NameWALStatus,
			Help: "1 for the replication slot's current wal_status (missing: no slot), 0 for the others.",
		}, []string{"status"}),
		BufferEvents:     gauge(NameBufferEvents, "Events decoded and held (buffered, or in a batch being written) until ClickHouse accepted them."),
		BufferBytes:      gauge(NameBufferBytes, "Bytes of events (payload plus per-event overhead, as RELAY_BATCH_BYTES counts them) held until ClickHouse accepted them."),
		AckedLSN:         gauge(NameAckedLSN, "Last LSN acknowledged to Postgres as flushed, as a number."),
		LastAckTimestamp: gauge(NameLastAckTimestamp, "Unix time of the last LSN acknowledgement to Postgres."),
		StreamConnected:  gauge(NameStreamConnected, "1 while the logical replication stream is connected, else 0."),
		ClickHouseUp:     gauge(NameClickHouseUp, "1 while ClickHouse is reachable, else 0."),

		SinkErrorsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: NameSinkErrorsTotal,
			Help: "Failed ClickHouse inserts by error class (retryable, fatal, or events rejected for their content).",
		}, []string{"class"}),
		RowsDeletedTotal:      counter(NameRowsDeletedTotal, "Delivered outbox_event rows deleted from Postgres."),
		ReconnectsTotal:       counter(NameReconnectsTotal, "Reconnections of the logical replication stream."),
		BackfilledEventsTotal: counter(NameBackfilledEventsTotal, "Events delivered by backfilling rows left in outbox_event."),
		DeadLetterEventsTotal: counter(NameDeadLetterEventsTotal, "Events that could not be delivered and were set aside as dead letters."),
		MessagesIgnoredTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: NameMessagesIgnoredTotal,
			Help: "Logical decoding messages streamed in message mode that are not events: another prefix, or not transactional.",
		}, []string{"reason"}),
		LastFlushTimestamp: gauge(NameLastFlushTimestamp, "Unix time at which ClickHouse accepted the last batch."),
		LastFlushEvents:    gauge(NameLastFlushEvents, "Events in the last batch ClickHouse accepted."),
		LastFlushBytes:     gauge(NameLastFlushBytes, "Payload bytes of the last batch ClickHouse accepted."),
		StreamEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: NameStreamEvents, Help: "Events ClickHouse took, by stream and table.",
		}, []string{"stream", "table"}),
		StreamDeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: NameStreamDeadLetters, Help: "Events set aside as dead letters, by stream.",
		}, []string{"stream"}),
		TableGuarantee: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: NameTableGuarantee, Help: "1 for the delivery guarantee a ClickHouse table gives a stream (exactly_once, exactly_once_through_final, at_least_once).",
		}, []string{"stream", "table", "guarantee"}),
	}

	// Expose every label value from the start, so that dashboards and
	// alerts see 0 rather than no series.
	for _, class := range SinkErrorClasses() {
		m.SinkErrorsTotal.WithLabelValues(class)
	}
	for _, reason := range []string{"other_prefix", "non_transactional"} {
		m.MessagesIgnoredTotal.WithLabelValues(reason)
	}
	for _, s := range WALStatuses() {
		m.WALStatus.WithLabelValues(s).Set(0)
	}

	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.EventsTotal,
		m.BytesTotal,
		m.BatchesTotal,
		m.BatchEvents,
		m.FlushDuration,
		m.EndToEndLag,
		m.SlotLagBytes,
		m.RetainedWALBytes,
		m.WALStatus,
		m.StreamEvents,
		m.StreamDeadLetters,
		m.TableGuarantee,
		m.BufferEvents,
		m.BufferBytes,
		m.AckedLSN,
		m.LastAckTimestamp,
		m.StreamConnected,
		m.ClickHouseUp,
		m.SinkErrorsTotal,
		m.RowsDeletedTotal,
		m.ReconnectsTotal,
		m.BackfilledEventsTotal,
		m.DeadLetterEventsTotal,
		m.MessagesIgnoredTotal,
		m.LastFlushTimestamp,
		m.LastFlushEvents,
		m.LastFlushBytes,
	)
	return m
}

// Registry returns the private registry every collector is registered on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats; mount it
// at /metrics. It also counts its own scrapes and errors.
func (m *Metrics) Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	}))
}

// SetWALStatus sets outbox_relay_wal_status to 1 for status s and to 0 for
// every other status. s is matched case-insensitively against WALStatuses;
// an empty s (no slot row) counts as "missing", and any other unknown value
// sets every status to 0, so the label set stays bounded.
func (m *Metrics) SetWALStatus(s string) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		s = WALStatusMissing
	}
	for _, v := range WALStatuses() {
		if v == s {
			m.WALStatus.WithLabelValues(v).Set(1)
		} else {
			m.WALStatus.WithLabelValues(v).Set(0)
		}
	}
}

// SetStreamConnected sets outbox_relay_stream_connected to 1 or 0.
func (m *Metrics) SetStreamConnected(up bool) { m.StreamConnected.Set(boolToFloat(up)) }

// SetClickHouseUp sets outbox_relay_clickhouse_up to 1 or 0.
func (m *Metrics) SetClickHouseUp(up bool) { m.ClickHouseUp.Set(boolToFloat(up)) }

func boolToFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// StreamFamilies are the families whose series are the streams' and their
// tables': they appear once relay run declares its streams.
func StreamFamilies() []string {
	return []string{NameStreamEvents, NameStreamDeadLetters, NameTableGuarantee}
}

// DeclareStream creates a stream's series at 0 (tables: its ClickHouse
// tables known at start), so dashboards see them before the first event.
func (m *Metrics) DeclareStream(stream string, tables []string) {
	m.StreamDeadLetters.WithLabelValues(stream)
	for _, t := range tables {
		m.StreamEvents.WithLabelValues(stream, t)
	}
}

// The delivery guarantees a ClickHouse table gives (label values of
// outbox_relay_table_guarantee).
const (
	GuaranteeExactlyOnce      = "exactly_once"
	GuaranteeExactlyOnceFinal = "exactly_once_through_final"
	GuaranteeAtLeastOnce      = "at_least_once"
)

// SetGuarantee sets the stream's table's guarantee to 1 and the others to 0.
func (m *Metrics) SetGuarantee(stream, table, guarantee string) {
	for _, g := range []string{GuaranteeExactlyOnce, GuaranteeExactlyOnceFinal, GuaranteeAtLeastOnce} {
		v := 0.0
		if g == guarantee {
			v = 1
		}
		m.TableGuarantee.WithLabelValues(stream, table, g).Set(v)
	}
}
