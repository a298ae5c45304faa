package deletion

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// uuids replaces pgx's own encoding of [][16]byte for speed: both must
// produce the same bytes.
func TestUUIDsEncodeAsPgx(t *testing.T) {
	many := make([][16]byte, 1000)
	for i := range many {
		for j := range many[i] {
			many[i][j] = byte(i*31 + j*7)
		}
	}
	tests := []struct {
		name string
		ids  [][16]byte
	}{
		{"nil", nil},
		{"empty", [][16]byte{}},
		{"one", [][16]byte{{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10}}},
		{"zero", [][16]byte{{}}},
		{"many", many},
	}
	m := pgtype.NewMap()
	for _, tc := range tests {
		for _, format := range []int16{pgtype.BinaryFormatCode, pgtype.TextFormatCode} {
			want, err := m.Encode(pgtype.UUIDArrayOID, format, tc.ids, nil)
			if err != nil {
				t.Fatalf("%s/%d: pgx: %v", tc.name, format, err)
			}
			got, err := m.Encode(pgtype.UUIDArrayOID, format, uuids(tc.ids), nil)
			if err != nil {
				t.Fatalf("%s/%d: uuids: %v", tc.name, format, err)
			}
			if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
				t.Errorf("%s/%d: uuids encodes\n%x\npgx encodes\n%x", tc.name, format, got, want)
			}
		}
	}
}

func TestUUIDsEncodeWithoutPerIDAllocations(t *testing.T) {
	ids := uuids(make([][16]byte, 10000))
	m := pgtype.NewMap()
	buf := make([]byte, 0, 32+20*len(ids))
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := m.Encode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, ids, buf[:0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 10 {
		t.Errorf("encoding 10,000 ids allocates %v times, want a handful", allocs)
	}
}
