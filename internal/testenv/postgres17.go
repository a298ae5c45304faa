package testenv

import (
	"context"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// FailoverPair is the PostgreSQL 17 primary and its physical standby with
// slot synchronization (scripts/services.sh pg17-pair-up, started by make
// test): server-level URLs and the standby's physical slot on the primary.
type FailoverPair struct {
	Primary, Standby string
	StandbySlot      string
}

// NeedFailoverPair returns the pair, or skips t when it is not configured.
func NeedFailoverPair(t TB) FailoverPair {
	t.Helper()
	Skip(t)
	p := FailoverPair{Primary: os.Getenv("DATABASE_URL_PG17_PRIMARY"), Standby: os.Getenv("DATABASE_URL_PG17_STANDBY"),
		StandbySlot: os.Getenv("PG17_STANDBY_SLOT")}
	if p.Primary == "" || p.Standby == "" || p.StandbySlot == "" {
		t.Skip("needs PostgreSQL 17 with a physical standby (failover slots): DATABASE_URL_PG17_PRIMARY / _STANDBY not set; make test starts them (scripts/services.sh pg17-pair-up)")
	}
	return p
}

// ServerVersionNum is server_version_num of the server of url.
func ServerVersionNum(t TB, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var v int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&v); err != nil {
		t.Fatalf("read server_version_num: %v", err)
	}
	return v
}
