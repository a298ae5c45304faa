package clickhouse

import (
	"encoding/binary"
	"strconv"
	"testing"
)

// numericText spells a binary numeric as PostgreSQL's numeric_out does.
func numericText(b []byte) ([]byte, error) {
	return appendNumeric(nil, b)
}

// pgNumeric encodes digits (base 10000) as numeric_send does.
func pgNumeric(weight int16, sign uint16, dscale uint16, digits ...uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(digits)))
	b = binary.BigEndian.AppendUint16(b, uint16(weight))
	b = binary.BigEndian.AppendUint16(b, sign)
	b = binary.BigEndian.AppendUint16(b, dscale)
	for _, d := range digits {
		b = binary.BigEndian.AppendUint16(b, d)
	}
	return b
}

func TestNumericText(t *testing.T) {
	for _, tt := range []struct {
		in   []byte
		want string
	}{
		{pgNumeric(0, 0, 0), "0"},
		{pgNumeric(0, 0, 2), "0.00"},
		{pgNumeric(0, 0, 2, 12, 3400), "12.34"},
		{pgNumeric(1, numericNeg, 0, 1, 0), "-10000"},
		{pgNumeric(-2, 0, 8, 12), "0.00000012"},
		{pgNumeric(-1, 0, 4, 1), "0.0001"},
		{pgNumeric(2, 0, 1, 12, 3456, 7890, 1000), "1234567890.1"},
		{pgNumeric(0, numericNaN, 0), "NaN"},
		{pgNumeric(0, numericPInf, 0), "Infinity"},
		{pgNumeric(0, numericNInf, 0), "-Infinity"},
	} {
		got, err := numericText(tt.in)
		if err != nil || string(got) != tt.want {
			t.Errorf("numericText(%v) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := numericText([]byte{0, 2, 0, 0, 0, 0, 0, 0, 0, 1}); err == nil {
		t.Error("numericText of a cut value = nil error")
	}
}

func TestScaled(t *testing.T) {
	for _, tt := range []struct {
		in      []byte
		p, s    int
		want    string
		wantErr bool
	}{
		{pgNumeric(0, 0, 2, 12, 3400), 5, 2, "1234", false},
		{pgNumeric(0, 0, 2, 12, 3400), 6, 3, "12340", false},
		{pgNumeric(0, numericNeg, 2, 12, 3400), 5, 2, "-1234", false},
		{pgNumeric(0, 0, 3, 12, 3450), 5, 2, "", true}, // 12.345: a decimal too many
		{pgNumeric(1, 0, 0, 1, 0), 4, 0, "", true},     // 10000: too many digits
		{pgNumeric(0, numericNaN, 0), 5, 2, "", true},
		{pgNumeric(4, 0, 0, 922, 3372, 368, 5477, 5807), 18, 0, "", true}, // 9223372036854775807: 19 digits
		{pgNumeric(3, numericNeg, 4, 99, 9999, 9999, 9999, 9999), 18, 4, "-999999999999999999", false},
		{pgNumeric(-1, 0, 2, 1000), 3, 2, "10", false}, // 0.1 at scale 2
		{pgNumeric(-2, 0, 8, 12), 9, 2, "", true},      // 0.00000012: decimals beyond the scale
	} {
		got, err := scaled(tt.in, tt.p, tt.s)
		if (err != nil) != tt.wantErr || (err == nil && got.String() != tt.want) {
			t.Errorf("scaled(%v, %d, %d) = %v, %v; want %s (error %v)", tt.in, tt.p, tt.s, got, err, tt.want, tt.wantErr)
		}
		// The allocation-free path for p <= 18 agrees.
		got64, err := scaled64(tt.in, tt.p, tt.s)
		if (err != nil) != tt.wantErr || (err == nil && strconv.FormatInt(got64, 10) != tt.want) {
			t.Errorf("scaled64(%v, %d, %d) = %d, %v; want %s (error %v)", tt.in, tt.p, tt.s, got64, err, tt.want, tt.wantErr)
		}
	}
}
