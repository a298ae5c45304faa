package termsafe

import "testing"

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
