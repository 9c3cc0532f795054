// Package deploy holds the files operators install: the sample
// configuration, the systemd unit, Prometheus alert rules and a Grafana
// dashboard. Its tests check them against what the daemon really does:
// the rules and the dashboard name only metrics and labels the collectors
// describe, promtool accepts and unit-tests the rules, systemd accepts the
// unit.
package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/xskgate/xskgate/internal/metrics"
	"github.com/xskgate/xskgate/internal/protect"
)

// exported maps every metric name the daemon's collectors describe to its
// labels, read from the descriptors themselves.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	insp, err := protect.New(protect.Config{}, protect.Options{FlowCapacity: 1024})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc, 256)
	for _, c := range []prometheus.Collector{metrics.NewCollector(nil), metrics.NewIntegrityCollector(nil), insp.Collector()} {
		c.Describe(ch)
	}
	close(ch)
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	labels := regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	out := map[string][]string{}
	for d := range ch {
		s := d.String()
		n, l := name.FindStringSubmatch(s), labels.FindStringSubmatch(s)
		if n == nil || l == nil {
			t.Fatalf("cannot read descriptor %s", s)
		}
		out[n[1]] = strings.FieldsFunc(l[1], func(r rune) bool { return r == ',' })
	}
	if len(out) < 30 {
		t.Fatalf("only %d metrics described: %v", len(out), out)
	}
	return out
}

var (
	metricRef  = regexp.MustCompile(`\bxskgate_[a-z0-9_]+`)
	selector   = regexp.MustCompile(`(xskgate_[a-z0-9_]+)\{([^}]*)\}`)
	matcher    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	grouping   = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	scrapeKeys = []string{"instance", "job"} // added by Prometheus
)

// checkExpr reports the metrics and labels in a PromQL expression that the
// daemon does not export.
func checkExpr(t *testing.T, where, expr string, known map[string][]string) {
	t.Helper()
	names := metricRef.FindAllString(expr, -1)
	if len(names) == 0 {
		t.Errorf("%s: %q names no xskgate metric", where, expr)
	}
	var all []string
	for _, n := range names {
		ls, ok := known[n]
		if !ok {
			t.Errorf("%s: %s is not a metric xskgate exports", where, n)
		}
		all = append(all, ls...)
	}
	for _, m := range selector.FindAllStringSubmatch(expr, -1) {
		for _, l := range matcher.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(known[m[1]], l[1]) && !slices.Contains(scrapeKeys, l[1]) {
				t.Errorf("%s: %s has no label %q (it has %v)", where, m[1], l[1], known[m[1]])
			}
		}
	}
	for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !slices.Contains(all, l) && !slices.Contains(scrapeKeys, l) {
				t.Errorf("%s: grouping by %q, a label none of %v has", where, l, names)
			}
		}
	}
}

type rules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestAlertRules: every rule names exported metrics and labels, and, where
// promtool is installed, the rules pass promtool check rules and their
// unit tests (promtool test rules).
func TestAlertRules(t *testing.T) {
	known := exported(t)
	b, err := os.ReadFile("prometheus/xskgate-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var r rules
	if err := yaml.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range r.Groups {
		for _, ru := range g.Rules {
			checkExpr(t, "alert "+ru.Alert, ru.Expr, known)
			alerts = append(alerts, ru.Alert)
		}
	}
	for _, want := range []string{"XskgateIntegrityViolation", "XskgateKernelDrops", "XskgateFillRingEmpty",
		"XskgateTxRingFullDrops", "XskgateProtectionDropping", "XskgateWorkerStuck"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}
	promtool := lookTool(t, "promtool", "prometheus")
	for _, args := range [][]string{{"check", "rules", "xskgate-rules.yml"}, {"test", "rules", "xskgate-rules.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// lookTool finds a command or skips, naming the Debian package to install.
func lookTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install %s): the remaining checks need it", name, pkg)
	}
	return p
}

type panel struct {
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	ID         int             `json:"id"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    *struct{ H, W, X, Y int }
	Targets    []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

// TestDashboard: deploy/grafana/xskgate.json is a dashboard Grafana can
// provision (valid JSON, uid, title, panels with ids and positions, a
// Prometheus data source variable), and every panel's query names only
// metrics and labels the daemon exports; where promtool is installed, each
// query also parses as PromQL.
func TestDashboard(t *testing.T) {
	known := exported(t)
	b, err := os.ReadFile("grafana/xskgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID, Title    string
		SchemaVersion int `json:"schemaVersion"`
		Panels        []panel
		Templating    struct{ List []struct{ Name, Type string } }
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/xskgate.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 || len(d.Panels) < 10 {
		t.Fatalf("not a complete dashboard: uid %q title %q schemaVersion %d, %d panels", d.UID, d.Title, d.SchemaVersion, len(d.Panels))
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct{ Name, Type string }) bool { return v.Name == "datasource" && v.Type == "datasource" }) {
		t.Errorf("no datasource variable: a provisioned dashboard must not hard-code a data source")
	}
	ids := map[int]bool{}
	var exprs []string
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 || p.GridPos == nil {
			t.Errorf("panel %q: id %d duplicate or missing, or no gridPos", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 || !strings.Contains(string(p.Datasource), "${datasource}") {
			t.Errorf("panel %q: no targets, or data source %s is not the dashboard's variable", p.Title, p.Datasource)
		}
		for _, tg := range p.Targets {
			checkExpr(t, "panel "+p.Title+" "+tg.RefID, tg.Expr, known)
			exprs = append(exprs, tg.Expr)
		}
	}
	promtool := lookTool(t, "promtool", "prometheus")
	// promtool parses rule files: each query becomes a recording rule, with
	// Grafana's variables replaced by what they expand to.
	var rf strings.Builder
	rf.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		e = strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*").Replace(e)
		q, _ := json.Marshal(e)
		rf.WriteString("      - record: dashboard:q" + strings.Repeat("x", i+1) + "\n        expr: " + string(q) + "\n")
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, []byte(rf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("the dashboard's queries do not parse as PromQL: %v\n%s", err, out)
	}
}
