package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Metric is one measured quantity over the runs of a scenario.
type Metric struct {
	Scenario string    `json:"scenario"`
	Name     string    `json:"metric"`
	Unit     string    `json:"unit"`
	Values   []float64 `json:"-"`
	Summary  Summary   `json:"-"`
	// Target is a goal such as ">= 1.5" (ratios only); Met says whether
	// the median reaches it.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
}

// MarshalJSON writes NaN (a run without this value) as null.
func (m *Metric) MarshalJSON() ([]byte, error) {
	type plain Metric
	vals := make([]*float64, len(m.Values))
	for i := range m.Values {
		vals[i] = finite(m.Values[i])
	}
	return json.Marshal(struct {
		*plain
		Values []*float64 `json:"values"`
		Median *float64   `json:"median"`
		Min    *float64   `json:"min"`
		Max    *float64   `json:"max"`
		N      int        `json:"n"`
	}{(*plain)(m), vals, finite(m.Summary.Median), finite(m.Summary.Min), finite(m.Summary.Max), m.Summary.N})
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// Machine describes where the numbers were taken.
type Machine struct {
	CPUs       int    `json:"nproc"`
	Model      string `json:"cpu_model"`
	MemoryMiB  int64  `json:"memory_mib"`
	GoVersion  string `json:"go_version"`
	PostgreSQL string `json:"postgresql"`
	ClickHouse string `json:"clickhouse"`
}

// ReadMachine fills what /proc and the runtime tell.
func ReadMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.Model = procField("/proc/cpuinfo", "model name")
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		var kb int64
		_, _ = fmt.Sscanf(v, "%d", &kb)
		m.MemoryMiB = kb / 1024
	}
	return m
}

func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Report is everything one relaybench invocation measured.
type Report struct {
	Machine  Machine           `json:"machine"`
	Command  string            `json:"command"`
	Mode     string            `json:"mode"`
	Started  time.Time         `json:"started"`
	Seconds  float64           `json:"seconds"`
	Settings map[string]string `json:"settings"`
	Metrics  []*Metric         `json:"metrics"`
	Notes    []string          `json:"notes,omitempty"`
}

// Add records one run's value of a metric.
func (r *Report) Add(scenario, name, unit string, v float64) {
	m := r.find(scenario, name)
	if m == nil {
		m = &Metric{Scenario: scenario, Name: name, Unit: unit}
		r.Metrics = append(r.Metrics, m)
	}
	m.Values = append(m.Values, v)
	m.Summary = Summarize(m.Values)
}

// Get returns a metric's per-run values (nil when never recorded).
func (r *Report) Get(scenario, name string) []float64 {
	if m := r.find(scenario, name); m != nil {
		return m.Values
	}
	return nil
}

func (r *Report) find(scenario, name string) *Metric {
	for _, m := range r.Metrics {
		if m.Scenario == scenario && m.Name == name {
			return m
		}
	}
	return nil
}

// Goal sets a target on a metric: op is ">=" or "<=".
func (r *Report) Goal(scenario, name, op string, limit float64) {
	m := r.find(scenario, name)
	if m == nil || math.IsNaN(m.Summary.Median) {
		return
	}
	m.Target = fmt.Sprintf("%s %s", op, fmtValue(limit))
	met := m.Summary.Median >= limit
	if op == "<=" {
		met = m.Summary.Median <= limit
	}
	m.Met = &met
}

// Print writes the one results table.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmetric\tmedian\tmin\tmax\tn\tunit\ttarget\t\t")
	// Measurements first, then the ratios derived from them.
	ordered := make([]*Metric, 0, len(r.Metrics))
	for _, ratios := range []bool{false, true} {
		for _, m := range r.Metrics {
			if (m.Scenario == RatioScenario) == ratios {
				ordered = append(ordered, m)
			}
		}
	}
	for _, m := range ordered {
		verdict := ""
		if m.Met != nil {
			verdict = map[bool]string{true: "met", false: "MISSED"}[*m.Met]
		}
		s := m.Summary
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t\n", m.Scenario, m.Name,
			fmtValue(s.Median), fmtValue(s.Min), fmtValue(s.Max), s.N, m.Unit, m.Target, verdict)
	}
	_ = tw.Flush()
}

func fmtValue(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "-"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// WriteJSON writes the report to path (creating its directory).
func (r *Report) WriteJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}
