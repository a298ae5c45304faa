package config

import (
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"strings"
)

// Setting is one configuration value as shown to people (the relay's
// status page): its environment name, flag and value, secrets redacted.
type Setting struct {
	Env   string `json:"env"`
	Flag  string `json:"flag"`
	Value string `json:"value"`
}

// redacted stands in for a secret.
const redacted = "xxxxx"

// Settings lists every field of c with secrets redacted: the passwords of
// DATABASE_URL and CLICKHOUSE_URL and the key of SENTRY_DSN.
func (c *Config) Settings() []Setting {
	v := reflect.ValueOf(c).Elem()
	out := make([]Setting, 0, v.NumField())
	for _, f := range fields() {
		val := fmt.Sprint(v.Field(f.index).Interface())
		switch f.env {
		case "DATABASE_URL":
			val = redactPostgres(val)
		case "CLICKHOUSE_URL":
			val = redactURL(val, false)
		case "SENTRY_DSN":
			val = redactURL(val, true)
		}
		out = append(out, Setting{Env: f.env, Flag: f.flag, Value: val})
	}
	return out
}

// keywordPassword matches password=… in a libpq keyword/value DSN (quoted
// or not).
var keywordPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// redactPostgres hides the password of a PostgreSQL URL or keyword DSN.
func redactPostgres(s string) string {
	if u, err := url.Parse(s); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return redactURL(s, false)
	}
	return keywordPassword.ReplaceAllString(s, "${1}"+redacted)
}

// redactURL hides the password in the user info and in a password query
// parameter, or (whole) the user info itself; something that does not
// parse as a URL is hidden entirely.
func redactURL(s string, wholeUser bool) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return redacted
	}
	if u.User != nil {
		if wholeUser {
			u.User = url.User(redacted)
		} else if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redacted)
		}
	}
	q := u.Query()
	for k := range q {
		if k == "password" || k == "sslpassword" {
			q.Set(k, redacted)
		}
	}
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// RedactArgs returns a command line (e.g. for /debug/pprof/cmdline) with
// the secrets of the URLs and DSNs in it hidden: passwords, and the key of
// a Sentry DSN.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	sentry := false // the previous argument was --sentry-dsn
	for i, a := range args {
		name, val, ok := strings.Cut(a, "=")
		switch {
		case sentry:
			out[i] = redactURL(a, true)
		case ok && strings.HasPrefix(name, "-") && strings.TrimLeft(name, "-") == "sentry-dsn":
			out[i] = name + "=" + redactURL(val, true)
		case ok && strings.HasPrefix(name, "-") && strings.Contains(val, "://"):
			out[i] = name + "=" + redactURL(val, false)
		case strings.Contains(a, "://"):
			out[i] = redactURL(a, false)
		default:
			out[i] = keywordPassword.ReplaceAllString(a, "${1}"+redacted)
		}
		sentry = a == "--sentry-dsn" || a == "-sentry-dsn"
	}
	return out
}
