package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/payload"
)

// pgMessage builds a pgoutput 'M' body (after the type byte).
func pgMessage(flags byte, lsn uint64, prefix string, content []byte) []byte {
	b := []byte{flags}
	b = binary.BigEndian.AppendUint64(b, lsn)
	b = append(append(b, prefix...), 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(content)))
	return append(b, content...)
}

// parseMessage agrees with pglogrepl on well-formed input and rejects
// what pglogrepl would slice out of bounds.
func TestParseMessage(t *testing.T) {
	tests := []struct {
		name    string
		src     []byte
		wantErr bool
	}{
		{name: "transactional", src: pgMessage(1, 0x1234, "outbox", []byte("payload"))},
		{name: "non-transactional", src: pgMessage(0, 7, "other", []byte{0, 1, 2})},
		{name: "empty prefix and content", src: pgMessage(1, 1, "", nil)},
		{name: "large content", src: pgMessage(1, 1, "p", bytes.Repeat([]byte{0xff}, 1<<20))},
		{name: "short", src: []byte{1, 0, 0}, wantErr: true},
		{name: "no NUL after prefix", src: append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1}, "prefixprefix"...), wantErr: true},
		{name: "length overruns", src: pgMessage(1, 1, "p", []byte("abc"))[:16], wantErr: true},
		{name: "trailing bytes", src: append(pgMessage(1, 1, "p", []byte("abc")), 'x'), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMessage(tt.src)
			if tt.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatalf("parseMessage: %v", err)
			}
			var want pglogrepl.LogicalDecodingMessage
			if err := want.Decode(tt.src); err != nil {
				t.Fatalf("pglogrepl: %v", err)
			}
			if got.transactional != want.Transactional || got.lsn != uint64(want.LSN) ||
				string(got.prefix) != want.Prefix || !bytes.Equal(got.content, want.Content) {
				t.Errorf("got %+v, pglogrepl %+v", got, want)
			}
		})
	}
}

// A version 2 payload's extra columns become the event's Columns and
// Extra as a table row's do: the shape of a Relation message with the same
// columns (one *event.Columns), values re-framed as binary TupleData,
// NULLs included; a repeated shape is the same pointer.
func TestDecodePayloadExtraColumns(t *testing.T) {
	src := New(Config{MessagePrefix: "p"}, nil, nil, nil, zerolog.Nop(), Hooks{}, nil)
	st := &session{src: src}
	var m pglogrepl.RelationMessage
	cols := []relCol{{"id", oidUUID}, {"event_type", oidText}, {"event_date_time", oidTimestamptz},
		{"environment", oidText}, {"event_context", oidJSONB}, {"metadata_version", oidInt8}, {"amount", 1700}, {"user_id", oidInt8}}
	if err := m.Decode(encodeRelation(testRelID, "public", "outbox_event", cols...)); err != nil {
		t.Fatal(err)
	}
	rel, err := newRelation(&m, defaultOutbox(), 1, map[string]bool{"user_id": true})
	if err != nil {
		t.Fatal(err)
	}
	src.shapes[rel.columns.Key] = rel.columns
	num := []byte{0, 1, 0, 0, 0, 0, 0, 2, 0, 5}
	f := payload.Fields{ID: testID, Type: []byte("t"), Environment: []byte("e"), Context: []byte(`{}`), MetadataVersion: 1}
	p := payload.Append(nil, f, []payload.Column{
		{Name: "amount", TypeOID: 1700, TypeMod: -1, Value: num},
		{Name: "user_id", TypeOID: oidInt8, TypeMod: -1, NotNull: true, Value: binInt8(-42)},
	})
	var ev event.Event
	if err := st.decodePayload(p, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Columns != rel.columns {
		t.Errorf("message shape %+v is not the relation's %+v", ev.Columns, rel.columns)
	}
	want := event.AppendValue(event.AppendValue(nil, event.KindBinary, num), event.KindBinary, binInt8(-42))
	if !bytes.Equal(ev.Extra, want) {
		t.Errorf("Extra = %x, want %x", ev.Extra, want)
	}
	// Another shape (amount NULL, no user_id) is a new one, and stays one.
	p2 := payload.Append(nil, f, []payload.Column{{Name: "amount", TypeOID: 1700, TypeMod: -1}})
	var a, b event.Event
	if err := st.decodePayload(p2, &a); err != nil {
		t.Fatal(err)
	}
	if err := st.decodePayload(p, &ev); err != nil {
		t.Fatal(err)
	}
	if err := st.decodePayload(p2, &b); err != nil {
		t.Fatal(err)
	}
	if a.Columns == nil || a.Columns == rel.columns || a.Columns != b.Columns || len(a.Columns.List) != 1 || a.Columns.Version != 2 {
		t.Errorf("second shape = %+v then %+v, want one new shape of amount", a.Columns, b.Columns)
	}
	if want := event.AppendValue(nil, event.KindNull, nil); !bytes.Equal(a.Extra, want) {
		t.Errorf("NULL Extra = %x, want %x", a.Extra, want)
	}
	// Version 1 carries none.
	var v1 event.Event
	if err := st.decodePayload(payload.Append(nil, f, nil), &v1); err != nil || v1.Columns != nil || v1.Extra != nil {
		t.Errorf("version 1: %v, Columns %v, Extra %x", err, v1.Columns, v1.Extra)
	}
}

// A payload the relay cannot read (unknown version, broken framing, a
// value whose type is not its column's) does not stop the stream: anyone
// may emit a message with the prefix. It becomes an undecodable event
// (dead-lettered with its payload), under an id its position gives.
func TestMessageRejectsBadPayload(t *testing.T) {
	good := payload.Append(nil, payload.Fields{Type: []byte("t"), Environment: []byte("e"), Context: []byte(`{}`)},
		[]payload.Column{{Name: "n", TypeOID: oidInt4, TypeMod: -1, Value: []byte{0, 0, 0, 1}}})
	bad := func(edit func(p []byte)) []byte {
		p := append([]byte{}, good...)
		edit(p)
		return p
	}
	tests := []struct {
		name string
		p    []byte
		want error
	}{
		{name: "version 9", p: bad(func(p []byte) { p[0] = 9 }), want: payload.ErrVersion},
		{name: "value type differs", p: bad(func(p []byte) { p[len(p)-2-8-1] = byte(oidInt8) }), want: payload.ErrMalformed},
		{name: "cut", p: good[:40], want: payload.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := New(Config{MessagePrefix: "p"}, nil, nil, nil, zerolog.Nop(), Hooks{}, nil)
			h := newHandover(make(chan []Item, 1), event.NewBudget(1<<20), time.Second)
			st := &session{src: src, tx: true, h: h}
			if err := st.message(t.Context(), pgMessage(1, 1, "p", tt.p)); err != nil {
				t.Fatalf("message = %v, want it taken as an undecodable event", err)
			}
			if len(h.queued) != 1 {
				t.Fatalf("queued %d items, want the undecodable event", len(h.queued))
			}
			ev := h.queued[0].Event
			if ev.Undecodable == nil || !errors.Is(ev.Undecodable.Err, tt.want) || !bytes.Equal(ev.Undecodable.Raw, tt.p) || !ev.FromMessage {
				t.Fatalf("event: Undecodable %+v (want %v and the payload), FromMessage %v", ev.Undecodable, tt.want, ev.FromMessage)
			}
			again := undecodable(ldMessage{lsn: 1}, 0, time.Time{}, tt.want)
			if again.ID != ev.ID {
				t.Fatalf("the id of an undecodable message differs between two readings of its position")
			}
		})
	}
}

// A refused change to a relay column tells, in message mode, that the
// advised slot drop loses the messages published since.
func TestRelationRefusalWarnsOfMessageLoss(t *testing.T) {
	cols := []relCol{{"id", oidUUID}, {"event_type", oidInt8}, {"event_date_time", oidTimestamptz},
		{"environment", oidText}, {"event_context", oidJSONB}, {"metadata_version", oidInt8}}
	var m pglogrepl.RelationMessage
	if err := m.Decode(encodeRelation(testRelID, "public", "outbox_event", cols...)); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"", "p"} {
		src := New(Config{MessagePrefix: prefix}, nil, nil, nil, zerolog.Nop(), Hooks{}, nil)
		_, err := src.newRelation(context.Background(), &m, defaultOutbox())
		if !errors.Is(err, event.ErrSchema) {
			t.Fatalf("prefix %q: err = %v, want ErrSchema", prefix, err)
		}
		if got := strings.Contains(err.Error(), "events may have been lost"); got != (prefix != "") {
			t.Errorf("prefix %q: warns of message loss = %v:\n%v", prefix, got, err)
		}
	}
}
