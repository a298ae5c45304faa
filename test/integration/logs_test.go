package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// duplicateKey returns a key that occurs twice at the top level of the
// JSON object line ("" when none): log processors keep one of them, or
// reject the line.
func duplicateKey(line string) (string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if _, err := dec.Token(); err != nil { // {
		return "", err
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		key, _ := tok.(string)
		if seen[key] {
			return key, nil
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", err
		}
	}
	return "", nil
}

// checkLogLines fails t for every JSON log line of out with a key twice.
func checkLogLines(t *testing.T, what, out string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		key, err := duplicateKey(line)
		if err != nil {
			t.Errorf("%s: log line is not JSON (%v): %s", what, err, line)
		} else if key != "" {
			t.Errorf("%s: key %q twice in log line: %s", what, key, line)
		}
	}
}

// The JSON log lines of relay run (slot creation, backfill, streaming,
// shutdown) and relay api have each key once, and relay api says where it
// listens once.
func TestLogLinesHaveEachKeyOnce(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	faultInsert(t.Context(), t, e, "backfilled", 3)
	p := faultStart(t, relayBin, e)
	faultInsert(t.Context(), t, e, "streamed", 3)
	e.WaitDelivered(t, 6, time.Minute, p)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := faultExitCode(t, p, 30*time.Second); code != 0 {
		t.Fatalf("relay run exit %d after SIGTERM", code)
	}
	checkLogLines(t, "relay run", p.Output())

	addr := testenv.FreeAddr(t)
	api := testenv.Start(t, relayBin, append(e.RelayEnv(), "API_ADDR="+addr), "api")
	testenv.Eventually(t, 30*time.Second, "relay api answering", func() error {
		faultAlive(t, api, "starting relay api")
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		return nil
	})
	if err := api.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	api.Wait(30 * time.Second)
	out := api.Output()
	checkLogLines(t, "relay api", out)
	if n := bytes.Count([]byte(out), []byte(`"message":"api listening"`)); n != 1 {
		t.Errorf(`relay api logged "api listening" %d times, want once:%s`, n, fmt.Sprintf("\n%s", out))
	}
}
