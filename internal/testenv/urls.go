package testenv

import (
	"context"
	"net"
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

// FreeAddr returns a 127.0.0.1 address that nothing listens on (for a
// server the test starts, or as a closed port to connect to).
func FreeAddr(t TB) string {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
