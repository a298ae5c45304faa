package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outbox-relay/relay/internal/config"
)

// outboxReaders are the commands that read the outbox, and so its streams.
var outboxReaders = [][]string{{"run"}, {"migrate"}, {"status"}, {"deadletter", "list"}, {"deadletter", "show"}, {"deadletter", "replay"}, {"deadletter", "discard"}}

func TestOutboxReadersTakeTheStreamFlags(t *testing.T) {
	root := newRoot(&env{environ: map[string]string{}, stdout: io.Discard, stderr: io.Discard})
	for _, path := range outboxReaders {
		cmd, _, err := root.Find(path)
		if err != nil || cmd == root {
			t.Errorf("relay %s: no such command (%v)", strings.Join(path, " "), err)
			continue
		}
		for _, name := range config.StreamFlags() {
			if cmd.Flags().Lookup(name) == nil {
				t.Errorf("relay %s has no --%s", strings.Join(path, " "), name)
			}
		}
	}
}

// A bad config file stops each of them with exit 2 before any connection,
// its problems at FILE:LINE, no secret of the URLs printed.
func TestBadConfigFileExits2(t *testing.T) {
	const secret = "Sup3rS3cretPw"
	path := filepath.Join(t.TempDir(), "relay.yaml")
	bad := "streams:\n  - name: app\n    outbox: public.core_outboxevent\n    clickhouse_tabel: event_log\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	environ := []string{"DATABASE_URL=postgres://u:" + secret + "@127.0.0.1:1/db", "CLICKHOUSE_URL=clickhouse://u:" + secret + "@127.0.0.1:1/db", "RELAY_CONFIG=" + path}
	more := map[string][]string{"show": {"00000000-0000-0000-0000-000000000001"}, "replay": {"--all"}, "discard": {"--all", "--yes"}}
	for _, path := range outboxReaders {
		args := append(append([]string{}, path...), more[path[len(path)-1]]...)
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), args, environ, &stdout, &stderr)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, ExitUsage, stderr.String())
			}
			for _, want := range []string{`relay.yaml:4: unknown key "clickhouse_tabel"`, "relay.yaml:2: stream: clickhouse_table is required"} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if strings.Contains(stderr.String()+stdout.String(), secret) {
				t.Errorf("output shows the password:\n%s", stderr.String())
			}
		})
	}
}
