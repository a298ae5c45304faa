package docker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"

	"github.com/outbox-relay/relay/internal/metrics"
)

// repoRoot is the repository root: tests run in docker/.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return b
}

func readYAML(t *testing.T, rel string, out any) {
	t.Helper()
	if err := yaml.Unmarshal(readFile(t, rel), out); err != nil {
		t.Fatalf("parse %s: %v", rel, err)
	}
}

// relayEnvNames are the environment variables the relay binary reads (the
// CLI contract); a compose service running the relay image may set only these.
var relayEnvNames = []string{
	"DATABASE_URL",
	"CLICKHOUSE_URL",
	"RELAY_SLOT",
	"RELAY_PUBLICATION",
	"CH_OUTBOX_BATCH_SIZE",
	"CH_OUTBOX_PROCESSING_FREQUENCY_SEC",
	"RELAY_BATCH_BYTES",
	"RELAY_ADMIN_ADDR",
	"API_ADDR",
	"LOG_FORMAT",
	"LOG_LEVEL",
	"SENTRY_DSN",
}

// relayServices run the image built from the Dockerfile, with their command.
var relayServices = map[string]string{"migrate": "migrate", "relay": "run", "api": "api"}

var (
	monitoringServices = []string{"prometheus", "grafana"}
	defaultServices    = []string{"postgres", "clickhouse", "migrate", "relay", "api"}
)

// ---------------------------------------------------------------------------
// docker-compose.yml

func loadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	file := filepath.Join(root, "docker-compose.yml")
	content, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: file, Content: content}},
		// Empty: nothing from the test's own environment leaks into the
		// project, so ${VAR:-default} interpolations take their defaults.
		Environment: types.Mapping{},
	}
	project, err := loader.LoadWithContext(t.Context(), details, func(o *loader.Options) {
		o.SetProjectName("outbox-relay", true)
		o.Profiles = profiles
		o.ResolvePaths = true
		o.SkipResolveEnvironment = true
		o.SkipConsistencyCheck = false
	})
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return project
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml: no service %q (have %v)", name, slices.Sorted(maps(p.Services)))
	}
	return s
}

func maps(s types.Services) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range s {
			if !yield(k) {
				return
			}
		}
	}
}

func env(s types.ServiceConfig, key string) string {
	if v, ok := s.Environment[key]; ok && v != nil {
		return *v
	}
	return ""
}

func TestComposeProfiles(t *testing.T) {
	p := loadCompose(t) // no profile: the default stack
	for _, name := range defaultServices {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("service %s is not part of the default stack", name)
		}
	}
	for _, name := range monitoringServices {
		if _, ok := p.Services[name]; ok {
			t.Errorf("service %s runs without the monitoring profile", name)
		}
		s, ok := p.DisabledServices[name]
		if !ok {
			t.Errorf("service %s is missing", name)
			continue
		}
		if !slices.Equal(s.Profiles, []string{"monitoring"}) {
			t.Errorf("service %s: profiles %v, want [monitoring]", name, s.Profiles)
		}
	}
	all := loadCompose(t, "*")
	for _, name := range append(slices.Clone(defaultServices), monitoringServices...) {
		service(t, all, name)
	}
}

func TestComposePostgres(t *testing.T) {
	pg := service(t, loadCompose(t), "postgres")
	if !strings.HasPrefix(pg.Image, "postgres:") {
		t.Errorf("postgres image %q", pg.Image)
	}
	cmd := strings.Join(pg.Command, " ")
	for _, want := range []string{"wal_level=logical", "max_replication_slots=", "max_wal_senders=", "max_slot_wal_keep_size="} {
		if !strings.Contains(cmd, want) {
			t.Errorf("postgres command %q lacks %s", cmd, want)
		}
	}
	if pg.HealthCheck == nil || !strings.Contains(strings.Join(pg.HealthCheck.Test, " "), "pg_isready") {
		t.Errorf("postgres healthcheck must use pg_isready")
	}
	named := false
	for _, v := range pg.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Target == "/var/lib/postgresql/data" {
			named = true
		}
	}
	if !named {
		t.Errorf("postgres data is not on a named volume")
	}
}

var chImageRE = regexp.MustCompile(`^clickhouse/clickhouse-server:(\d+)(?:\.\d+)*$`)

func TestComposeClickHouse(t *testing.T) {
	ch := service(t, loadCompose(t), "clickhouse")
	m := chImageRE.FindStringSubmatch(ch.Image)
	if m == nil {
		t.Fatalf("clickhouse image %q is not clickhouse/clickhouse-server:<version>", ch.Image)
	}
	if major, _ := strconv.Atoi(m[1]); major < 23 {
		t.Errorf("clickhouse image %q: major version %d < 23", ch.Image, major)
	}
	for _, k := range []string{"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_DB"} {
		if env(ch, k) == "" {
			t.Errorf("clickhouse: %s not set", k)
		}
	}
	if env(ch, "CLICKHOUSE_DB") != "relay" {
		t.Errorf("clickhouse: CLICKHOUSE_DB=%q, want relay", env(ch, "CLICKHOUSE_DB"))
	}
	if env(ch, "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT") != "1" {
		t.Errorf("clickhouse: CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT should be 1")
	}
	if ch.HealthCheck == nil || len(ch.HealthCheck.Test) == 0 {
		t.Errorf("clickhouse has no healthcheck")
	}
	if u := ch.Ulimits["nofile"]; u == nil || (u.Soft < 65536 && u.Single < 65536) {
		t.Errorf("clickhouse: ulimits nofile should be raised, got %+v", u)
	}
}

func TestComposeRelayServices(t *testing.T) {
	p := loadCompose(t)
	root := repoRoot(t)
	pg, ch := service(t, p, "postgres"), service(t, p, "clickhouse")

	for name, command := range relayServices {
		s := service(t, p, name)
		if s.Build == nil {
			t.Errorf("%s: not built from the Dockerfile", name)
		} else {
			if filepath.Clean(s.Build.Context) != root {
				t.Errorf("%s: build context %q, want the repository root", name, s.Build.Context)
			}
			df := s.Build.Dockerfile
			if df == "" {
				df = "Dockerfile" // compose's default
			}
			if !filepath.IsAbs(df) {
				df = filepath.Join(s.Build.Context, df)
			}
			if df != filepath.Join(root, "docker", "Dockerfile") {
				t.Errorf("%s: dockerfile %q, want %s", name, df, filepath.Join(root, "docker", "Dockerfile"))
			}
		}
		if !slices.Equal(s.Command, types.ShellCommand{command}) {
			t.Errorf("%s: command %q, want [%s]", name, s.Command, command)
		}
		for k := range s.Environment {
			if !slices.Contains(relayEnvNames, k) {
				t.Errorf("%s: environment variable %s is not one the relay reads", name, k)
			}
		}

		// DATABASE_URL and CLICKHOUSE_URL point at the compose services
		// with the credentials those services are created with.
		db, err := url.Parse(env(s, "DATABASE_URL"))
		if err != nil || (db.Scheme != "postgres" && db.Scheme != "postgresql") {
			t.Errorf("%s: DATABASE_URL %q is not a postgres:// URL", name, env(s, "DATABASE_URL"))
		} else {
			pw, _ := db.User.Password()
			if db.Host != "postgres:5432" || db.User.Username() != env(pg, "POSTGRES_USER") ||
				pw != env(pg, "POSTGRES_PASSWORD") || strings.TrimPrefix(db.Path, "/") != env(pg, "POSTGRES_DB") {
				t.Errorf("%s: DATABASE_URL %q does not match the postgres service", name, db.Redacted())
			}
		}
		cu, err := url.Parse(env(s, "CLICKHOUSE_URL"))
		if err != nil || cu.Scheme != "clickhouse" {
			t.Errorf("%s: CLICKHOUSE_URL %q is not a clickhouse:// URL", name, env(s, "CLICKHOUSE_URL"))
		} else {
			pw, _ := cu.User.Password()
			if cu.Host != "clickhouse:9000" || cu.User.Username() != env(ch, "CLICKHOUSE_USER") ||
				pw != env(ch, "CLICKHOUSE_PASSWORD") || strings.TrimPrefix(cu.Path, "/") != env(ch, "CLICKHOUSE_DB") {
				t.Errorf("%s: CLICKHOUSE_URL %q does not match the clickhouse service (native port 9000)", name, cu.Redacted())
			}
		}
	}

	migrate := service(t, p, "migrate")
	for _, dep := range []string{"postgres", "clickhouse"} {
		if d, ok := migrate.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("migrate must depend on %s being healthy, got %+v", dep, d)
		}
	}
	if migrate.Restart != "no" && migrate.Restart != "" {
		t.Errorf("migrate: restart %q, want \"no\"", migrate.Restart)
	}
	for _, name := range []string{"relay", "api"} {
		d, ok := service(t, p, name).DependsOn["migrate"]
		if !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s must depend on migrate completing successfully, got %+v", name, d)
		}
	}

	publishes := func(s types.ServiceConfig, port uint32) bool {
		for _, p := range s.Ports {
			if p.Target == port {
				return true
			}
		}
		return false
	}
	if r := service(t, p, "relay"); !publishes(r, 9090) {
		t.Errorf("relay does not publish its admin port 9090")
	}
	// The relay listens on loopback by default; published from a container,
	// it must open the admin address itself.
	if got := env(service(t, p, "relay"), "RELAY_ADMIN_ADDR"); got != ":9090" {
		t.Errorf("relay: RELAY_ADMIN_ADDR %q, want \":9090\" (the default is loopback, unreachable through the published port)", got)
	}
	if a := service(t, p, "api"); !publishes(a, 8080) {
		t.Errorf("api does not publish port 8080")
	}
}

// bindMounts returns source → target of every bind mount of a service.
func bindMounts(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			out[v.Source] = v.Target
		}
	}
	return out
}

func TestComposeMountedFilesExist(t *testing.T) {
	p := loadCompose(t, "*")
	root := repoRoot(t)
	deployDir := filepath.Join(root, "docker") + string(filepath.Separator)
	n := 0
	for name, s := range p.Services {
		for src := range bindMounts(s) {
			if !filepath.IsAbs(src) {
				t.Errorf("%s: bind source %q was not resolved to an absolute path", name, src)
				continue
			}
			if !strings.HasPrefix(src, root+string(filepath.Separator)) {
				t.Errorf("%s: bind mount %s from outside the repository", name, src)
				continue
			}
			if strings.HasPrefix(src, deployDir) {
				n++
			}
			if _, err := os.Stat(src); err != nil {
				t.Errorf("%s: mounted path %s: %v", name, src, err)
			}
		}
	}
	if n == 0 {
		t.Error("no service mounts anything from ./docker")
	}
}

// ---------------------------------------------------------------------------
// Prometheus and Grafana provisioning

type promConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// relayJob is the Prometheus job name the alerts and dashboard select on.
const relayJob = "outbox-relay"

func TestPrometheusConfig(t *testing.T) {
	var cfg promConfig
	readYAML(t, "docker/prometheus/prometheus.yml", &cfg)

	found := false
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			if slices.Contains(st.Targets, "relay:9090") {
				found = true
				if sc.JobName != relayJob {
					t.Errorf("relay scrape job is %q, want %q (alerts and dashboard select on it)", sc.JobName, relayJob)
				}
				if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
					t.Errorf("relay metrics_path %q", sc.MetricsPath)
				}
			}
		}
	}
	if !found {
		t.Error("prometheus.yml does not scrape relay:9090")
	}

	// The container paths Prometheus reads are the ones compose mounts.
	prom := service(t, loadCompose(t, "monitoring"), "prometheus")
	mounts := bindMounts(prom)
	root := repoRoot(t)
	targetOf := func(rel string) string { return mounts[filepath.Join(root, filepath.FromSlash(rel))] }
	cfgTarget := targetOf("docker/prometheus/prometheus.yml")
	if cfgTarget == "" {
		t.Fatal("prometheus service does not mount docker/prometheus/prometheus.yml")
	}
	if cmd := strings.Join(prom.Command, " "); strings.Contains(cmd, "--config.file") &&
		!strings.Contains(cmd, "--config.file="+cfgTarget) {
		t.Errorf("prometheus --config.file does not point at the mounted %s", cfgTarget)
	}
	rulesTarget := targetOf("docker/prometheus/alerts.yml")
	if rulesTarget == "" {
		t.Fatal("prometheus service does not mount docker/prometheus/alerts.yml")
	}
	ok := false
	for _, rf := range cfg.RuleFiles {
		if rf == rulesTarget || (!path.IsAbs(rf) && path.Join(path.Dir(cfgTarget), rf) == rulesTarget) {
			ok = true
		}
	}
	if !ok {
		t.Errorf("rule_files %v do not include the mounted %s", cfg.RuleFiles, rulesTarget)
	}
}

type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var requiredAlerts = []string{
	"OutboxRelayDown",
	"OutboxRelaySlotLagHigh",
	"OutboxRelayWALStatusUnreserved",
	"OutboxRelayWALStatusLost",
	"OutboxRelayStuck",
	"OutboxRelaySinkErrors",
	"OutboxRelayStreamDisconnected",
}

var durationRE = regexp.MustCompile(`^(\d+(ms|s|m|h|d|w|y))+$`)

func TestAlertRules(t *testing.T) {
	var rules alertRules
	readYAML(t, "docker/prometheus/alerts.yml", &rules)
	if len(rules.Groups) == 0 {
		t.Fatal("alerts.yml has no groups")
	}
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		if g.Name == "" {
			t.Error("a rule group has no name")
		}
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule has no alert name (record=%q)", g.Name, r.Record)
				continue
			}
			if seen[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			seen[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: empty expr", r.Alert)
			}
			if err := balanced(r.Expr); err != "" {
				t.Errorf("%s: expr %q: %s", r.Alert, r.Expr, err)
			}
			if r.For != "" && !durationRE.MatchString(r.For) {
				t.Errorf("%s: for %q is not a Prometheus duration", r.Alert, r.For)
			}
			switch r.Labels["severity"] {
			case "warning", "critical":
			default:
				t.Errorf("%s: labels.severity %q, want warning or critical", r.Alert, r.Labels["severity"])
			}
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					t.Errorf("%s: annotations.%s missing", r.Alert, k)
				}
			}
			if u := r.Annotations["runbook_url"]; !strings.Contains(u, "README.md#operating") {
				t.Errorf("%s: runbook_url %q does not point at README.md#operating…", r.Alert, u)
			}
			if strings.Contains(r.Expr, "up{") && !strings.Contains(r.Expr, `job="`+relayJob+`"`) {
				t.Errorf("%s: up{} must select job=%q", r.Alert, relayJob)
			}
		}
	}
	for _, name := range requiredAlerts {
		if !seen[name] {
			t.Errorf("alert %s is missing", name)
		}
	}
}

// balanced reports unbalanced brackets or quotes in a PromQL expression.
func balanced(expr string) string {
	var stack []rune
	pair := map[rune]rune{')': '(', ']': '[', '}': '{'}
	var quote rune
	for _, c := range expr {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, c)
		case c == ')' || c == ']' || c == '}':
			if len(stack) == 0 || stack[len(stack)-1] != pair[c] {
				return "unbalanced " + string(c)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if quote != 0 {
		return "unterminated string"
	}
	if len(stack) > 0 {
		return "unclosed " + string(stack[len(stack)-1])
	}
	return ""
}

var metricRE = regexp.MustCompile(`outbox_relay_[a-z0-9_]*[a-z0-9]`)

// checkMetricNames fails for every outbox_relay_* name in expr that the
// relay does not export (histogram series suffixes are allowed).
func checkMetricNames(t *testing.T, where, expr string) []string {
	t.Helper()
	names := metrics.Names()
	var found []string
	for _, n := range metricRE.FindAllString(expr, -1) {
		base := n
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(n, suf); ok && slices.Contains(metrics.HistogramNames(), b) {
				base = b
			}
		}
		if !slices.Contains(names, base) {
			t.Errorf("%s: %s is not a metric the relay exports (metrics.Names)", where, n)
		}
		found = append(found, base)
	}
	return found
}

func TestAlertMetricNames(t *testing.T) {
	var rules alertRules
	readYAML(t, "docker/prometheus/alerts.yml", &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			checkMetricNames(t, "alert "+r.Alert, r.Expr)
		}
	}
}

// collectExprs gathers every PromQL string of a dashboard: panel target
// "expr" fields and templating queries.
func collectExprs(v any, key string, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			collectExprs(c, k, out)
		}
	case []any:
		for _, c := range x {
			collectExprs(c, key, out)
		}
	case string:
		switch key {
		case "expr", "query", "definition":
			*out = append(*out, x)
		}
	}
}

func loadDashboard(t *testing.T) map[string]any {
	t.Helper()
	var dash map[string]any
	dec := json.NewDecoder(bytes.NewReader(readFile(t, "docker/grafana/dashboards/outbox-relay.json")))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("parse dashboard: %v", err)
	}
	return dash
}

func TestDashboard(t *testing.T) {
	dash := loadDashboard(t)
	if dash["uid"] == "" || dash["title"] == "" {
		t.Error("dashboard needs a uid and a title")
	}
	var exprs []string
	collectExprs(dash, "", &exprs)
	if len(exprs) == 0 {
		t.Fatal("dashboard has no queries")
	}
	used := map[string]bool{}
	for _, e := range exprs {
		if err := balanced(e); err != "" {
			t.Errorf("dashboard query %q: %s", e, err)
		}
		for _, n := range checkMetricNames(t, "dashboard", e) {
			used[n] = true
		}
	}
	for _, want := range []string{
		metrics.NameSlotLagBytes, metrics.NameRetainedWALBytes, metrics.NameEndToEndLag,
		metrics.NameEventsTotal, metrics.NameFlushDuration, metrics.NameSinkErrorsTotal,
		metrics.NameBufferBytes, metrics.NameWALStatus,
	} {
		if !used[want] {
			t.Errorf("dashboard has no panel on %s", want)
		}
	}
	joined := strings.Join(exprs, "\n")
	for _, q := range []string{"histogram_quantile(0.5,", "histogram_quantile(0.99,"} {
		if !strings.Contains(joined, q+" sum by (le) (rate("+metrics.NameEndToEndLag+"_bucket") {
			t.Errorf("dashboard lacks the end-to-end lag %s…) panel", q)
		}
	}

	// Every panel and target uses the provisioned datasource.
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, "docker/grafana/provisioning/datasources/prometheus.yml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("want one prometheus datasource, got %+v", ds.Datasources)
	}
	if u, err := url.Parse(ds.Datasources[0].URL); err != nil || u.Host != "prometheus:9090" {
		t.Errorf("datasource url %q should be http://prometheus:9090", ds.Datasources[0].URL)
	}
	uid := ds.Datasources[0].UID
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if d, ok := x["datasource"].(map[string]any); ok && d["uid"] != uid {
				t.Errorf("datasource uid %v, want the provisioned %q", d["uid"], uid)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(dash)
	ids := map[float64]bool{}
	for _, p := range dash["panels"].([]any) {
		id, _ := p.(map[string]any)["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v used twice", id)
		}
		ids[id] = true
	}
}

func TestGrafanaProvisioning(t *testing.T) {
	var prov struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "docker/grafana/provisioning/dashboards/dashboards.yml", &prov)
	if prov.APIVersion != 1 || len(prov.Providers) == 0 {
		t.Fatalf("dashboards.yml: want apiVersion 1 and a provider, got %+v", prov)
	}
	g := service(t, loadCompose(t, "monitoring"), "grafana")
	mounts := bindMounts(g)
	root := repoRoot(t)
	if got := mounts[filepath.Join(root, "docker", "grafana", "provisioning")]; got != "/etc/grafana/provisioning" {
		t.Errorf("grafana: docker/grafana/provisioning mounted at %q, want /etc/grafana/provisioning", got)
	}
	dashTarget := mounts[filepath.Join(root, "docker", "grafana", "dashboards")]
	if dashTarget == "" || prov.Providers[0].Options.Path != dashTarget {
		t.Errorf("dashboard provider path %q is not where docker/grafana/dashboards is mounted (%q)",
			prov.Providers[0].Options.Path, dashTarget)
	}
}

// ---------------------------------------------------------------------------
// Dockerfile and .dockerignore

type stage struct {
	image, name string
	lines       []string // instructions after FROM, continuations joined
}

// dockerfileStages splits a Dockerfile into stages, joining "\"-continued
// lines and dropping comments.
func dockerfileStages(t *testing.T) []stage {
	t.Helper()
	var stages []stage
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, "docker/Dockerfile")))
	flush := func(line string) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			return
		}
		if strings.EqualFold(fields[0], "FROM") {
			var args []string
			for _, f := range fields[1:] {
				if !strings.HasPrefix(f, "--") {
					args = append(args, f)
				}
			}
			if len(args) == 0 {
				t.Fatalf("Dockerfile: bare FROM")
			}
			s := stage{image: args[0]}
			if len(args) == 3 && strings.EqualFold(args[1], "AS") {
				s.name = args[2]
			}
			stages = append(stages, s)
			return
		}
		if len(stages) == 0 {
			if !strings.EqualFold(fields[0], "ARG") {
				t.Errorf("Dockerfile: %q before the first FROM", line)
			}
			return
		}
		stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
	}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") { // comment inside a continued instruction
			continue
		}
		if c, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(c + " ")
			continue
		}
		cur.WriteString(line)
		flush(cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		flush(cur.String())
	}
	return stages
}

func instr(lines []string, name string) []string {
	var out []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], name) {
			out = append(out, strings.TrimSpace(l[len(f[0]):]))
		}
	}
	return out
}

var goDirectiveRE = regexp.MustCompile(`(?m)^go (\d+\.\d+)`)

func TestDockerfile(t *testing.T) {
	stages := dockerfileStages(t)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s), want a multi-stage build", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	// The build stage uses the Go of go.mod.
	m := goDirectiveRE.FindSubmatch(readFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	if !strings.HasPrefix(build.image, "golang:"+string(m[1])) {
		t.Errorf("build stage image %q does not match go.mod's go %s", build.image, m[1])
	}
	runs := strings.Join(instr(build.lines, "RUN"), "\n")
	if !strings.Contains(runs, "go mod download") {
		t.Error("build stage does not download modules in their own layer")
	}
	copies := instr(build.lines, "COPY")
	if len(copies) == 0 || !strings.Contains(copies[0], "go.mod") || !strings.Contains(copies[0], "go.sum") {
		t.Errorf("the first COPY should copy go.mod and go.sum only, got %q", copies)
	}
	for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", "./cmd/relay", "-X " + buildinfoPkg + ".Version="} {
		if !strings.Contains(runs, want) {
			t.Errorf("build stage RUN lacks %q", want)
		}
	}

	// Final stage: distroless, non-root, the relay binary as entrypoint.
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") {
		t.Errorf("final image %q is not distroless/static", final.image)
	}
	users := instr(final.lines, "USER")
	if len(users) == 0 {
		t.Error("final stage sets no USER")
	} else if u := strings.SplitN(users[len(users)-1], ":", 2)[0]; u == "root" || u == "0" {
		t.Errorf("final stage runs as %q", users[len(users)-1])
	}
	if got := instr(final.lines, "ENTRYPOINT"); len(got) != 1 || got[0] != `["/relay"]` {
		t.Errorf(`ENTRYPOINT %q, want ["/relay"]`, got)
	}
	if got := instr(final.lines, "CMD"); len(got) != 1 || got[0] != `["run"]` {
		t.Errorf(`CMD %q, want ["run"]`, got)
	}
	// The relay's default admin address is loopback, which nothing outside
	// a container reaches: the image opens it, as its EXPOSE says.
	if envs := instr(final.lines, "ENV"); !slices.Contains(envs, "RELAY_ADMIN_ADDR=:9090") {
		t.Errorf("final stage ENV %q does not set RELAY_ADMIN_ADDR=:9090", envs)
	}
	expose := strings.Fields(strings.Join(instr(final.lines, "EXPOSE"), " "))
	for _, port := range []string{"9090", "8080"} {
		if !slices.Contains(expose, port) {
			t.Errorf("final stage does not EXPOSE %s", port)
		}
	}
	if cp := strings.Join(instr(final.lines, "COPY"), "\n"); !strings.Contains(cp, "--from=") || !strings.Contains(cp, "/relay") {
		t.Errorf("final stage does not copy /relay from the build stage: %q", cp)
	}
}

// buildinfoPkg is the package whose Version the Dockerfile stamps with -X.
const buildinfoPkg = "github.com/outbox-relay/relay/internal/buildinfo"

// TestBuildInfoVersionVar guards the -X flag: the linker silently ignores
// -X for a variable that does not exist.
func TestBuildInfoVersionVar(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "internal", "buildinfo")
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, sp := range gd.Specs {
				vs := sp.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if n.Name != "Version" {
						continue
					}
					// -X needs a string variable, uninitialized or set to a constant string.
					if id, ok := vs.Type.(*ast.Ident); vs.Type != nil && (!ok || id.Name != "string") {
						t.Errorf("buildinfo.Version has type %v, want string", vs.Type)
					}
					if i < len(vs.Values) {
						if _, ok := vs.Values[i].(*ast.BasicLit); !ok {
							t.Errorf("buildinfo.Version must be initialized to a string literal for -X to work")
						}
					}
					return
				}
			}
		}
	}
	t.Errorf("no package-level var Version in %s (the Dockerfile sets it with -X)", dir)
}

func TestDockerignoreKeepsBuildInputs(t *testing.T) {
	var patterns []string
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, ".dockerignore")))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "!") {
			continue
		}
		patterns = append(patterns, strings.TrimPrefix(l, "/"))
	}
	for _, p := range []string{".git", ".services"} {
		if !slices.Contains(patterns, p) {
			t.Errorf(".dockerignore should exclude %s", p)
		}
	}
	for _, needed := range []string{"go.mod", "go.sum", "cmd", "cmd/relay", "internal", "migrations", "outbox"} {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, needed); ok || p == needed {
				t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", p, needed)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// CI workflow and linter configuration

type workflow struct {
	Jobs map[string]struct {
		RunsOn   any                       `yaml:"runs-on"`
		Services map[string]map[string]any `yaml:"services"`
		Env      map[string]string         `yaml:"env"`
		Steps    []map[string]any          `yaml:"steps"`
	} `yaml:"jobs"`
}

func TestCIWorkflow(t *testing.T) {
	var raw map[string]any
	readYAML(t, ".github/workflows/ci.yml", &raw)
	on, ok := raw["on"].(map[string]any)
	if !ok {
		t.Fatalf(`ci.yml: "on" is %T, want a mapping`, raw["on"])
	}
	for _, ev := range []string{"push", "pull_request"} {
		if _, ok := on[ev]; !ok {
			t.Errorf("ci.yml does not run on %s", ev)
		}
	}

	var wf workflow
	readYAML(t, ".github/workflows/ci.yml", &wf)
	for _, name := range []string{"lint", "test"} {
		job, ok := wf.Jobs[name]
		if !ok {
			t.Errorf("ci.yml has no job %q", name)
			continue
		}
		if job.RunsOn == nil {
			t.Errorf("job %s has no runs-on", name)
		}
		if len(job.Steps) == 0 {
			t.Errorf("job %s has no steps", name)
		}
		for i, st := range job.Steps {
			_, uses := st["uses"]
			_, run := st["run"]
			if uses == run {
				t.Errorf("job %s step %d: want exactly one of uses or run, got %v", name, i, st)
			}
		}
	}

	stepText := func(job string) string {
		var b strings.Builder
		for _, st := range wf.Jobs[job].Steps {
			for _, k := range []string{"uses", "run"} {
				if s, ok := st[k].(string); ok {
					b.WriteString(s + "\n")
				}
			}
			if w, ok := st["with"].(map[string]any); ok {
				for k, v := range w {
					b.WriteString(k + "=" + strings.TrimSpace(toString(v)) + "\n")
				}
			}
		}
		return b.String()
	}
	lint := stepText("lint")
	for _, want := range []string{"actions/checkout@", "actions/setup-go@", "go-version-file=go.mod", "go vet ./...", "golangci/golangci-lint-action@", "version=v2"} {
		if !strings.Contains(lint, want) {
			t.Errorf("lint job lacks %q", want)
		}
	}
	test := stepText("test")
	for _, want := range []string{"go-version-file=go.mod", "go test -race", "wal_level=logical", "pg_isready"} {
		if !strings.Contains(test, want) {
			t.Errorf("test job lacks %q", want)
		}
	}
	tj := wf.Jobs["test"]
	for _, k := range []string{"DATABASE_URL", "CLICKHOUSE_URL"} {
		if tj.Env[k] == "" {
			t.Errorf("test job does not set %s", k)
		}
	}
	if u, err := url.Parse(tj.Env["CLICKHOUSE_URL"]); err != nil || u.Scheme != "clickhouse" || u.Port() != "9000" {
		t.Errorf("test job CLICKHOUSE_URL %q should use the native port 9000", tj.Env["CLICKHOUSE_URL"])
	}
	chSvc, ok := tj.Services["clickhouse"]
	if !ok {
		t.Fatal("test job has no clickhouse service")
	}
	img, _ := chSvc["image"].(string)
	if m := chImageRE.FindStringSubmatch(img); m == nil {
		t.Errorf("test job clickhouse image %q", img)
	} else if major, _ := strconv.Atoi(m[1]); major < 23 {
		t.Errorf("test job clickhouse image %q is older than 23", img)
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

func TestGolangciConfig(t *testing.T) {
	var cfg struct {
		Version string `yaml:"version"`
		Linters struct {
			Default string   `yaml:"default"`
			Enable  []string `yaml:"enable"`
		} `yaml:"linters"`
	}
	readYAML(t, ".golangci.yml", &cfg)
	if cfg.Version != "2" {
		t.Errorf(`.golangci.yml version %q, want "2"`, cfg.Version)
	}
	for _, l := range []string{"errorlint", "bodyclose", "noctx", "misspell", "revive"} {
		if !slices.Contains(cfg.Linters.Enable, l) {
			t.Errorf(".golangci.yml does not enable %s", l)
		}
	}
}
