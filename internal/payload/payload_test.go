package payload

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func ptr(s string) *string { return &s }

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		f    Fields
		cols []Column
	}{
		{name: "minimal", f: Fields{Type: []byte("t"), Environment: []byte("e"), Context: []byte("{}"), MetadataVersion: 1}},
		{name: "every field", f: Fields{
			ID:               [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
			OccurredAtMicros: -62135596800000000, // 0001-01-01
			MetadataVersion:  1<<63 - 1,
			Type:             []byte("user_created ü"),
			Environment:      []byte(strings.Repeat("p", 300)), // two-byte length
			Context:          []byte(`{"a":[1,2,{"b":null}]}`),
		}},
		{name: "extra columns", f: Fields{Type: []byte("t"), Environment: []byte("e"), Context: []byte(`1`)},
			cols: []Column{{Name: "user_id", Value: ptr("42")}, {Name: "tenant", Value: nil}, {Name: "empty", Value: ptr("")}}},
		{name: "large context", f: Fields{Type: []byte("t"), Environment: []byte("e"), Context: bytes.Repeat([]byte("x"), 5<<20)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Append(nil, tt.f, tt.cols)
			if len(b) != Size(tt.f, tt.cols) {
				t.Errorf("len = %d, Size = %d", len(b), Size(tt.f, tt.cols))
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got.ID != tt.f.ID || got.OccurredAtMicros != tt.f.OccurredAtMicros || got.MetadataVersion != tt.f.MetadataVersion ||
				!bytes.Equal(got.Type, tt.f.Type) || !bytes.Equal(got.Environment, tt.f.Environment) || !bytes.Equal(got.Context, tt.f.Context) {
				t.Errorf("decoded fields differ")
			}
			var cols []Column
			err = got.Extras(func(name, value []byte, null bool) error {
				c := Column{Name: string(name)}
				if !null {
					c.Value = ptr(string(value))
				}
				cols = append(cols, c)
				return nil
			})
			if err != nil {
				t.Fatalf("Extras: %v", err)
			}
			if len(cols) != len(tt.cols) {
				t.Fatalf("extras = %d, want %d", len(cols), len(tt.cols))
			}
			for i, c := range cols {
				w := tt.cols[i]
				if c.Name != w.Name || (c.Value == nil) != (w.Value == nil) || (c.Value != nil && *c.Value != *w.Value) {
					t.Errorf("extra %d = %+v, want %+v", i, c, w)
				}
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := Append(nil, Fields{Type: []byte("type"), Environment: []byte("env"), Context: []byte("{}")},
		[]Column{{Name: "c", Value: ptr("v")}})
	tests := []struct {
		name string
		p    []byte
		want error
	}{
		{name: "empty", p: nil, want: ErrMalformed},
		{name: "version 0", p: append([]byte{0}, valid[1:]...), want: ErrVersion},
		{name: "version 2", p: append([]byte{2}, valid[1:]...), want: ErrVersion},
		{name: "short header", p: valid[:20], want: ErrMalformed},
		{name: "type overruns", p: append(append([]byte{}, valid[:fixedHeader]...), 200, 1), want: ErrMalformed},
		{name: "cut in type", p: valid[:fixedHeader+3], want: ErrMalformed},
		{name: "cut before extras", p: valid[:fixedHeader+1+4+1+3], want: ErrMalformed},
		{name: "bad kind", p: func() []byte {
			b := append([]byte{}, valid...)
			b[fixedHeader+1+4+1+3+1+1+1] = 7 // count, name len, name, kind
			return b
		}(), want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode(tt.p); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// Every cut of a valid payload inside its header either fails or, once the
// context starts, yields a shorter context: Decode never panics.
func FuzzDecode(f *testing.F) {
	f.Add(Append(nil, Fields{Type: []byte("t"), Environment: []byte("e"), Context: []byte("{}")}, []Column{{Name: "a"}}))
	f.Fuzz(func(_ *testing.T, p []byte) {
		got, err := Decode(p)
		if err != nil {
			return
		}
		_ = got.Extras(func(_, _ []byte, _ bool) error { return nil })
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
