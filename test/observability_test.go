package test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// keyIDLabel matches a key ID, which no label may hold.
var keyIDLabel = regexp.MustCompile(`key_[0-9A-Za-z]{22}`)

// debugCaddyfile logs everything Caddy and keygate log, access logs
// included, and serves the metrics on the site too.
const debugCaddyfile = `{
	debug
	admin {{.Admin}}
	persist_config off
}

http://127.0.0.1:{{.Site}} {
	log
	handle /metrics {
		apikey
		metrics
	}
	handle /api/widget/* {
		apikey widget
		reverse_proxy {{.Upstream}}
	}
	handle {
		apikey {
			keep_credentials
		}
		reverse_proxy {{.Upstream}}
	}
}
`

func TestGatewayNeverLogsASecretEvenAtDebugLevel(t *testing.T) {
	t.Parallel()
	up := NewUpstream(t)
	g := StartGateway(t, Options{Caddyfile: debugCaddyfile, Upstream: up})
	var secrets []string
	full, fullKey := g.CreateKey("full", "full", "1d")
	widget, _ := g.CreateKey("widget", "widget", "1d")
	revoked, revokedKey := g.CreateKey("revoked", "full", "never")
	secrets = append(secrets, full, widget, revoked)
	g.Admin(http.MethodDelete, "/apikeys/"+revokedKey.ID, nil)
	resp, body := g.Admin(http.MethodPost, "/apikeys/"+fullKey.ID+"/rotate", map[string]string{"grace": "1h"})
	var rotated struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(body, &rotated); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("rotate: %d %s", resp.StatusCode, body)
	}
	secrets = append(secrets, rotated.Secret)
	unknown := wellFormedUnknownKey(t, full)
	secrets = append(secrets, unknown)

	for _, h := range []http.Header{
		WithKey(full), WithKey(widget), WithKey(revoked), WithKey(unknown), WithKey(rotated.Secret),
		WithKey(mangle(full)), WithKey(full + "x"),
		{"Authorization": {"Bearer " + widget}},
		{"Authorization": {"ApiKey " + full + " " + widget}},
		{"Authorization": {"ApiKey " + full, "ApiKey " + widget}},
		{"Authorization": {"apikey   " + widget}},
	} {
		g.Request(http.MethodGet, "/anything", h)
		g.Request(http.MethodGet, "/api/widget/chat", h)
	}
	// The admin endpoint logs every request it receives, with its URI.
	g.Admin(http.MethodGet, "/apikeys", nil)
	g.Admin(http.MethodGet, "/apikeys/"+fullKey.ID, nil)
	g.Reload(debugCaddyfile)
	g.Stop()

	out := g.Output()
	if !strings.Contains(out, `"level":"debug"`) {
		t.Fatalf("no debug log lines: the test would prove nothing\n%s", out)
	}
	if !strings.Contains(out, fullKey.ID) {
		t.Errorf("the logs never name the full key by its ID")
	}
	for _, s := range secrets {
		// The random part alone, in case something logged it without
		// the prefix.
		if i := strings.Index(out, s[3:35]); i >= 0 {
			t.Errorf("the output holds a secret (%s…): %s", s[:6], out[max(0, i-300):min(len(out), i+100)])
		}
	}
}

func TestGatewayMetrics(t *testing.T) {
	t.Parallel()
	up := NewUpstream(t)
	g := StartGateway(t, Options{Caddyfile: debugCaddyfile, Upstream: up})
	full, _ := g.CreateKey("full", "full", "1d")
	widget, _ := g.CreateKey("widget", "widget", "1d")
	g.Request(http.MethodGet, "/api/widget/chat", WithKey(widget))
	g.Request(http.MethodGet, "/api/widget/chat", WithKey(widget))
	g.Request(http.MethodGet, "/other", WithKey(widget))
	g.Request(http.MethodGet, "/other", nil)

	// Caddy's admin endpoint serves them, and the metrics handler on the
	// site (behind a full key).
	resp, adminBody := g.Admin(http.MethodGet, "/metrics", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin /metrics: %d", resp.StatusCode)
	}
	resp, siteBody := g.Request(http.MethodGet, "/metrics", WithKey(full))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("site /metrics: %d", resp.StatusCode)
	}

	for name, body := range map[string][]byte{"admin": adminBody, "site": siteBody} {
		t.Run(name, func(t *testing.T) {
			parser := expfmt.NewTextParser(model.UTF8Validation)
			families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("parsing the exposition: %v", err)
			}
			for metric, typ := range map[string]dto.MetricType{
				"caddy_apikey_requests_total":          dto.MetricType_COUNTER,
				"caddy_apikey_verify_duration_seconds": dto.MetricType_HISTOGRAM,
				"caddy_apikey_cache_lookups_total":     dto.MetricType_COUNTER,
				"caddy_apikey_store_errors_total":      dto.MetricType_COUNTER,
				"caddy_apikey_last_used_pending":       dto.MetricType_GAUGE,
				"caddy_apikey_last_used_writes_total":  dto.MetricType_COUNTER,
				"caddy_apikey_invalidations_total":     dto.MetricType_COUNTER,
			} {
				mf, ok := families[metric]
				if !ok {
					t.Errorf("no %s", metric)
					continue
				}
				if mf.GetType() != typ {
					t.Errorf("%s is a %v, want %v", metric, mf.GetType(), typ)
				}
				if mf.GetHelp() == "" {
					t.Errorf("%s has no help", metric)
				}
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if keyIDLabel.MatchString(l.GetValue()) || strings.HasPrefix(l.GetValue(), "dk_") {
							t.Errorf("%s has a label naming a key: %s=%s", metric, l.GetName(), l.GetValue())
						}
					}
				}
			}
			// What `promtool check metrics` checks (promtool runs promlint),
			// on keygate's families as served.
			var ours []*dto.MetricFamily
			for name, mf := range families {
				if strings.HasPrefix(name, "caddy_apikey_") {
					ours = append(ours, mf)
				}
			}
			problems, err := promlint.NewWithMetricFamilies(ours).Lint()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("promlint: %s: %s", p.Metric, p.Text)
			}

			requests := func(result, scope string) float64 {
				for _, m := range families["caddy_apikey_requests_total"].GetMetric() {
					labels := map[string]string{}
					for _, l := range m.GetLabel() {
						labels[l.GetName()] = l.GetValue()
					}
					if labels["result"] == result && labels["scope"] == scope {
						return m.GetCounter().GetValue()
					}
				}
				return -1
			}
			for _, c := range []struct {
				result, scope string
				want          float64
			}{
				{"ok", "widget", 2},
				{"insufficient_scope", "widget", 1},
				{"missing_api_key", "", 1},
			} {
				if got := requests(c.result, c.scope); got != c.want {
					t.Errorf("caddy_apikey_requests_total{result=%q,scope=%q} = %v, want %v", c.result, c.scope, got, c.want)
				}
			}
			if got := families["caddy_apikey_verify_duration_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(); got < 3 {
				t.Errorf("verify_duration_seconds has %d samples, want at least 3", got)
			}
		})
	}
}
