package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docana/keygate/internal/apikey"
)

func TestMetricsKeepCountingAcrossConfigLoads(t *testing.T) {
	f := newGatewayFixture(t)
	secret, _ := f.addKey(t, "metrics", apikey.ScopeWidget, time.Now(), apikey.ExpiryNever)
	h, _ := f.handler(t, &Handler{})

	// Two config loads: each has its own registry, both get the same
	// collectors, and registering twice into one is fine.
	first, second := newTestContext(t), newTestContext(t)
	if err := registerMetrics(first); err != nil {
		t.Fatal(err)
	}
	if err := registerMetrics(first); err != nil {
		t.Fatalf("registering again into the same registry: %v", err)
	}
	ok := processMetrics.Requests.WithLabelValues("ok", "widget")
	scope := processMetrics.Requests.WithLabelValues("insufficient_scope", "widget")
	missing := processMetrics.Requests.WithLabelValues("missing_api_key", "")
	before := []float64{testutil.ToFloat64(ok), testutil.ToFloat64(scope), testutil.ToFloat64(missing)}

	serve(t, h, newRequest("GET", "/", apiKeyHeader(secret)))
	if err := registerMetrics(second); err != nil {
		t.Fatal(err)
	}
	serve(t, h, newRequest("GET", "/", nil))
	widgetRoute, _ := f.handler(t, &Handler{Scopes: []string{"widget"}})
	serve(t, widgetRoute, newRequest("GET", "/", apiKeyHeader(secret)))

	after := []float64{testutil.ToFloat64(ok), testutil.ToFloat64(scope), testutil.ToFloat64(missing)}
	want := []float64{before[0] + 1, before[1] + 1, before[2] + 1}
	for i, name := range []string{"ok/widget", "insufficient_scope/widget", "missing_api_key/"} {
		if after[i] != want[i] {
			t.Errorf("requests_total{%s} = %v, want %v", name, after[i], want[i])
		}
	}

	for name, reg := range map[string]*prometheus.Registry{"first": first.GetMetricsRegistry(), "second": second.GetMetricsRegistry()} {
		families, err := reg.Gather()
		if err != nil {
			t.Fatalf("%s registry: %v", name, err)
		}
		var names []string
		for _, mf := range families {
			names = append(names, mf.GetName())
		}
		all := strings.Join(names, " ")
		for _, want := range []string{
			"caddy_apikey_requests_total", "caddy_apikey_verify_duration_seconds", "caddy_apikey_cache_lookups_total",
			"caddy_apikey_store_errors_total", "caddy_apikey_last_used_pending", "caddy_apikey_last_used_writes_total",
			"caddy_apikey_invalidations_total",
		} {
			if !strings.Contains(all, want) {
				t.Errorf("%s registry lacks %s: %s", name, want, all)
			}
		}
	}
}

func TestRequestCountersCoverEveryOutcome(t *testing.T) {
	for i, result := range results {
		if got := resultIndex(apikey.Code(result)); got != i {
			t.Errorf("resultIndex(%q) = %d, want %d", result, got, i)
		}
		for j := 0; j < scopeSlots; j++ {
			// Every combination counts, resolved in advance or not.
			scope := ""
			if j > 0 {
				scope = apikey.Scope(j).String()
			}
			c := processMetrics.Requests.WithLabelValues(result, scope)
			before := testutil.ToFloat64(c)
			processRequests.inc(processMetrics.Requests, apikey.Code(result), apikey.Scope(j))
			if got := testutil.ToFloat64(c); got != before+1 {
				t.Errorf("requests_total{%s,%q} = %v after inc, want %v", result, scope, got, before+1)
			}
		}
	}
}
