package payload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		f       Fields
		cols    []Column
		version byte
	}{
		{name: "minimal", f: Fields{Type: []byte("t"), Environment: []byte("e"), Context: []byte("{}"), MetadataVersion: 1}, version: Version1},
		{name: "every field", f: Fields{
			ID:               [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
			OccurredAtMicros: -62135596800000000, // 0001-01-01
			MetadataVersion:  1<<63 - 1,
			Type:             []byte("user_created ü"),
			Environment:      []byte(strings.Repeat("p", 300)), // two-byte length
			Context:          []byte(`{"a":[1,2,{"b":null}]}`),
		}, version: Version1},
		{name: "extra columns", f: Fields{Type: []byte("t"), Environment: []byte("e"), Context: []byte(`1`)},
			cols: []Column{
				{Name: "user_id", TypeOID: 20, TypeMod: -1, NotNull: true, Value: []byte{0, 0, 0, 0, 0, 0, 0, 42}},
				{Name: "tenant", TypeOID: 25, TypeMod: -1},
				{Name: "empty", TypeOID: 25, TypeMod: -1, Value: []byte{}},
				{Name: "amount", TypeOID: 1700, TypeMod: 12<<16 | 2 + 4, Value: []byte{0, 1, 0, 0, 0, 0, 0, 2, 0, 5}},
			}, version: Version2},
		{name: "large context", f: Fields{Type: []byte("t"), Environment: []byte("e"), Context: bytes.Repeat([]byte("x"), 5<<20)}, version: Version1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Append(nil, tt.f, tt.cols)
			if len(b) != Size(tt.f, tt.cols) {
				t.Errorf("len = %d, Size = %d", len(b), Size(tt.f, tt.cols))
			}
			if b[0] != tt.version {
				t.Errorf("version = %d, want %d", b[0], tt.version)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got.ID != tt.f.ID || got.OccurredAtMicros != tt.f.OccurredAtMicros || got.MetadataVersion != tt.f.MetadataVersion ||
				!bytes.Equal(got.Type, tt.f.Type) || !bytes.Equal(got.Environment, tt.f.Environment) || !bytes.Equal(got.Context, tt.f.Context) {
				t.Errorf("decoded fields differ")
			}
			cols := got.Columns()
			err = got.Values(func(i int, val []byte, null bool) error {
				if !null {
					cols[i].Value = val
				}
				return nil
			})
			if err != nil {
				t.Fatalf("Values: %v", err)
			}
			if len(cols) != len(tt.cols) {
				t.Fatalf("columns = %d, want %d", len(cols), len(tt.cols))
			}
			for i, c := range cols {
				w := tt.cols[i]
				if c.Name != w.Name || c.TypeOID != w.TypeOID || c.TypeMod != w.TypeMod || c.NotNull != w.NotNull ||
					(c.Value == nil) != (w.Value == nil) || !bytes.Equal(c.Value, w.Value) {
					t.Errorf("column %d = %+v, want %+v", i, c, w)
				}
			}
		})
	}
}

// A writer that has PostgreSQL encode the values (the outbox package)
// sends head, values and context separately: together they are Append's.
func TestAppendHeadShapeValues(t *testing.T) {
	f := Fields{ID: [16]byte{9}, Type: []byte("t"), Environment: []byte("env"), Context: []byte(`{"a":1}`), MetadataVersion: 2}
	cols := []Column{{Name: "a", TypeOID: 23, TypeMod: -1, Value: []byte{0, 0, 0, 7}}, {Name: "b", TypeOID: 25, TypeMod: -1}}
	parts := append(AppendHead(nil, f, AppendShape(nil, cols)), AppendValues(nil, cols)...)
	parts = append(parts, f.Context...)
	if want := Append(nil, f, cols); !bytes.Equal(parts, want) {
		t.Fatalf("head+values+context = %x, want %x", parts, want)
	}
	if got, want := AppendHead(nil, f, nil), Append(nil, f, nil); !bytes.Equal(append(got, f.Context...), want) {
		t.Fatalf("version 1 head+context = %x, want %x", got, want)
	}
}

// Payloads of version 1 as relays before version 2 read them, and as
// publishers of then wrote them, decode unchanged; the reserved untyped
// extra columns are read past.
func TestDecodeVersion1(t *testing.T) {
	head := []byte{1}
	head = append(head, bytes.Repeat([]byte{0xab}, 16)...)
	head = binary.BigEndian.AppendUint64(head, 1700000000000000)
	head = binary.BigEndian.AppendUint64(head, 3)
	head = append(head, 4, 't', 'y', 'p', 'e', 3, 'e', 'n', 'v')
	tests := []struct {
		name   string
		extras []byte
	}{
		{name: "as written", extras: []byte{0}},
		{name: "reserved untyped columns", extras: []byte{2, 1, 'a', 1, 2, '4', '2', 1, 'b', 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := append(append(append([]byte{}, head...), tt.extras...), `{"k":"v"}`...)
			f, err := Decode(p)
			if err != nil {
				t.Fatal(err)
			}
			if f.ID != [16]byte(bytes.Repeat([]byte{0xab}, 16)) || f.OccurredAtMicros != 1700000000000000 || f.MetadataVersion != 3 ||
				string(f.Type) != "type" || string(f.Environment) != "env" || string(f.Context) != `{"k":"v"}` {
				t.Errorf("decoded %+v", f)
			}
			if f.Shape() != nil || f.Columns() != nil {
				t.Errorf("version 1 has typed columns %v", f.Columns())
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := Append(nil, Fields{Type: []byte("type"), Environment: []byte("env"), Context: []byte("{}")}, nil)
	typed := Append(nil, Fields{Type: []byte("type"), Environment: []byte("env"), Context: []byte("{}")},
		[]Column{{Name: "c", TypeOID: 23, TypeMod: -1, Value: []byte{0, 0, 0, 1}}})
	shapeAt := fixedHeader + 1 + 4 + 1 + 3 // count, then name length
	valuesAt := shapeAt + 1 + 1 + 1 + columnFixed
	patch := func(p []byte, at int, b ...byte) []byte {
		p = append([]byte{}, p...)
		copy(p[at:], b)
		return p
	}
	tests := []struct {
		name string
		p    []byte
		want error
	}{
		{name: "empty", p: nil, want: ErrMalformed},
		{name: "version 0", p: append([]byte{0}, valid[1:]...), want: ErrVersion},
		{name: "version 3", p: append([]byte{3}, typed[1:]...), want: ErrVersion},
		{name: "short header", p: valid[:20], want: ErrMalformed},
		{name: "type overruns", p: append(append([]byte{}, valid[:fixedHeader]...), 200, 1), want: ErrMalformed},
		{name: "cut in type", p: valid[:fixedHeader+3], want: ErrMalformed},
		{name: "cut before extras", p: valid[:fixedHeader+1+4+1+3], want: ErrMalformed},
		{name: "v1 bad kind", p: append(append([]byte{}, valid[:shapeAt]...), 1, 1, 'c', 7), want: ErrMalformed},
		{name: "v2 no columns", p: patch(typed, shapeAt, 0), want: ErrMalformed},
		{name: "v2 column count beyond the payload", p: patch(typed, shapeAt, 0x7f), want: ErrMalformed},
		{name: "v2 empty name", p: append(append(append([]byte{}, typed[:shapeAt]...), 1, 0), typed[shapeAt+3:]...), want: ErrMalformed},
		{name: "v2 unknown flags", p: patch(typed, shapeAt+3+8, 2), want: ErrMalformed},
		{name: "v2 value count differs", p: patch(typed, valuesAt, 0, 0, 0, 2), want: ErrMalformed},
		{name: "v2 value type differs from the column's", p: patch(typed, valuesAt+4, 0, 0, 0, 20), want: ErrMalformed},
		{name: "v2 value length below -1", p: patch(typed, valuesAt+8, 0xff, 0xff, 0xff, 0xfe), want: ErrMalformed},
		{name: "v2 value overruns", p: patch(typed, valuesAt+8, 0, 0, 1, 0), want: ErrMalformed},
		{name: "v2 cut in the columns", p: typed[:shapeAt+5], want: ErrMalformed},
		{name: "v2 cut in the values", p: typed[:valuesAt+6], want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode(tt.p); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := Decode(typed); err != nil {
		t.Fatalf("the valid typed payload: %v", err)
	}
}

// Decode never panics, and what it accepts its methods read.
func FuzzDecode(f *testing.F) {
	f.Add(Append(nil, Fields{Type: []byte("t"), Environment: []byte("e"), Context: []byte("{}")}, nil))
	f.Add(Append(nil, Fields{Type: []byte("t"), Environment: []byte("e"), Context: []byte("{}")},
		[]Column{{Name: "a", TypeOID: 25, Value: []byte("x")}, {Name: "b", TypeOID: 23, NotNull: true}}))
	f.Fuzz(func(t *testing.T, p []byte) {
		got, err := Decode(p)
		if err != nil {
			return
		}
		cols := got.Columns()
		n := 0
		if err := got.Values(func(i int, _ []byte, _ bool) error { n = i + 1; return nil }); err != nil {
			t.Fatalf("Values of an accepted payload: %v", err)
		}
		if n != len(cols) {
			t.Fatalf("%d values for %d columns", n, len(cols))
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	p := Append(nil, Fields{Type: []byte("user_created"), Environment: []byte("production"), Context: bytes.Repeat([]byte("x"), 512)}, nil)
	b.ReportAllocs()
	for range b.N {
		if _, err := Decode(p); err != nil {
			b.Fatal(err)
		}
	}
}
