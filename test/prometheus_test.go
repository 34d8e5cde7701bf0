package test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The alert rules and the dashboard operators are given (docs/prometheus,
// docs/grafana), checked with the real Prometheus tools: Debian's
// prometheus package has both promtool and the server.

// prometheusTool returns the path of a Prometheus binary (promtool or
// prometheus). Without it the test fails in CI and is skipped elsewhere,
// naming the package to install.
func prometheusTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("no %s on PATH (install it with: apt-get install -y prometheus): %v", name, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

func TestAlertRulesPassPromtoolCheckAndTheirUnitTests(t *testing.T) {
	t.Parallel()
	promtool := prometheusTool(t, "promtool")
	dir := filepath.Join("..", "docs", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "keygate-alerts.yml"},
		{"test", "rules", "keygate-alerts.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// dashboardCaddyfile serves one plain route and exposes the metrics on the
// admin endpoint, where Prometheus scrapes them.
const dashboardCaddyfile = `{
	admin {{.Admin}}
	persist_config off
	apikeys {
		last_used_interval 1s
	}
}

http://127.0.0.1:{{.Site}} {
	apikey widget
	reverse_proxy {{.Upstream}}
}
`

func TestEveryDashboardPanelQueryReturnsDataFromARealPrometheusScrapingKeygate(t *testing.T) {
	t.Parallel()
	prom := prometheusTool(t, "prometheus")
	up := NewUpstream(t)
	g := StartGateway(t, Options{Caddyfile: dashboardCaddyfile, Upstream: up})

	// Prometheus of the test's own, scraping the gateway's admin /metrics
	// every second, with the alert rules loaded.
	dir := t.TempDir()
	rules, err := filepath.Abs(filepath.Join("..", "docs", "prometheus", "keygate-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: keygate
    static_configs:
      - targets: ["%s"]
`, rules, g.Ports.Admin)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, prom,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr,
		"--log.level=warn")
	var promOut syncBuffer
	cmd.Stdout, cmd.Stderr = &promOut, &promOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	waitPrometheusReady(t, promAddr, &promOut)

	// Traffic of every kind the panels show: admitted keys of two scopes,
	// refusals, a revocation (an invalidation), a rate-limited key, and
	// last-used writes.
	full, _ := g.CreateKey("dashboard full", "full", "1d")
	widget, _ := g.CreateKey("dashboard widget", "widget", "1d")
	revoked, revokedKey := g.CreateKey("dashboard revoked", "full", "1d")
	resp, body := g.Admin(http.MethodPost, "/apikeys", map[string]any{
		"name": "dashboard limited", "scope": "widget", "expires_in": "1d", "rate_limits": []string{"1/1m"},
	})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("creating a rate-limited key: %d %s", resp.StatusCode, body)
	}
	var limited struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(body, &limited); err != nil {
		t.Fatal(err)
	}
	g.Request(http.MethodGet, "/", WithKey(revoked))
	g.Admin(http.MethodDelete, "/apikeys/"+revokedKey.ID, nil)

	panels := dashboardQueries(t)
	deadline := time.Now().Add(waitLimit)
	for {
		for range 5 {
			for _, h := range []http.Header{WithKey(full), WithKey(widget), WithKey(revoked), WithKey(limited.Secret), {}} {
				g.Request(http.MethodGet, "/", h)
			}
		}
		missing := panelsWithoutData(t, promAddr, panels)
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("panel queries without data after %s:\n%s\nprometheus output:\n%s", waitLimit, strings.Join(missing, "\n"), promOut.String())
		}
		time.Sleep(time.Second)
	}

	// The alert rules run against the real series without error.
	var rulesAnswer struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Health, LastError string
				}
			}
		}
	}
	promGet(t, promAddr, "/api/v1/rules", &rulesAnswer)
	var evaluated int
	for _, group := range rulesAnswer.Data.Groups {
		for _, r := range group.Rules {
			evaluated++
			if r.Health != "ok" {
				t.Errorf("alert %s: health %q, error %q", r.Name, r.Health, r.LastError)
			}
		}
	}
	if evaluated < 7 {
		t.Errorf("Prometheus loaded %d alert rules, want every rule of keygate-alerts.yml", evaluated)
	}
}

// panelQuery is one query of a dashboard panel.
type panelQuery struct {
	panel, expr string
}

// dashboardQueries reads every panel's queries from docs/grafana, with
// Grafana's variables as a dashboard showing every instance fills them.
func dashboardQueries(t *testing.T) []panelQuery {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docs", "grafana", "keygate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("docs/grafana/keygate.json: %v", err)
	}
	vars := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*")
	var qs []panelQuery
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			qs = append(qs, panelQuery{p.Title, vars.Replace(tg.Expr)})
		}
	}
	if len(dash.Panels) < 8 {
		t.Errorf("the dashboard has %d panels, want the 8 the operations issue lists", len(dash.Panels))
	}
	return qs
}

// panelsWithoutData returns the queries whose answer holds no sample that
// is a number.
func panelsWithoutData(t *testing.T, promAddr string, qs []panelQuery) []string {
	t.Helper()
	var missing []string
	for _, q := range qs {
		var answer struct {
			Status string
			Error  string
			Data   struct {
				Result []struct {
					Value [2]any
				}
			}
		}
		promGet(t, promAddr, "/api/v1/query?query="+url.QueryEscape(q.expr), &answer)
		if answer.Status != "success" {
			t.Fatalf("panel %q: query %s: %s", q.panel, q.expr, answer.Error)
		}
		ok := false
		for _, r := range answer.Data.Result {
			s, _ := r.Value[1].(string)
			if v, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(v) {
				ok = true
			}
		}
		if !ok {
			missing = append(missing, fmt.Sprintf("%s: %s", q.panel, q.expr))
		}
	}
	return missing
}

// waitPrometheusReady waits until Prometheus answers its readiness
// endpoint: before, its API answers 503 in plain text.
func waitPrometheusReady(t *testing.T, promAddr string, out *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		resp, err := http.Get("http://" + promAddr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after %s (last: %v)\n%s", waitLimit, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promGet decodes the JSON answer of Prometheus's HTTP API at path.
func promGet(t *testing.T, promAddr, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + promAddr + path)
	if err != nil {
		t.Fatalf("prometheus: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("prometheus %s: %d: %v", path, resp.StatusCode, err)
	}
}
