package testenv

import "os"

// NeedPostgres15Pair returns the PostgreSQL 15 primary and its physical
// (synchronous) standby, which has no failover slots (scripts/services.sh
// pg15-pair-up, started by make test), or skips t when it is not
// configured.
func NeedPostgres15Pair(t TB) FailoverPair {
	t.Helper()
	Skip(t)
	p := FailoverPair{Primary: os.Getenv("DATABASE_URL_PG15_PRIMARY"), Standby: os.Getenv("DATABASE_URL_PG15_STANDBY"),
		StandbySlot: os.Getenv("PG15_STANDBY_SLOT"), name: "pg15"}
	if p.Primary == "" || p.Standby == "" || p.StandbySlot == "" {
		t.Skip("needs PostgreSQL 15 with a physical standby: DATABASE_URL_PG15_PRIMARY / _STANDBY / PG15_STANDBY_SLOT not set; make test starts them (scripts/services.sh pg15-pair-up)")
	}
	return p
}
