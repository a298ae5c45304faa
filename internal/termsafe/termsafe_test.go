package termsafe

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "user_created", "user_created"},
		{"unicode kept", "événement 事件 😀", "événement 事件 😀"},
		{"backslash kept", `C:\path`, `C:\path`},
		{"clear screen", "\x1b[2J\x1b[32mOK", `\x1b[2J\x1b[32mOK`},
		{"window title", "\x1b]0;pwned\x07", `\x1b]0;pwned\a`},
		{"newline, tab, carriage return", "a\nb\tc\rd", `a\nb\tc\rd`},
		{"DEL", "a\x7fb", `a\x7fb`},
		{"C1 CSI as UTF-8", "a\u009b2J", `a\u009b2J`},
		{"raw C1 byte (not UTF-8)", "a\x9b2J", `a\x9b2J`},
		{"bidi override", "abc\u202edcba", `abc\u202edcba`},
		{"replacement character itself kept", "a\uFFFDb", "a\uFFFDb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Escape(tt.in); got != tt.want {
				t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// JSON keeps the document's meaning (the same strings decode) while no
// character a terminal acts on is left raw: encoding/json escapes C0
// controls but writes C1 controls, DEL and bidi overrides as they are.
func TestJSON(t *testing.T) {
	in := map[string]string{"type": "a\u009b2J\x7f\u202eb\x1b[2J", "plain": "é 😀 \\ \""}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	got := JSON(raw)
	for _, c := range []string{"\u009b", "\x7f", "\u202e", "\x1b"} {
		if strings.Contains(string(got), c) {
			t.Errorf("JSON(%s) = %s: contains %q raw", raw, got, c)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(got, &back); err != nil || back["type"] != in["type"] || back["plain"] != in["plain"] {
		t.Errorf("JSON(%s) = %s decodes to %q (%v), want %q", raw, got, back, err, in)
	}
}
