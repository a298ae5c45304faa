package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pglogrepl"

	"github.com/outbox-relay/relay/internal/status"
	"github.com/outbox-relay/relay/internal/statuspage"
	"github.com/outbox-relay/relay/internal/testenv"
)

// chromiumPath finds the browser: $RELAY_CHROMIUM (set by make test after
// scripts/services.sh browser installed it), else chromium on PATH (or
// Google Chrome, which takes the same flags, as on CI runners).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RELAY_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed: apt-get install chromium (make test installs it with scripts/services.sh browser)")
	return ""
}

// newBrowser starts a headless chromium with a fresh profile and returns
// a tab's context.
func newBrowser(t *testing.T, bin string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", bin, err)
	}
	return ctx
}

// pageFields reads every figure of the page: data-f -> data-value (the raw
// value; the text is its human form).
const pageFields = `Object.fromEntries([...document.querySelectorAll('[data-f]')].map(e => [e.dataset.f, e.getAttribute('data-value')]))`

// TestStatusPageInBrowser loads the status page of a running relay in
// headless Chromium and checks what it shows against relay status --json:
// the verdict and its reasons, the slot, backlog, dead letters and
// ClickHouse; that it refreshes itself; that it fits a phone in dark mode.
// Screenshots are saved in the test's artifact directory.
func TestStatusPageInBrowser(t *testing.T) {
	t.Parallel()
	bin := chromiumPath(t)
	e := testenv.New(t)
	ctx := context.Background()
	addr := testenv.FreeAddr(t)
	// Lag is measured against the whole server's WAL, which parallel tests
	// write too: no lag verdict, so the verdict is stable.
	env := e.RelayEnv("RELAY_ADMIN_ADDR="+addr, "RELAY_STATUS_LAG_WARN_BYTES=0", "RELAY_STATUS_LAG_CRIT_BYTES=0")
	p := testenv.Start(t, relayBin, env, "run")
	faultInsert(ctx, t, e, "page", 30)
	dlCommitPoison(ctx, t, e, "poison", 1, 9)
	e.WaitDelivered(t, 39, time.Minute, p)
	// The charts have a point once two samples (5 s apart) saw the events.
	testenv.Eventually(t, time.Minute, "a chart sample with deliveries", func() error {
		s, err := getSnapshot(t.Context(), addr)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(s.Samples, func(x statuspage.Sample) bool { return x.EventsPerSecond > 0 }) {
			return fmt.Errorf("%d samples, none with deliveries", len(s.Samples))
		}
		return nil
	})

	tab := newBrowser(t, bin)
	// The page's figures must be gathered after `before` and before
	// `after` (it reuses a gather for 2 s): reload until they are.
	before := mustStatus(t, env)
	tBefore := time.Now()
	if err := chromedp.Do(tab, chromedp.Navigate("http://"+addr+"/"), chromedp.WaitVisible(`#verdict`)); err != nil {
		t.Fatalf("load the page: %v", err)
	}
	var fields map[string]string
	testenv.Eventually(t, 30*time.Second, "the page gathered after relay status", func() error {
		var err error
		if fields, err = chromedp.Run(tab, chromedp.Evaluate[map[string]string](pageFields)); err != nil {
			return err
		}
		at, err := time.Parse(time.RFC3339Nano, fields["time"])
		if err != nil || !at.After(tBefore) {
			if err := chromedp.Do(tab, chromedp.Reload(), chromedp.WaitVisible(`#verdict`)); err != nil {
				return err
			}
			return fmt.Errorf("page gathered at %q, before relay status ended at %s", fields["time"], tBefore)
		}
		return nil
	})
	reasons, err := chromedp.Run(tab, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#reasons li')].map(li => li.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	after := mustStatus(t, env)
	t.Logf("page figures: %v", fields)

	for _, c := range []struct {
		field string
		want  string
	}{
		{"verdict", string(after.Verdict)},
		{"slot", after.Slot},
		{"wal_status", after.WALStatus},
		{"active", strconv.FormatBool(after.Active)},
		{"max_slot_wal_keep_size_bytes", strconv.FormatInt(after.MaxSlotWALKeepSizeBytes, 10)},
		{"backlog_rows", strconv.FormatInt(after.BacklogRows, 10)},
		{"dead_letters", strconv.FormatInt(*after.DeadLetters, 10)},
		{"clickhouse_reachable", strconv.FormatBool(after.ClickHouseReachable)},
		{"clickhouse_version", after.ClickHouseVersion},
		{"clickhouse_rows", strconv.FormatUint(*after.ClickHouseRows, 10)},
		{"postgres_version", after.PostgresVersion},
		{"failover_ready", strconv.FormatBool(after.Failover.Ready)},
	} {
		if got := fields[c.field]; got != c.want {
			t.Errorf("page %s = %q, relay status --json says %q", c.field, got, c.want)
		}
	}
	checkStreamSections(t, tab, after)
	if after.Verdict != status.Warning || *after.DeadLetters != 1 || after.BacklogRows != 0 {
		t.Errorf("relay status: verdict %s, dead letters %d, backlog %d; want WARNING for 1 dead letter and an empty backlog",
			after.Verdict, *after.DeadLetters, after.BacklogRows)
	}
	if !slices.Equal(reasons, after.Reasons) {
		t.Errorf("page reasons %q, relay status --json %q", reasons, after.Reasons)
	}
	// Lag and retained WAL move with every WAL write on the server (other
	// tests'). The page read them between the two status readings; the
	// confirmed and restart positions only move forward, so its reading is
	// within the WAL written between them of what status said.
	grown := lsnOf(t, after.CurrentWALLSN) - lsnOf(t, before.CurrentWALLSN)
	for _, f := range []struct {
		field         string
		before, after *int64
	}{{"lag_bytes", before.LagBytes, after.LagBytes}, {"retained_wal_bytes", before.RetainedWALBytes, after.RetainedWALBytes}} {
		got, err := strconv.ParseInt(fields[f.field], 10, 64)
		if err != nil || f.before == nil || f.after == nil {
			t.Errorf("page %s = %q (%v), status before %v after %v", f.field, fields[f.field], err, f.before, f.after)
			continue
		}
		if got < *f.after-grown || got > *f.before+grown {
			t.Errorf("page %s = %d; relay status said %d before and %d after, %d bytes of WAL apart", f.field, got, *f.before, *f.after, grown)
		}
	}
	if n, err := strconv.ParseFloat(fields["last_flush_events"], 64); err != nil || n < 1 {
		t.Errorf("page last_flush_events = %q, want a flush", fields["last_flush_events"])
	}
	if r, err := strconv.ParseFloat(fields["rate_max"], 64); err != nil || r <= 0 || math.IsInf(r, 0) {
		t.Errorf("page rate_max = %q, want the throughput chart to show the deliveries", fields["rate_max"])
	}
	shot(tab, t, "status-page-desktop.png")

	// It refreshes itself: new events show up without a reload.
	faultInsert(ctx, t, e, "page-more", 5)
	e.WaitDelivered(t, 44, time.Minute, p)
	testenv.Eventually(t, 30*time.Second, "the page to show 44 rows in ClickHouse", func() error {
		rows, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector('[data-f="clickhouse_rows"]').getAttribute('data-value')`))
		if err != nil {
			return err
		}
		if rows != "44" {
			return fmt.Errorf("page shows %s", rows)
		}
		return nil
	})

	// A phone in dark mode: dark background, nothing wider than the screen.
	if _, err := chromedp.Call(tab, emulation.SetDeviceMetricsOverride,
		emulation.SetDeviceMetricsOverrideParams{Width: 390, Height: 844, DeviceScaleFactor: 3, Mobile: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(tab, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(tab, chromedp.Reload(), chromedp.WaitVisible(`#verdict`)); err != nil {
		t.Fatal(err)
	}
	bg, err := chromedp.Run(tab, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
	if err != nil {
		t.Fatal(err)
	}
	overflow, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil {
		t.Fatal(err)
	}
	if bg != "rgb(15, 18, 22)" {
		t.Errorf("dark mode background = %s, want rgb(15, 18, 22)", bg)
	}
	if overflow {
		t.Error("the page is wider than a 390 px phone screen")
	}
	shot(tab, t, "status-page-phone-dark.png")

	// Read-only: nothing but GET.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/status.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status.json = %d, want 405", resp.StatusCode)
	}
}

// streamFields reads each stream section of the page: stream -> data-s ->
// data-value, the tables' rows and guarantees under "table <name> rows"
// and "table <name> guarantee".
const streamFields = `Object.fromEntries([...document.querySelectorAll('section[data-stream]')].map(sec => [sec.dataset.stream,
	Object.fromEntries([...sec.querySelectorAll('dd[data-s]')].map(e => [e.dataset.s, e.getAttribute('data-value')])
		.concat([...sec.querySelectorAll('tr[data-table] td[data-s]')].map(e =>
			['table ' + e.parentElement.dataset.table + ' ' + e.dataset.s, e.getAttribute('data-value')])))]))`

// checkStreamSections compares the page's section of each stream with
// relay status --json's streams.
func checkStreamSections(t *testing.T, tab context.Context, r *status.Report) {
	t.Helper()
	got, err := chromedp.Run(tab, chromedp.Evaluate[map[string]map[string]string](streamFields))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(r.Streams) || len(r.Streams) == 0 {
		t.Errorf("page has %d stream sections (%v), relay status --json %d streams", len(got), got, len(r.Streams))
	}
	for _, s := range r.Streams {
		sec := got[s.Name]
		want := map[string]string{"outbox": s.Outbox, "backlog_rows": strconv.FormatInt(s.BacklogRows, 10),
			"clickhouse_table": s.ClickHouseTable, "in_publication": strconv.FormatBool(s.InPublication)}
		if s.DeadLetters != nil {
			want["dead_letters"] = strconv.FormatInt(*s.DeadLetters, 10)
		}
		for _, tb := range s.Tables {
			want["table "+tb.Name+" guarantee"] = tb.Guarantee
			if tb.Rows != nil {
				want["table "+tb.Name+" rows"] = strconv.FormatUint(*tb.Rows, 10)
			}
		}
		for k, v := range want {
			if sec[k] != v {
				t.Errorf("page stream %q %s = %q, relay status --json says %q", s.Name, k, sec[k], v)
			}
		}
	}
}

func lsnOf(t *testing.T, s string) int64 {
	t.Helper()
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatalf("parse LSN %q: %v", s, err)
	}
	return int64(lsn)
}

func getSnapshot(ctx context.Context, addr string) (statuspage.Snapshot, error) {
	var s statuspage.Snapshot
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status.json", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET /status.json: %s", resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func mustStatus(t *testing.T, env []string) *status.Report {
	t.Helper()
	_, r, out := relayStatus(t, env)
	if r == nil || r.DeadLetters == nil || r.ClickHouseRows == nil {
		t.Fatalf("relay status --json:\n%s", out)
	}
	return r
}

// shot saves a full-page screenshot in the test's artifact directory.
func shot(tab context.Context, t *testing.T, name string) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
