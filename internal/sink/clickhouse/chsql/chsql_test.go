package chsql

import (
	"strings"
	"testing"
)

// unquote reads one quoted token at the start of s as ClickHouse's lexer
// does (readAnyQuotedString: a backslash escapes the next byte, a doubled
// quote is one quote, the first lone quote ends the token) and returns its
// value and how many bytes it took. Only the escapes whose meaning matters
// here are decoded; any other escaped byte stands for itself, which is
// what ClickHouse does for a byte without a special meaning.
func unquote(t *testing.T, s string, quote byte) (value string, n int) {
	t.Helper()
	if len(s) == 0 || s[0] != quote {
		t.Fatalf("token %q does not start with %c", s, quote)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			switch s[i] {
			case 'n', 't', 'r', 'b', 'f', 'a', 'v', '0', 'x', 'N':
				t.Fatalf("token %q uses the escape \\%c, which decodes to another byte", s, s[i])
			}
			b.WriteByte(s[i])
		case c == quote && i+1 < len(s) && s[i+1] == quote:
			i++
			b.WriteByte(quote)
		case c == quote:
			return b.String(), i + 1
		default:
			b.WriteByte(c)
		}
	}
	t.Fatalf("token %q is not closed", s)
	return "", 0
}

var hostile = []string{
	"event_type",
	"q\\` UInt8, DROP PARTITION 202612 --",
	"x\\` UInt8, ADD COLUMN injected UInt8 --",
	"a`b", "a\\b", "\\", "`", "\\`", "``", "a'b", "\\'",
	"with space", "tab\tand\nnewline", "é\u00a0ü", "a.b", "$1", "\x1b[2J",
	"-- comment", "/* c */", "\"dq\"",
}

// FuzzIdent: whatever the name, the quoted identifier is one token the
// server reads back as exactly that name, with nothing after it.
func FuzzIdent(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		q := Ident(name)
		got, n := unquote(t, q, '`')
		if n != len(q) {
			t.Fatalf("Ident(%q) = %s: the token ends at byte %d, and %q follows as SQL", name, q, n, q[n:])
		}
		if got != name {
			t.Fatalf("Ident(%q) = %s reads back as %q", name, q, got)
		}
	})
}

func FuzzString(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := String(s)
		got, n := unquote(t, q, '\'')
		if n != len(q) || got != s {
			t.Fatalf("String(%q) = %s reads back as %q, taking %d of %d bytes", s, q, got, n, len(q))
		}
	})
}

func TestIdent(t *testing.T) {
	tests := []struct{ name, want string }{
		{"event_log", "`event_log`"},
		{"a`b", "`a\\`b`"},
		{"q\\` UInt8, DROP PARTITION 202612 --", "`q\\\\\\` UInt8, DROP PARTITION 202612 --`"},
		{"ends with \\", "`ends with \\\\`"},
	}
	for _, tt := range tests {
		if got := Ident(tt.name); got != tt.want {
			t.Errorf("Ident(%q) = %s, want %s", tt.name, got, tt.want)
		}
	}
}
