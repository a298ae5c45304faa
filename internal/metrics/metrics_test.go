package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The test sticks to client_golang and the standard library: it names no
// client_model type and avoids prometheus/testutil (which would pull extra
// modules into go.mod).

// touchAll gives every collector a value so that each family is gathered.
func touchAll(m *Metrics) {
	m.EventsTotal.Add(3)
	m.BytesTotal.Add(300)
	m.BatchesTotal.Inc()
	m.BatchEvents.Observe(3)
	m.FlushDuration.Observe(0.02)
	m.EndToEndLag.Observe(0.5)
	m.SlotLagBytes.Set(1024)
	m.RetainedWALBytes.Set(4096)
	m.SetWALStatus("reserved")
	m.BufferEvents.Set(2)
	m.BufferBytes.Set(200)
	m.AckedLSN.Set(0x16B3748)
	m.LastAckTimestamp.SetToCurrentTime()
	m.SetStreamConnected(true)
	m.SetClickHouseUp(true)
	m.SinkErrorsTotal.WithLabelValues(SinkErrorRetryable).Inc()
	m.RowsDeletedTotal.Add(3)
	m.ReconnectsTotal.Inc()
	m.BackfilledEventsTotal.Inc()
	m.DeadLetterEventsTotal.Inc()
	m.DeclareStream("default", []string{"event_log"})
	m.SetGuarantee("default", "event_log", GuaranteeExactlyOnce)
}

// family is the part of a gathered metric family the tests look at.
type family struct {
	typ     string // COUNTER, GAUGE, HISTOGRAM, ...
	help    string
	series  map[string]float64 // label pairs "k=v,..." -> value (counter/gauge)
	buckets []float64          // histogram upper bounds (first series)
}

func gather(t *testing.T, m *Metrics) map[string]family {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]family, len(mfs))
	for _, mf := range mfs {
		f := family{typ: mf.GetType().String(), help: mf.GetHelp(), series: map[string]float64{}}
		for i, s := range mf.GetMetric() {
			var pairs []string
			for _, lp := range s.GetLabel() {
				pairs = append(pairs, lp.GetName()+"="+lp.GetValue())
			}
			key := strings.Join(pairs, ",")
			switch {
			case s.GetCounter() != nil:
				f.series[key] = s.GetCounter().GetValue()
			case s.GetGauge() != nil:
				f.series[key] = s.GetGauge().GetValue()
			case s.GetHistogram() != nil:
				f.series[key] = float64(s.GetHistogram().GetSampleCount())
				if i == 0 {
					for _, b := range s.GetHistogram().GetBucket() {
						f.buckets = append(f.buckets, b.GetUpperBound())
					}
				}
			}
		}
		out[mf.GetName()] = f
	}
	return out
}

// value returns the value of one series, failing the test if it is absent.
func value(t *testing.T, m *Metrics, name, labels string) float64 {
	t.Helper()
	f, ok := gather(t, m)[name]
	if !ok {
		t.Fatalf("%s not gathered", name)
	}
	v, ok := f.series[labels]
	if !ok {
		t.Fatalf("%s{%s} not gathered", name, labels)
	}
	return v
}

func TestEveryCollectorIsGathered(t *testing.T) {
	m := New()
	touchAll(m)
	fams := gather(t, m)

	for _, name := range Names() {
		if _, ok := fams[name]; !ok {
			t.Errorf("metric family %s not gathered from the registry", name)
		}
	}
	// Nothing prefixed outbox_relay_ is exported without being in Names.
	for name := range fams {
		if strings.HasPrefix(name, Namespace+"_") && !slices.Contains(Names(), name) {
			t.Errorf("gathered family %s is missing from Names()", name)
		}
	}
	// The Go and process collectors are on the same registry.
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("runtime family %s not gathered", name)
		}
	}
}

func TestFamiliesExistBeforeUse(t *testing.T) {
	// Families with no value yet must still be present for the labeled
	// vectors (pre-initialized) and for plain collectors.
	fams := gather(t, New())
	for _, name := range Names() {
		if slices.Contains(StreamFamilies(), name) {
			continue // their series are the streams' (DeclareStream)
		}
		if _, ok := fams[name]; !ok {
			t.Errorf("metric family %s absent from a fresh registry", name)
		}
	}
	if got := len(fams[NameSinkErrorsTotal].series); got != len(SinkErrorClasses()) {
		t.Errorf("%s has %d series before use, want %d", NameSinkErrorsTotal, got, len(SinkErrorClasses()))
	}
	if got := len(fams[NameWALStatus].series); got != len(WALStatuses()) {
		t.Errorf("%s has %d series before use, want %d", NameWALStatus, got, len(WALStatuses()))
	}
}

var nameRE = regexp.MustCompile(`^outbox_relay_[a-z][a-z0-9_]*[a-z0-9]$`)

func TestNamingConventions(t *testing.T) {
	m := New()
	touchAll(m)
	fams := gather(t, m)

	seen := map[string]bool{}
	for _, name := range Names() {
		if seen[name] {
			t.Errorf("Names() lists %s twice", name)
		}
		seen[name] = true
		if !nameRE.MatchString(name) {
			t.Errorf("%s: not a snake_case name with the outbox_relay_ prefix", name)
		}
		if strings.Contains(name, "__") {
			t.Errorf("%s: double underscore", name)
		}
		mf, ok := fams[name]
		if !ok {
			continue
		}
		if mf.help == "" || !strings.HasSuffix(mf.help, ".") {
			t.Errorf("%s: help %q should be a sentence ending in a period", name, mf.help)
		}
		switch mf.typ {
		case "COUNTER":
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s must end in _total", name)
			}
		case "GAUGE", "HISTOGRAM":
			if strings.HasSuffix(name, "_total") {
				t.Errorf("%s %s must not end in _total", mf.typ, name)
			}
			for _, bad := range []string{"_bucket", "_sum", "_count"} {
				if strings.HasSuffix(name, bad) {
					t.Errorf("%s: reserved suffix %s", name, bad)
				}
			}
		default:
			t.Errorf("%s: unexpected type %s", name, mf.typ)
		}
		for _, unit := range []string{"_milliseconds", "_ms", "_kilobytes", "_megabytes", "_minutes"} {
			if strings.Contains(name, unit) {
				t.Errorf("%s: use base units (seconds, bytes), not %s", name, unit)
			}
		}
		isHist := mf.typ == "HISTOGRAM"
		if isHist != slices.Contains(HistogramNames(), name) {
			t.Errorf("%s: HistogramNames() disagrees with the gathered type %s", name, mf.typ)
		}
		if isHist && strings.Contains(name, "duration") && !strings.HasSuffix(name, "_seconds") {
			t.Errorf("%s: a duration histogram must be in _seconds", name)
		}
		if strings.Contains(name, "bytes") && !strings.HasSuffix(name, "_bytes") && !strings.HasSuffix(name, "_bytes_total") {
			t.Errorf("%s: the _bytes unit must come last (before _total)", name)
		}
	}
}

func TestHistogramBuckets(t *testing.T) {
	m := New()
	touchAll(m)
	fams := gather(t, m)
	check := func(name string, lo, hi float64) {
		t.Helper()
		b := fams[name].buckets
		if len(b) == 0 {
			t.Fatalf("%s: no buckets", name)
		}
		if first, last := b[0], b[len(b)-1]; first != lo || last < hi {
			t.Errorf("%s buckets span %g..%g, want %g..>=%g", name, first, last, lo, hi)
		}
	}
	check(NameBatchEvents, 1, 100000)
	check(NameEndToEndLag, 0.001, 300)
	check(NameFlushDuration, 0.001, 60)
}

func TestSetWALStatus(t *testing.T) {
	m := New()
	for _, cur := range append(WALStatuses(), "Lost", "", "bogus") {
		m.SetWALStatus(cur)
		want := strings.ToLower(cur)
		if want == "" {
			want = WALStatusMissing
		}
		for _, s := range WALStatuses() {
			got := value(t, m, NameWALStatus, "status="+s)
			exp := 0.0
			if s == want {
				exp = 1
			}
			if got != exp {
				t.Errorf("after SetWALStatus(%q): status=%s is %g, want %g", cur, s, got, exp)
			}
		}
	}
	if n := len(gather(t, m)[NameWALStatus].series); n != len(WALStatuses()) {
		t.Errorf("wal_status has %d series, want %d (unknown values must not add labels)", n, len(WALStatuses()))
	}
}

func TestBoolGauges(t *testing.T) {
	m := New()
	m.SetStreamConnected(true)
	m.SetClickHouseUp(true)
	if value(t, m, NameStreamConnected, "") != 1 || value(t, m, NameClickHouseUp, "") != 1 {
		t.Fatal("want 1 after setting true")
	}
	m.SetStreamConnected(false)
	m.SetClickHouseUp(false)
	if value(t, m, NameStreamConnected, "") != 0 || value(t, m, NameClickHouseUp, "") != 0 {
		t.Fatal("want 0 after setting false")
	}
}

func TestIndependentRegistries(t *testing.T) {
	a, b := New(), New()
	if a.Registry() == b.Registry() {
		t.Fatal("two Metrics share a registry")
	}
	if prometheus.Registerer(a.Registry()) == prometheus.DefaultRegisterer {
		t.Fatal("Metrics uses the default registry")
	}
	a.EventsTotal.Add(5)
	if got := value(t, b, NameEventsTotal, ""); got != 0 {
		t.Fatalf("b.EventsTotal = %g after touching a", got)
	}
}

func TestHandler(t *testing.T) {
	m := New()
	touchAll(m)
	// Handler may be built more than once (e.g. by tests and the server).
	_ = m.Handler()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	for _, want := range []string{
		"outbox_relay_events_total 3",
		`outbox_relay_wal_status{status="reserved"} 1`,
		`outbox_relay_sink_errors_total{class="retryable"} 1`,
		`outbox_relay_sink_errors_total{class="fatal"} 0`,
		"outbox_relay_end_to_end_lag_seconds_bucket",
		"go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics output lacks %q", want)
		}
	}
}

func TestDeclareStream(t *testing.T) {
	m := New()
	m.DeclareStream("billing", []string{"billing_events"})
	m.SetGuarantee("billing", "billing_events", GuaranteeAtLeastOnce)
	m.SetGuarantee("billing", "billing_events", GuaranteeExactlyOnceFinal)
	fams := gather(t, m)
	if _, ok := fams[NameStreamEvents].series["stream=billing,table=billing_events"]; !ok {
		t.Errorf("%s has no series for the declared stream: %v", NameStreamEvents, fams[NameStreamEvents].series)
	}
	if _, ok := fams[NameStreamDeadLetters].series["stream=billing"]; !ok {
		t.Errorf("%s has no series for the declared stream", NameStreamDeadLetters)
	}
	g := fams[NameTableGuarantee].series
	if len(g) != 3 || g["guarantee=exactly_once_through_final,stream=billing,table=billing_events"] != 1 ||
		g["guarantee=at_least_once,stream=billing,table=billing_events"] != 0 {
		t.Errorf("%s = %v, want 1 for the last guarantee set and 0 for the others", NameTableGuarantee, g)
	}
}
