// Command relay streams transactional-outbox events from PostgreSQL to
// ClickHouse. See `relay --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/outbox-relay/relay/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
