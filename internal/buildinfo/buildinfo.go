// Package buildinfo carries the version stamped in at link time.
package buildinfo

// Version is set with -ldflags "-X github.com/outbox-relay/relay/internal/buildinfo.Version=v1.2.3".
var Version = "dev"
