package integration

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
)

const (
	pgSecret = "s3cr3t-pw"
	chSecret = "ch-s3cr3t"
)

// checkOutput asserts exit code, that out contains every want (case
// insensitive) and none of the secrets.
func checkOutput(t *testing.T, name string, code, wantCode int, out string, want ...string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: exit code %d, want %d; output:\n%s", name, code, wantCode, out)
	}
	for _, w := range want {
		if !strings.Contains(strings.ToLower(out), strings.ToLower(w)) {
			t.Errorf("%s: output does not mention %q:\n%s", name, w, out)
		}
	}
	for _, s := range []string{pgSecret, chSecret} {
		if strings.Contains(out, s) {
			t.Errorf("%s: output contains the password %q:\n%s", name, s, out)
		}
	}
}

// TestBadConfigurationExitsTwoWithoutSecrets runs the binary with broken
// settings: exit code 2, one message naming every problem, no password.
func TestBadConfigurationExitsTwoWithoutSecrets(t *testing.T) {
	t.Parallel()
	path := "PATH=" + os.Getenv("PATH")
	pgDown := "postgres://app:" + pgSecret + "@" + testenv.FreeAddr(t) + "/app?sslmode=disable"
	chDown := "clickhouse://default:" + chSecret + "@" + testenv.FreeAddr(t) + "/app"
	base := []string{path, "LOG_FORMAT=json", "RELAY_ADMIN_ADDR="}

	t.Run("no server URLs", func(t *testing.T) {
		t.Parallel()
		code, out := runRelayCmd(t, 30*time.Second, base, "run")
		checkOutput(t, "run without URLs", code, 2, out, "DATABASE_URL", "CLICKHOUSE_URL")
	})
	t.Run("bad values and secrets", func(t *testing.T) {
		t.Parallel()
		env := append(base[:len(base):len(base)], "DATABASE_URL="+pgDown, "CLICKHOUSE_URL="+chDown,
			"CH_OUTBOX_BATCH_SIZE=abc", "CH_OUTBOX_PROCESSING_FREQUENCY_SEC=-1")
		code, out := runRelayCmd(t, 30*time.Second, env, "run")
		checkOutput(t, "run with bad values", code, 2, out, "CH_OUTBOX_BATCH_SIZE", "CH_OUTBOX_PROCESSING_FREQUENCY_SEC")
		if n := strings.Count(out, "invalid configuration"); n != 1 {
			t.Errorf("want one message listing every problem, got %d:\n%s", n, out)
		}
	})
	t.Run("unreachable servers", func(t *testing.T) {
		t.Parallel()
		env := append(base[:len(base):len(base)], "DATABASE_URL="+pgDown, "CLICKHOUSE_URL="+chDown)
		start := time.Now()
		code, out := runRelayCmd(t, 45*time.Second, env, "run")
		t.Logf("exited %d after %s", code, time.Since(start).Round(time.Millisecond))
		// Servers down are no configuration error: exit 1, as a runtime failure.
		checkOutput(t, "run with unreachable servers", code, 1, out, "cannot start", "PostgreSQL", "ClickHouse")
		if strings.Contains(out, "invalid configuration") {
			t.Errorf("unreachable servers reported as invalid configuration:\n%s", out)
		}
	})
	t.Run("bad flag", func(t *testing.T) {
		t.Parallel()
		env := append(base[:len(base):len(base)], "DATABASE_URL="+pgDown, "CLICKHOUSE_URL="+chDown)
		code, out := runRelayCmd(t, 30*time.Second, env, "run", "--batch-size=xyz")
		checkOutput(t, "run --batch-size=xyz", code, 2, out, "batch-size")
	})
	t.Run("malformed URLs with passwords", func(t *testing.T) {
		t.Parallel()
		env := append(base[:len(base):len(base)],
			"DATABASE_URL=postgres://app:"+pgSecret+"@127.0.0.1:99999999/app",
			"CLICKHOUSE_URL=clickhouse://default:"+chSecret+"@127.0.0.1:bad/app")
		code, out := runRelayCmd(t, 30*time.Second, env, "run")
		checkOutput(t, "run with malformed URLs", code, 2, out, "DATABASE_URL", "CLICKHOUSE_URL")
	})
	t.Run("version", func(t *testing.T) {
		t.Parallel()
		version := regexp.MustCompile(`^relay (version )?(dev|v?\d+\.\d+\.\d+\S*)\n$`)
		for _, args := range [][]string{{"version"}, {"--version"}} {
			code, out := runRelayCmd(t, 30*time.Second, []string{path}, args...)
			checkOutput(t, "relay "+strings.Join(args, " "), code, 0, out)
			if !version.MatchString(out) {
				t.Errorf("relay %v printed %q, want one line \"relay [version] <version>\"", args, out)
			}
		}
	})
}

// TestMissingPublicationExitsTwo drops the publication in a migrated
// database: `relay run` refuses to start and says how to create it.
func TestMissingPublicationExitsTwo(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	mustExec(ctx, t, e.PG, "DROP PUBLICATION "+pgx.Identifier{e.Publication}.Sanitize())
	code, out := runRelayCmd(t, 45*time.Second, e.RelayEnv(), "run")
	checkOutput(t, "run without publication", code, 2, out, e.Publication, "CREATE PUBLICATION", "relay migrate")
	var n int
	if err := e.PG.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", e.Slot).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("the refused start left replication slot %s behind", e.Slot)
	}
}
