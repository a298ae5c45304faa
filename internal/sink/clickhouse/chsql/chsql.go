// Package chsql quotes names and values for ClickHouse SQL. Every
// statement the relay builds from a name it did not write itself (a
// PostgreSQL column, a configured table, a cluster) quotes it here, so one
// rule decides what reaches the server's parser.
//
// ClickHouse reads backslash escapes inside quotes (`\\`, `\'`, "\`",
// `\n`, `\xHH`, …) and ends the token at the first unescaped quote. Escaping
// the backslash as well as the quote is what keeps a name from closing its
// own quotes: a name ending in a backslash would otherwise escape the
// closing quote and let the rest of the statement through as SQL.
package chsql

import "strings"

var (
	identEscaper  = strings.NewReplacer(`\`, `\\`, "`", "\\`")
	stringEscaper = strings.NewReplacer(`\`, `\\`, `'`, `\'`)
)

// Ident quotes name as one ClickHouse identifier: the server reads back
// exactly name, whatever bytes it holds.
func Ident(name string) string {
	return "`" + identEscaper.Replace(name) + "`"
}

// String quotes s as one ClickHouse string literal.
func String(s string) string {
	return "'" + stringEscaper.Replace(s) + "'"
}
