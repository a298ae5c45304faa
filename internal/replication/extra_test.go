package replication

import (
	"bytes"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outbox-relay/relay/internal/event"
)

// Extra columns, wherever they sit among the relay's, reach the event in
// the relation's order with their kinds and bytes, NULLs included; the
// shape says their names, types and NOT NULL.
func TestDecodeInsertExtraColumns(t *testing.T) {
	cols := []relCol{{"tenant", oidText}, {"id", oidUUID}, {"event_type", oidText}, {"event_date_time", oidTimestamptz},
		{"environment", oidText}, {"event_context", oidJSONB}, {"metadata_version", oidInt8}, {"amount", 1700}, {"user_id", oidInt8}}
	var m pglogrepl.RelationMessage
	if err := m.Decode(encodeRelation(testRelID, "public", "outbox_event", cols...)); err != nil {
		t.Fatal(err)
	}
	r, err := newRelation(&m, defaultOutbox(), 7, map[string]bool{"user_id": true})
	if err != nil {
		t.Fatal(err)
	}
	wantCols := []event.Column{{Name: "tenant", TypeOID: oidText, TypeMod: -1}, {Name: "amount", TypeOID: 1700, TypeMod: -1}, {Name: "user_id", TypeOID: oidInt8, TypeMod: -1, NotNull: true}}
	if r.columns == nil || r.columns.Version != 7 || len(r.columns.List) != len(wantCols) {
		t.Fatalf("columns = %+v, want version 7 with %+v", r.columns, wantCols)
	}
	for i, c := range wantCols {
		if got := r.columns.List[i]; got != c {
			t.Errorf("column %d = %+v, want %+v", i, got, c)
		}
	}
	msg := encodeInsert(testRelID, kind('t', "acme"),
		bin(binUUID(testID)), bin([]byte("order.created")), bin(binTimestamp(testTime)),
		bin([]byte("prod")), bin(binJSONB(`{"a":1}`)), bin(binInt8(3)), null(), bin(binInt8(-42)))
	var ev event.Event
	if err := r.decodeInsert(msg, &ev, pgtype.NewMap()); err != nil {
		t.Fatal(err)
	}
	assertEvent(t, ev, wantEvent())
	if ev.Columns != r.columns {
		t.Errorf("event's Columns = %p, want the relation's %p", ev.Columns, r.columns)
	}
	type val struct {
		kind byte
		v    []byte
	}
	var got []val
	if err := event.Values(ev.Extra, func(_ int, kind byte, v []byte) error {
		got = append(got, val{kind, append([]byte(nil), v...)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []val{{'t', []byte("acme")}, {'n', nil}, {'b', binInt8(-42)}}
	if len(got) != len(want) {
		t.Fatalf("extra values = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].kind != want[i].kind || !bytes.Equal(got[i].v, want[i].v) {
			t.Errorf("extra value %d = %c %x, want %c %x", i, got[i].kind, got[i].v, want[i].kind, want[i].v)
		}
	}
	// The values are the event's own, not a view into the message.
	for i := range msg {
		msg[i] = 0
	}
	if err := event.Values(ev.Extra, func(i int, _ byte, v []byte) error {
		if i == 2 && !bytes.Equal(v, binInt8(-42)) {
			t.Errorf("extra value 2 changed with the message: %x", v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// The relay's own table has no extra columns: events carry none.
func TestDecodeInsertNoExtraColumns(t *testing.T) {
	r := mustRelation(t, outboxCols()...)
	if r.columns != nil {
		t.Fatalf("columns = %+v, want nil", r.columns)
	}
	var ev event.Event
	if err := r.decodeInsert(validBinary(), &ev, pgtype.NewMap()); err != nil {
		t.Fatal(err)
	}
	if ev.Columns != nil || ev.Extra != nil {
		t.Errorf("Columns = %v, Extra = %x; want none", ev.Columns, ev.Extra)
	}
}
