package standby

import (
	"slices"
	"testing"
)

func TestSlotList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", []string{}},
		{"standby1", []string{"standby1"}},
		{" a , b ", []string{"a", "b"}},
		{`"Odd ""name""", b`, []string{`Odd "name"`, "b"}},
	}
	for _, tt := range tests {
		if got := SlotList(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("SlotList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
