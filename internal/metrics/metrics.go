// Package metrics holds every Prometheus collector of keygate. The
// collectors are created once per process and registered into each registry
// that asks for them: Caddy makes a new registry per config load, and
// counters must keep counting across reloads.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "caddy_apikey"

// Label values, so consumers resolve them with WithLabelValues once, at
// construction, and never spell them twice.
const (
	// CacheLookups results.
	LookupHit         = "hit"
	LookupMiss        = "miss"
	LookupNegativeHit = "negative_hit"

	// StoreErrors operations.
	OpGet     = "get"
	OpChanges = "changes"
	OpTouch   = "touch"
	OpCreate  = "create"
	OpRevoke  = "revoke"
	OpRotate  = "rotate"
	OpList    = "list"
	OpUpdate  = "update"

	// LastUsedWrites results.
	WriteOK    = "ok"
	WriteError = "error"

	// Invalidations sources.
	SourceLocal  = "local"
	SourceNotify = "notify"
	SourcePoll   = "poll"
)

// VerifyBuckets are the upper bounds of VerifyDuration's buckets: 100ns
// times powers of 4, up to about 6.7s. A cache hit takes a few hundred
// nanoseconds, a store query from tens of microseconds (SQLite) to
// milliseconds (PostgreSQL over a network), and a failing store up to its
// 2s timeout; a factor of 4 keeps each of those regimes in its own buckets
// with 14 buckets in all, so an observation stays cheap.
var VerifyBuckets = prometheus.ExponentialBuckets(100e-9, 4, 14)

// Metrics holds keygate's collectors. A nil *Metrics is allowed wherever a
// package takes one: it then makes a private, unregistered set with New.
type Metrics struct {
	// Requests counts authenticated requests by result ("ok" or an error
	// code) and by the scope of the key ("" when no key was identified).
	Requests *prometheus.CounterVec
	// VerifyDuration observes how long verifying a request's key took.
	VerifyDuration prometheus.Histogram
	// CacheLookups counts cache lookups by result: hit, miss, negative_hit.
	CacheLookups *prometheus.CounterVec
	// StoreErrors counts failed store operations by op: get, changes,
	// touch, create, revoke, rotate, list.
	StoreErrors *prometheus.CounterVec
	// LastUsedPending is the number of keys whose last use is noted but not
	// yet written.
	LastUsedPending prometheus.Gauge
	// LastUsedWrites counts batch writes of last-used times by result: ok,
	// error.
	LastUsedWrites *prometheus.CounterVec
	// Invalidations counts cache invalidations by source: local, notify,
	// poll.
	Invalidations *prometheus.CounterVec
	// LeakReports counts the tokens of answered leak reports by the label
	// answered: true_positive (a key of this gateway), false_positive.
	LeakReports *prometheus.CounterVec
	// RateLimitStoreErrors counts failed calls to the shared rate-limit
	// store (Redis).
	RateLimitStoreErrors prometheus.Counter
	// ChangesUnconfirmed counts the key changes answered while a live
	// instance had not applied them (after confirm_timeout).
	ChangesUnconfirmed prometheus.Counter
}

// New returns a fresh set of collectors, registered nowhere.
func New() *Metrics {
	return &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "requests_total",
			Help:      "Requests that keygate authenticated, by result (ok or the error code answered) and by the scope of the key that was sent.",
		}, []string{"result", "scope"}),
		VerifyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "verify_duration_seconds",
			Help:      "Time taken to verify the API key of a request, from reading the header to the decision, including any key store query.",
			Buckets:   VerifyBuckets,
		}),
		CacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "cache_lookups_total",
			Help:      "Lookups of well-formed keys in the verification cache, by result: hit (a trusted entry), miss (the store was asked) or negative_hit (the key is remembered as unknown).",
		}, []string{"result"}),
		StoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "store_errors_total",
			Help:      "Key store operations that failed because the store could not answer, by operation.",
		}, []string{"op"}),
		LastUsedPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "last_used_pending",
			Help:      "Number of keys whose last use has been noted in memory but not yet written to the key store.",
		}),
		LastUsedWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "last_used_writes_total",
			Help:      "Batch writes of last-used times to the key store, by result (ok or error).",
		}, []string{"result"}),
		Invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "invalidations_total",
			Help:      "Cache invalidations applied, one per changed key or whole-cache purge, by how the change was learned: local (this instance's admin API), notify (a store notification) or poll (the periodic check).",
		}, []string{"source"}),
		LeakReports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "leak_reports_total",
			Help:      "Tokens of verified leak reports (GitHub secret scanning), by the label answered: true_positive (a key of this gateway) or false_positive (not a key, or no such key).",
		}, []string{"label"}),
		ChangesUnconfirmed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "changes_unconfirmed_total",
			Help:      "Key changes (create, update, rotate, revoke) answered after confirm_timeout while at least one live instance had not applied them.",
		}),
		RateLimitStoreErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "rate_limit_store_errors_total",
			Help:      "Calls to the shared rate-limit store (Redis) that failed; while it fails, keys with rate limits are admitted or refused as rate_limit_on_error says.",
		}),
	}
}

// collectors lists every collector of m.
func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.Requests, m.VerifyDuration, m.CacheLookups, m.StoreErrors,
		m.LastUsedPending, m.LastUsedWrites, m.Invalidations,
		m.LeakReports,
		m.RateLimitStoreErrors, m.ChangesUnconfirmed,
	}
}

// Register registers every collector into reg. Registering the same
// collectors again, as each config load does, is not an error; a different
// collector already registered under one of the names is.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range m.collectors() {
		err := reg.Register(c)
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) && already.ExistingCollector == c {
			continue
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
