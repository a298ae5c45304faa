package testenv

import (
	"context"
	"strings"
	"testing"
)

// The engine is the ClickHouse the suite claims (scripts/test.sh prints
// this test's line), and answers through Conn as the driver would.
func TestConformanceEngine(t *testing.T) {
	e := NewEngine(t)
	if !strings.HasPrefix(e.Version, "26.5.") {
		t.Fatalf("engine version %s, want 26.5.x (scripts/services.sh pins chDB 26.5.3)", e.Version)
	}
	v, err := e.Conn().ServerVersion()
	if err != nil || v.Version.Major != 26 || v.Version.Minor != 5 {
		t.Fatalf("ServerVersion = %+v, %v", v, err)
	}
	var s string
	var n uint64
	if err := e.Conn().QueryRow(context.Background(), "SELECT ?, toUInt64(?)", "it's a \\ test", 42).Scan(&s, &n); err != nil {
		t.Fatal(err)
	}
	if s != "it's a \\ test" || n != 42 {
		t.Errorf("bound values came back as %q, %d", s, n)
	}
	var u32 uint32
	if err := e.Conn().QueryRow(context.Background(), "SELECT toUInt64(1)").Scan(&u32); err == nil {
		t.Error("a UInt64 scanned into a uint32: the Conn must be as strict as the driver")
	}
}

func TestBind(t *testing.T) {
	tests := []struct {
		query   string
		args    []any
		want    string
		wantErr bool
	}{
		{"SELECT 1", nil, "SELECT 1", false},
		{"a = ? AND b = ?", []any{"x'y", uint16(7)}, `a = 'x\'y' AND b = 7`, false},
		{"a = ?", []any{`back\slash`}, `a = 'back\\slash'`, false},
		{"a = ?", nil, "a = ?", false},
		{"a = ? AND b = ?", []any{1}, "", true},
		{"a = ?", []any{1, 2}, "", true},
		{"a = ?", []any{1.5}, "", true},
	}
	for _, tt := range tests {
		got, err := bind(tt.query, tt.args)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("bind(%q, %v) = %q, %v; want %q, error %v", tt.query, tt.args, got, err, tt.want, tt.wantErr)
		}
	}
}
