package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/metrics"
)

// processMetrics holds keygate's collectors, one set per process. Caddy
// makes a new metrics registry for every config load; registering these same
// collectors into each (registerMetrics) keeps every counter counting across
// reloads, where collectors made per load would restart from zero.
var processMetrics = metrics.New()

// registerMetrics registers keygate's collectors into the registry of the
// config being loaded, which the admin /metrics endpoint and the metrics
// handler serve. Every Provision calls it: registering twice into one
// registry is not an error.
func registerMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	if err := processMetrics.Register(reg); err != nil {
		return fmt.Errorf("registering keygate metrics: %w", err)
	}
	return nil
}

// resultOK is the result label of an authenticated request; the other
// results are the error codes.
const resultOK = "ok"

// results are the values of the result label, in resultIndex order.
var results = [...]string{
	resultOK,
	string(apikey.CodeMissing),
	string(apikey.CodeScheme),
	string(apikey.CodeMalformed),
	string(apikey.CodeInvalid),
	string(apikey.CodeRevoked),
	string(apikey.CodeExpired),
	string(apikey.CodeScope),
	string(apikey.CodeOwner),
	string(apikey.CodeIP),
	string(apikey.CodeOrigin),
	string(apikey.CodeAmbiguous),
	string(apikey.CodeUnavailable),
	string(apikey.CodeAmbiguousPath),
	string(apikey.CodeRateLimited),
	string(apikey.CodeRateLimitUnavailable),
}

// resultIndex returns the index of code in results, and 0 (ok) for "".
func resultIndex(code apikey.Code) int {
	for i := 1; i < len(results); i++ {
		if results[i] == string(code) {
			return i
		}
	}
	return 0
}

// requestCounters are caddy_apikey_requests_total's children, resolved once
// per process so that counting a request is one atomic add: indexed by
// result (resultIndex) and by the key's scope (0 when no key was
// identified, else the apikey.Scope value).
type requestCounters [len(results)][scopeSlots]prometheus.Counter

// processRequests are the request counters of processMetrics.
var processRequests = newRequestCounters(processMetrics.Requests)

// newRequestCounters resolves the children of vec that requests produce:
// failures before any key is identified carry no scope; ok, revoked,
// expired, owner_mismatch, ip_not_allowed, origin_not_allowed,
// rate_limited and rate_limit_unavailable carry
// the key's scope, and
// insufficient_scope the scope of a key that is not full. Resolving only these keeps impossible series,
// always zero, out of the exposition.
func newRequestCounters(vec *prometheus.CounterVec) *requestCounters {
	c := new(requestCounters)
	for i, result := range results {
		switch apikey.Code(result) {
		case resultOK, apikey.CodeRevoked, apikey.CodeExpired, apikey.CodeOwner, apikey.CodeIP, apikey.CodeOrigin,
			apikey.CodeRateLimited, apikey.CodeRateLimitUnavailable:
			for _, s := range apikey.Scopes {
				c[i][s] = vec.WithLabelValues(result, s.String())
			}
		case apikey.CodeScope:
			for _, s := range apikey.Scopes {
				if s != apikey.ScopeFull {
					c[i][s] = vec.WithLabelValues(result, s.String())
				}
			}
		default:
			c[i][0] = vec.WithLabelValues(result, "")
		}
	}
	return c
}

// inc counts a request of the given result, made with a key of scope s (0
// if none was identified). A combination the table left out is resolved
// now: it allocates, but cannot happen with the verifier's contract.
func (c *requestCounters) inc(vec *prometheus.CounterVec, code apikey.Code, s apikey.Scope) {
	i := resultIndex(code)
	j := 0
	if s.Valid() {
		j = int(s)
	}
	if ctr := c[i][j]; ctr != nil {
		ctr.Inc()
		return
	}
	scope := ""
	if j != 0 {
		scope = s.String()
	}
	vec.WithLabelValues(results[i], scope).Inc()
}

// scopeSlots is the length of tables indexed by scope: 0 for "no scope",
// then every apikey.Scope value.
const scopeSlots = int(apikey.ScopeRoutine) + 1
