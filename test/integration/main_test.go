// Package integration drives the built relay binary against the real
// PostgreSQL and ClickHouse started by scripts/services.sh (make test).
package integration

import (
	"fmt"
	"os"
	"testing"

	"github.com/outbox-relay/relay/internal/testenv"
)

// relayBin is the binary built once for the whole package.
var relayBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relay-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	relayBin, err = testenv.BuildRelay(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build relay:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
