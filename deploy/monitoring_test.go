package deploy

import (
	"encoding/json"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/hallmarkid/hallmark/internal/telemetry"
)

// exported returns every series family the server and the agent export,
// with every optional collector wired as the daemons wire it.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	srv := telemetry.New(telemetry.Config{Daemon: telemetry.Server, Attestors: []string{"tpm"}})
	srv.AuditStats(func() (uint64, uint64, uint64) { return 0, 0, 0 })
	srv.AttestedAgents(func() int { return 0 })
	expiry := func() map[string]time.Time { return map[string]time.Time{"active": time.Now()} }
	srv.AuthorityExpiry("x509", expiry)
	srv.AuthorityExpiry(telemetry.KindJWT, expiry)
	srv.NodeAPIRefused("connections")
	srv.FederationRefreshed("example.org", time.Now(), nil)
	srv.ObserveDatastore("ping", time.Millisecond)
	ag := telemetry.New(telemetry.Config{Daemon: telemetry.Agent})
	ag.AgentCache(func() telemetry.CacheStats { return telemetry.CacheStats{} })
	out := map[string]bool{"up": true}
	for _, m := range []*telemetry.Metrics{srv, ag} {
		fams, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			out[f.GetName()] = true
		}
	}
	// Vectors without observations yet do not gather: name them.
	for _, n := range []string{"hallmark_rpc_duration_seconds", "hallmark_propagation_lag_seconds", "hallmark_federation_refresh_failures_total"} {
		out[n] = true
	}
	return out
}

// seriesIn returns the metric names an expression selects.
func seriesIn(t *testing.T, p parser.Parser, expr string) []string {
	t.Helper()
	e, err := p.ParseExpr(expr)
	if err != nil {
		t.Fatalf("%q does not parse: %v", expr, err)
	}
	var names []string
	for _, ms := range parser.ExtractSelectors(e) {
		for _, m := range ms {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				n := m.Value
				for _, suf := range []string{"_bucket", "_count", "_sum"} {
					if strings.HasPrefix(n, "hallmark_") && strings.HasSuffix(n, suf) && !strings.HasSuffix(n, "_total") {
						n = strings.TrimSuffix(n, suf)
					}
				}
				names = append(names, n)
			}
		}
	}
	return names
}

// The alert rules parse with Prometheus's own rule parser, and each
// series they name is one the daemons export.
func TestPrometheusAlertRules(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	rgs, errs := rulefmt.ParseFile("prometheus/hallmark-alerts.yaml", false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if rgs == nil {
		t.Fatal("no rule groups")
	}
	have := exported(t)
	n := 0
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %q: want an alert name, a severity label and a summary", r.Alert)
			}
			names := seriesIn(t, p, r.Expr)
			if len(names) == 0 {
				t.Errorf("alert %s selects no series", r.Alert)
			}
			for _, name := range names {
				if !have[name] {
					t.Errorf("alert %s uses %s, which neither daemon exports", r.Alert, name)
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("%d alert rules", n)
	}
}

// The Grafana dashboard is JSON whose every query parses as PromQL and
// names only series the daemons export.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana/hallmark-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatal(err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Fatal("dashboard without title or uid")
	}
	p := parser.NewParser(parser.Options{})
	have := exported(t)
	vars := strings.NewReplacer("$server_job", "hallmark-server", "$agent_job", "hallmark-agent")
	used := map[string]bool{}
	for _, panel := range dash.Panels {
		if panel.Type == "row" {
			continue
		}
		if len(panel.Targets) == 0 {
			t.Errorf("panel %q has no query", panel.Title)
		}
		for _, tg := range panel.Targets {
			for _, name := range seriesIn(t, p, vars.Replace(tg.Expr)) {
				used[name] = true
				if !have[name] {
					t.Errorf("panel %q uses %s, which neither daemon exports", panel.Title, name)
				}
			}
		}
	}
	// Every Hallmark series has a panel.
	for name := range have {
		if strings.HasPrefix(name, "hallmark_") && !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}

// docs/operations.md's series table lists every series the daemons
// export, and nothing else.
func TestOperationsDocListsEverySeries(t *testing.T) {
	data, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(hallmark_[a-z0-9_]+)`").FindAllStringSubmatch(string(data), -1) {
		documented[m[1]] = true
	}
	have := exported(t)
	var missing, extra []string
	for name := range have {
		if strings.HasPrefix(name, "hallmark_") && !documented[name] {
			missing = append(missing, name)
		}
	}
	for name := range documented {
		if !have[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("docs/operations.md series table: undocumented %v; documented but not exported %v", missing, extra)
	}
}
