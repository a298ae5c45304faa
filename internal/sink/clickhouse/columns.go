package clickhouse

import (
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/event"
)

// filler returns how to build a column's values from a batch, for the
// columns the relay knows. Each builds one slice per batch (columnar append,
// no per-row reflection).
func filler(name, typ string) (func([]event.Event) any, bool) {
	base := typ
	if i := strings.IndexByte(typ, '('); i >= 0 {
		base = typ[:i]
	}
	switch {
	case name == "event_id" && base == "UUID":
		return func(evs []event.Event) any {
			return mapEvents(evs, func(e *event.Event) uuid.UUID { return e.ID })
		}, true
	case name == "event_id" && base == "String":
		return func(evs []event.Event) any {
			return mapEvents(evs, func(e *event.Event) string { return uuid.UUID(e.ID).String() })
		}, true
	case name == "event_type" && base == "String":
		return func(evs []event.Event) any { return mapEvents(evs, func(e *event.Event) string { return e.Type }) }, true
	case name == "environment" && base == "String":
		return func(evs []event.Event) any {
			return mapEvents(evs, func(e *event.Event) string { return e.Environment })
		}, true
	case name == "event_context" && base == "String":
		return func(evs []event.Event) any { return mapEvents(evs, func(e *event.Event) []byte { return e.Context }) }, true
	case name == "event_date_time" && base == "DateTime64":
		return func(evs []event.Event) any {
			return mapEvents(evs, func(e *event.Event) time.Time { return e.OccurredAt })
		}, true
	case name == "event_date_time" && base == "DateTime":
		return func(evs []event.Event) any {
			return mapEvents(evs, func(e *event.Event) time.Time { return e.OccurredAt.Truncate(time.Second) })
		}, true
	case name == "event_date_time_us" && base == "UInt32":
		return func(evs []event.Event) any {
			return mapEvents(evs, func(e *event.Event) uint32 { return uint32(e.OccurredAt.Nanosecond() / 1000) })
		}, true
	case name == "metadata_version" && base == "UInt64":
		return func(evs []event.Event) any {
			return mapEvents(evs, func(e *event.Event) uint64 { return uint64(e.MetadataVersion) })
		}, true
	case name == "metadata_version" && base == "Int64":
		return func(evs []event.Event) any {
			return mapEvents(evs, func(e *event.Event) int64 { return e.MetadataVersion })
		}, true
	case name == "commit_lsn" && base == "UInt64":
		return func(evs []event.Event) any { return mapEvents(evs, func(e *event.Event) uint64 { return e.CommitLSN }) }, true
	}
	return nil, false
}

func mapEvents[T any](evs []event.Event, f func(*event.Event) T) []T {
	out := make([]T, len(evs))
	for i := range evs {
		out[i] = f(&evs[i])
	}
	return out
}
