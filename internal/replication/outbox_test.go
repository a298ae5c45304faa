package replication

import (
	"testing"

	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/config"
)

// defaultOutbox is the migration's public.outbox_event as Describe reads it.
func defaultOutbox() *Outbox {
	o := &Outbox{Name: config.DefaultStreamName, Schema: "public", Table: "outbox_event"}
	cols := []catalogColumn{{"id", oidUUID, "uuid", true}, {"event_type", oidText, "text", true},
		{"event_date_time", oidTimestamptz, "timestamp with time zone", true}, {"environment", oidText, "text", true},
		{"event_context", oidJSONB, "jsonb", true}, {"metadata_version", oidInt8, "bigint", true}}
	if errs := o.resolve(config.DefaultStreams()[0], cols, []string{"id"}); len(errs) > 0 {
		panic(errs)
	}
	return o
}

func TestIdentityIsStableAndPerTable(t *testing.T) {
	a := Identity("public", "core_outboxevent", "42")
	if a != Identity("public", "core_outboxevent", "42") {
		t.Fatal("the same row got two identities")
	}
	for _, other := range [][3]string{{"public", "core_outboxevent", "43"}, {"billing", "core_outboxevent", "42"},
		{"public", "core_outboxevent4", "2"}, {"public.core", "outboxevent", "42"}} {
		if Identity(other[0], other[1], other[2]) == a {
			t.Errorf("Identity%v = Identity(public, core_outboxevent, 42)", other)
		}
	}
	if want := uuid.NewSHA1(identityNamespace, []byte("public.core_outboxevent\x0042")); a != want {
		t.Errorf("Identity = %x, want the RFC 9562 name-based uuid %s", a, want)
	}
	var buf []byte
	if allocs := testing.AllocsPerRun(100, func() { appendIdentity(&buf, "public", "core_outboxevent", "42") }); allocs != 0 {
		t.Errorf("appendIdentity allocates %v times per event", allocs)
	}
	if a[6]>>4 != 5 || a[8]>>6 != 2 {
		t.Errorf("Identity is not a version 5 RFC 4122 uuid: %x", a)
	}
}
