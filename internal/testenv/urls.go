package testenv

import (
	"net/url"
)

// ReplaceHost returns rawURL with its host:port replaced by hostport.
func ReplaceHost(t TB, rawURL, hostport string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse %q: %v", rawURL, err)
	}
	u.Host = hostport
	return u.String()
}

// Host is rawURL's host:port.
func Host(t TB, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse %q: %v", rawURL, err)
	}
	return u.Host
}
