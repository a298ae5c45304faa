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
	// name is the pair's in scripts/services.sh: "pg17" (pg17a, pg17b) or
	// "pg15" (pg15a, pg15b).
	name string
}

// KillPrimary SIGKILLs the pair's primary.
func (p FailoverPair) KillPrimary(t TB) {
	t.Helper()
	Services(t, "stop-"+p.name, p.name+"a", "--kill")
}

// Renew makes the pair anew (its data purged), e.g. after a promotion.
func (p FailoverPair) Renew(t TB) {
	t.Helper()
	Services(t, p.name+"-pair-down", "--purge")
	Services(t, p.name+"-pair-up")
}

// NeedFailoverPair returns the pair, or skips t when it is not configured.
func NeedFailoverPair(t TB) FailoverPair {
	t.Helper()
	Skip(t)
	p := FailoverPair{Primary: os.Getenv("DATABASE_URL_PG17_PRIMARY"), Standby: os.Getenv("DATABASE_URL_PG17_STANDBY"),
		StandbySlot: os.Getenv("PG17_STANDBY_SLOT"), name: "pg17"}
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
