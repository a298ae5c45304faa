// Package termsafe renders text that others wrote (event types,
// environments, column names, servers' error messages) for a terminal:
// readable, but unable to act on it. Every command-line output that shows
// such text passes it through Escape (text) or JSON (a JSON document).
package termsafe

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Escape returns s with every character a terminal could act on written as
// a Go escape: C0 controls (tab and newline too, which would break a
// table's rows), DEL, C1 controls (U+0080–U+009F: U+009B is a one-character
// CSI), the bidirectional overrides that reorder what is shown, and bytes
// that are not UTF-8. Everything else, backslashes included, is kept, so
// ordinary text reads unchanged.
func Escape(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i])|0x100, 16)[1:])
		case unsafe(r):
			b.WriteString(strings.Trim(strconv.QuoteRuneToASCII(r), "'"))
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func needsEscape(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || unsafe(r) {
			return true
		}
	}
	return false
}

// unsafe reports whether a terminal may treat r as a command or reorder
// the text around it.
func unsafe(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f:
		return true
	}
	return false
}

// JSON returns the JSON document b with every character a terminal could
// act on written as a \u escape. encoding/json escapes C0 controls itself
// but writes DEL, C1 controls and bidi overrides raw; outside strings a
// JSON document holds none of them, so the document decodes to the same
// values.
func JSON(b []byte) []byte {
	if !needsEscape(string(b)) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError && r >= 0x7f && unsafe(r) {
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, b[i:i+n]...)
		}
		i += n
	}
	return out
}
