package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// touch gives every labelled collector one series per documented label
// value, so that a gather shows all names and labels.
func touch(m *Metrics) {
	m.Requests.WithLabelValues("ok", "full").Inc()
	m.VerifyDuration.Observe(250e-9)
	for _, r := range []string{LookupHit, LookupMiss, LookupNegativeHit} {
		m.CacheLookups.WithLabelValues(r).Inc()
	}
	for _, op := range []string{OpGet, OpChanges, OpTouch, OpCreate, OpRevoke, OpRotate, OpList, OpUpdate} {
		m.StoreErrors.WithLabelValues(op).Inc()
	}
	m.LastUsedPending.Set(3)
	for _, r := range []string{WriteOK, WriteError} {
		m.LastUsedWrites.WithLabelValues(r).Inc()
	}
	for _, s := range []string{SourceLocal, SourceNotify, SourcePoll} {
		m.Invalidations.WithLabelValues(s).Inc()
	}
	for _, l := range []string{"true_positive", "false_positive"} {
		m.LeakReports.WithLabelValues(l).Inc()
	}
}

func TestMetricNamesAndLabelsMatchTheDesign(t *testing.T) {
	m := New()
	touch(m)
	reg := prometheus.NewPedanticRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatalf("Register: %v", err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	// The names and label names of docs/DESIGN.md, section Metrics.
	want := map[string]string{
		"caddy_apikey_requests_total":                "result,scope",
		"caddy_apikey_verify_duration_seconds":       "",
		"caddy_apikey_cache_lookups_total":           "result",
		"caddy_apikey_store_errors_total":            "op",
		"caddy_apikey_last_used_pending":             "",
		"caddy_apikey_last_used_writes_total":        "result",
		"caddy_apikey_invalidations_total":           "source",
		"caddy_apikey_rate_limit_store_errors_total": "",
		"caddy_apikey_leak_reports_total":            "label",
		"caddy_apikey_changes_unconfirmed_total":     "",
	}
	got := map[string]string{}
	for _, f := range families {
		var labels []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		got[f.GetName()] = strings.Join(labels, ",")
		if help := f.GetHelp(); !strings.HasSuffix(help, ".") || help[0] < 'A' || help[0] > 'Z' {
			t.Errorf("%s: Help %q is not a full sentence", f.GetName(), help)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d metric families %v, want %d", len(got), got, len(want))
	}
	for name, labels := range want {
		if g, ok := got[name]; !ok || g != labels {
			t.Errorf("%s: got labels %q (present %v), want %q", name, g, ok, labels)
		}
	}
}

func TestMetricLabelValues(t *testing.T) {
	m := New()
	touch(m)
	tests := []struct {
		name string
		c    prometheus.Collector
		want string
	}{
		{"cache lookups", m.CacheLookups, `
# HELP caddy_apikey_cache_lookups_total Lookups of well-formed keys in the verification cache, by result: hit (a trusted entry), miss (the store was asked) or negative_hit (the key is remembered as unknown).
# TYPE caddy_apikey_cache_lookups_total counter
caddy_apikey_cache_lookups_total{result="hit"} 1
caddy_apikey_cache_lookups_total{result="miss"} 1
caddy_apikey_cache_lookups_total{result="negative_hit"} 1
`},
		{"invalidations", m.Invalidations, `
# HELP caddy_apikey_invalidations_total Cache invalidations applied, one per changed key or whole-cache purge, by how the change was learned: local (this instance's admin API), notify (a store notification) or poll (the periodic check).
# TYPE caddy_apikey_invalidations_total counter
caddy_apikey_invalidations_total{source="local"} 1
caddy_apikey_invalidations_total{source="notify"} 1
caddy_apikey_invalidations_total{source="poll"} 1
`},
		{"last used writes", m.LastUsedWrites, `
# HELP caddy_apikey_last_used_writes_total Batch writes of last-used times to the key store, by result (ok or error).
# TYPE caddy_apikey_last_used_writes_total counter
caddy_apikey_last_used_writes_total{result="error"} 1
caddy_apikey_last_used_writes_total{result="ok"} 1
`},
		{"last used pending", m.LastUsedPending, `
# HELP caddy_apikey_last_used_pending Number of keys whose last use has been noted in memory but not yet written to the key store.
# TYPE caddy_apikey_last_used_pending gauge
caddy_apikey_last_used_pending 3
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := testutil.CollectAndCompare(tt.c, strings.NewReader(tt.want)); err != nil {
				t.Error(err)
			}
		})
	}
	if got, want := testutil.CollectAndCount(m.StoreErrors), 8; got != want {
		t.Errorf("store errors: got %d series, want %d", got, want)
	}
}

func TestVerifyBucketsSpanCacheHitsToStoreTimeouts(t *testing.T) {
	b := VerifyBuckets
	if got, want := b[0], 100e-9; got != want {
		t.Errorf("first bucket: got %g, want %g", got, want)
	}
	if got := b[len(b)-1]; got < 2 {
		t.Errorf("last bucket: got %g, want at least the 2s store timeout", got)
	}
}

func TestRegisterTwiceIntoOneRegistryAndIntoASecond(t *testing.T) {
	m := New()
	first := prometheus.NewRegistry()
	if err := m.Register(first); err != nil {
		t.Fatalf("first Register: %v", err)
	}
	if err := m.Register(first); err != nil {
		t.Errorf("Register again into the same registry: got %v, want nil", err)
	}
	second := prometheus.NewRegistry()
	if err := m.Register(second); err != nil {
		t.Errorf("Register into a second registry: got %v, want nil", err)
	}
	// Both registries see the same counter: counting goes on across reloads.
	m.CacheLookups.WithLabelValues(LookupHit).Add(2)
	for i, reg := range []*prometheus.Registry{first, second} {
		n, err := testutil.GatherAndCount(reg, "caddy_apikey_cache_lookups_total")
		if err != nil || n != 1 {
			t.Errorf("registry %d: got %d series (%v), want 1", i, n, err)
		}
	}
}

func TestRegisterRefusesAnotherCollectorUnderTheSameName(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := New().Register(reg); err != nil {
		t.Fatalf("first Register: %v", err)
	}
	if err := New().Register(reg); err == nil {
		t.Error("Register of a second Metrics into the same registry: got nil, want an error")
	}
}

// TestMetricsPassPromlint runs the checks of `promtool check metrics`
// (the promlint package is what promtool runs) over every collector.
func TestMetricsPassPromlint(t *testing.T) {
	m := New()
	touch(m)
	reg := prometheus.NewPedanticRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
