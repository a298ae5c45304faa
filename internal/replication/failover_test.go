package replication

import "testing"

func TestParseMajor(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"17.12 (Debian 17.12-0+deb13u1)", 17},
		{"15.18", 15},
		{"18beta1", 18},
		{"9.6.24", 9},
		{"", 0}, // unknown: never a failover slot
		{"x", 0},
	}
	for _, tt := range tests {
		if got := parseMajor(tt.in); got != tt.want {
			t.Errorf("parseMajor(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
