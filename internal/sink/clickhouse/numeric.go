package clickhouse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/ClickHouse/ch-go/proto"
)

// PostgreSQL's numeric into ClickHouse: its text (numeric_out's, for a
// String column) and its value scaled into a Decimal(P, S) column.

// The sign field of a binary numeric (numeric_send's).
const (
	numericNeg  = 0x4000
	numericNaN  = 0xC000
	numericPInf = 0xD000
	numericNInf = 0xF000
)

// appendNumeric appends a binary numeric as PostgreSQL's numeric_out
// spells it.
func appendNumeric(dst, b []byte) ([]byte, error) {
	if len(b) < 8 {
		return nil, errors.New("malformed numeric")
	}
	ndigits := int(binary.BigEndian.Uint16(b))
	weight := int(int16(binary.BigEndian.Uint16(b[2:])))
	sign := binary.BigEndian.Uint16(b[4:])
	dscale := int(binary.BigEndian.Uint16(b[6:]))
	if len(b) != 8+2*ndigits {
		return nil, errors.New("malformed numeric")
	}
	switch sign {
	case numericNaN:
		return append(dst, "NaN"...), nil
	case numericPInf:
		return append(dst, "Infinity"...), nil
	case numericNInf:
		return append(dst, "-Infinity"...), nil
	case numericNeg:
		dst = append(dst, '-')
	}
	digit := func(i int) int {
		if i < 0 || i >= ndigits {
			return 0
		}
		return int(binary.BigEndian.Uint16(b[8+2*i:]))
	}
	if weight < 0 {
		dst = append(dst, '0')
	}
	for i := 0; i <= weight; i++ {
		if i == 0 {
			dst = strconv.AppendInt(dst, int64(digit(i)), 10)
		} else {
			dst = append4(dst, digit(i))
		}
	}
	if dscale > 0 {
		dst = append(dst, '.')
		start := len(dst)
		for i := weight + 1; len(dst)-start < dscale; i++ {
			dst = append4(dst, digit(i))
		}
		dst = dst[:start+dscale]
	}
	return dst, nil
}

func append4(dst []byte, d int) []byte {
	return append(dst, byte('0'+d/1000), byte('0'+d/100%10), byte('0'+d/10%10), byte('0'+d%10))
}

// decimal builds a Decimal(P, S) column: Decimal32/64/128 by precision.
func decimal(base string, nullable, arr bool) (encoder, error) {
	var p, s int
	if _, err := fmt.Sscanf(base, "Decimal(%d,%d)", &p, &s); err != nil || p < 1 || p > 38 || s < 0 || s > p {
		return nil, fmt.Errorf("unsupported %s", base)
	}
	switch {
	case p <= 9:
		return pick[proto.Decimal32](new(proto.ColDecimal32), binaryOnly(func(b []byte) (proto.Decimal32, error) {
			v, err := scaled64(b, p, s)
			return proto.Decimal32(v), err
		}), nullable, arr), nil
	case p <= 18:
		return pick[proto.Decimal64](new(proto.ColDecimal64), binaryOnly(func(b []byte) (proto.Decimal64, error) {
			v, err := scaled64(b, p, s)
			return proto.Decimal64(v), err
		}), nullable, arr), nil
	default:
		return pick[proto.Decimal128](new(proto.ColDecimal128), binaryOnly(func(b []byte) (proto.Decimal128, error) {
			v, err := scaled(b, p, s)
			return proto.Decimal128(int128(v)), err
		}), nullable, arr), nil
	}
}

// pow10 are the powers of ten an int64 holds.
var pow10 = func() (p [19]int64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// scaled64 is scaled for p <= 18, without allocating: the base-10000
// digits summed into v·10^s. A digit below the scale, or a result of more
// than p digits, is an error (from scaled, which says it in words).
func scaled64(b []byte, p, s int) (int64, error) {
	if len(b) < 8 {
		return 0, errors.New("malformed numeric")
	}
	ndigits := int(binary.BigEndian.Uint16(b))
	weight := int(int16(binary.BigEndian.Uint16(b[2:])))
	sign := binary.BigEndian.Uint16(b[4:])
	if len(b) != 8+2*ndigits || (sign != 0 && sign != numericNeg) {
		_, err := scaled(b, p, s)
		return 0, err
	}
	var v int64
	for i := range ndigits {
		d := int64(binary.BigEndian.Uint16(b[8+2*i:]))
		if d == 0 {
			continue
		}
		exp := 4*(weight-i) + s // d is worth d·10^exp in units of 10^-s
		for exp < 0 && d%10 == 0 {
			d, exp = d/10, exp+1
		}
		if exp < 0 || exp > 18 || d > (pow10[p]-1-v)/pow10[exp] {
			_, err := scaled(b, p, s)
			if err == nil {
				err = fmt.Errorf("numeric does not fit Decimal(%d, %d)", p, s)
			}
			return 0, err
		}
		v += d * pow10[exp]
	}
	if sign == numericNeg {
		v = -v
	}
	return v, nil
}

// scaled returns a numeric as the integer v·10^s, checking that it has at
// most p digits and no more than s decimals.
func scaled(b []byte, p, s int) (*big.Int, error) {
	var buf [64]byte
	txt, err := appendNumeric(buf[:0], b)
	if err != nil {
		return nil, err
	}
	str := string(txt)
	if str == "NaN" || strings.HasSuffix(str, "Infinity") {
		return nil, fmt.Errorf("numeric %s does not fit Decimal(%d, %d)", str, p, s)
	}
	intPart, frac, _ := strings.Cut(str, ".")
	if trimmed := strings.TrimRight(frac, "0"); len(trimmed) > s {
		return nil, fmt.Errorf("numeric %s has more than %d decimals, the scale of Decimal(%d, %d)", str, s, p, s)
	}
	frac = (frac + strings.Repeat("0", s))[:s]
	v, ok := new(big.Int).SetString(intPart+frac, 10)
	if !ok {
		return nil, fmt.Errorf("numeric %s: not a number", str)
	}
	if digits := len(new(big.Int).Abs(v).String()); digits > p {
		return nil, fmt.Errorf("numeric %s does not fit Decimal(%d, %d)", str, p, s)
	}
	return v, nil
}

// int128 is v (at most 38 digits) in two's complement.
func int128(v *big.Int) proto.Int128 {
	m := new(big.Int).Set(v)
	if m.Sign() < 0 {
		m.Add(m, new(big.Int).Lsh(big.NewInt(1), 128))
	}
	lo := new(big.Int).And(m, new(big.Int).SetUint64(math.MaxUint64)).Uint64()
	hi := new(big.Int).Rsh(m, 64).Uint64()
	return proto.Int128{Low: lo, High: hi}
}
