package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/ratelimit"
)

// addLimitedKey stores a key of scope with rate limits and allowed
// origins, and returns its secret.
func (f *ownerFixture) addLimitedKey(t testing.TB, scope apikey.Scope, limits, origins []string) string {
	t.Helper()
	secret, k, err := f.format.New("limited key", scope, apikey.ExpiryNever, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k.RateLimits, k.AllowedOrigins = limits, origins
	if err := f.res.store.Create(context.Background(), k, keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// limitedHandler provisions h with a fresh local limiter, the given
// default limits by scope and failure mode.
func (f *ownerFixture) limitedHandler(t testing.TB, h *Handler, l limiter, defaults map[apikey.Scope][]string, deny bool) *Handler {
	t.Helper()
	h = f.handler(t, h)
	rl := &rateLimits{limiter: l, deny: deny}
	for s, list := range defaults {
		p, err := ratelimit.Compile(list)
		if err != nil {
			t.Fatal(err)
		}
		rl.defaults[s] = p
	}
	h.limits = rl
	return h
}

func TestHandlerAnswers429WithRetryAfterAndTheDraftFields(t *testing.T) {
	f := newOwnerFixture(t)
	secret := f.addLimitedKey(t, apikey.ScopeFull, []string{"3/1m", "1000/1d"}, nil)
	h := f.limitedHandler(t, &Handler{}, ratelimit.NewLocal(-1), nil, false)
	for i := range 3 {
		s := serve(t, h, newRequest("GET", "/", apiKeyHeader(secret)))
		if s.resp.Code != 200 {
			t.Fatalf("request %d = %d, want 200", i, s.resp.Code)
		}
		want := fmt.Sprintf(`"1m";r=%d;t=`, 2-i)
		if got := s.resp.Header().Get("RateLimit"); !strings.HasPrefix(got, want) {
			t.Errorf("request %d: RateLimit = %q, want it to start %q", i, got, want)
		}
		if got := s.resp.Header().Get("RateLimit-Policy"); got != "" {
			t.Errorf("admitted answer has RateLimit-Policy %q; only a 429 carries it", got)
		}
	}
	s := serve(t, h, newRequest("GET", "/", apiKeyHeader(secret)))
	if s.resp.Code != http.StatusTooManyRequests || s.upstream != nil {
		t.Fatalf("fourth request = %d (proxied: %v), want 429 not proxied", s.resp.Code, s.upstream != nil)
	}
	if code, _ := errorAnswer(t, s.resp.Body.Bytes()); code != "rate_limited" {
		t.Errorf("code = %q, want rate_limited", code)
	}
	hdr := s.resp.Header()
	// The three share a bucket of 3s (1m/20), which leaves the window
	// 63s after it began: 60 to 63 s from now, rounded up.
	if got := hdr.Get("Retry-After"); got < "61" || got > "63" || len(got) != 2 {
		t.Errorf("Retry-After = %q, want 61 to 63 (the requests' bucket leaves 1m and a bucket after it began)", got)
	}
	if got, want := hdr.Get("RateLimit-Policy"), `"1m";q=3;w=60, "1d";q=1000;w=86400`; got != want {
		t.Errorf("RateLimit-Policy = %q, want %q", got, want)
	}
	if got := hdr.Get("RateLimit"); !strings.HasPrefix(got, `"1m";r=0;t=`) {
		t.Errorf("RateLimit = %q, want the exhausted minute", got)
	}
}

func TestHandlerRequestsRefusedBeforeTheLimitDoNotCount(t *testing.T) {
	f := newOwnerFixture(t)
	shop := []string{"https://shop.example"}
	secret := f.addLimitedKey(t, apikey.ScopeWidget, []string{"2/1h"}, shop)
	h := f.limitedHandler(t, &Handler{Scopes: []string{"widget"}}, ratelimit.NewLocal(-1), nil, false)
	bad := apiKeyHeader(secret)
	bad.Set("Origin", "https://evil.example")
	for range 10 {
		if s := serve(t, h, newRequest("GET", "/", bad)); s.resp.Code != 403 {
			t.Fatalf("bad origin = %d, want 403", s.resp.Code)
		}
	}
	good := apiKeyHeader(secret)
	good.Set("Origin", "https://shop.example")
	for i := range 2 {
		if s := serve(t, h, newRequest("GET", "/", good)); s.resp.Code != 200 {
			t.Fatalf("good request %d = %d: refused requests counted", i, s.resp.Code)
		}
	}
	if s := serve(t, h, newRequest("GET", "/", good)); s.resp.Code != 429 {
		t.Fatalf("third good request = %d, want 429", s.resp.Code)
	}
	// A preflight is no request of the key: it passes and counts nothing.
	pre := newRequest("OPTIONS", "/", http.Header{"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"POST"}})
	if s := serve(t, h, pre); s.resp.Code != 200 || s.upstream == nil {
		t.Fatalf("preflight = %d, want passed on", s.resp.Code)
	}
}

func TestHandlerScopeDefaultsApplyToKeysWithoutLimits(t *testing.T) {
	f := newOwnerFixture(t)
	own := f.addLimitedKey(t, apikey.ScopeWidget, []string{"5/1m"}, nil)
	none := f.addLimitedKey(t, apikey.ScopeWidget, nil, nil)
	full := f.addLimitedKey(t, apikey.ScopeFull, nil, nil)
	h := f.limitedHandler(t, &Handler{Scopes: []string{"widget"}}, ratelimit.NewLocal(-1),
		map[apikey.Scope][]string{apikey.ScopeWidget: {"1/1m"}}, false)
	count := func(secret string) int {
		n := 0
		for range 8 {
			if s := serve(t, h, newRequest("GET", "/", apiKeyHeader(secret))); s.resp.Code == 200 {
				n++
			}
		}
		return n
	}
	if got := count(own); got != 5 {
		t.Errorf("key with its own 5/1m: %d admitted, want 5", got)
	}
	if got := count(none); got != 1 {
		t.Errorf("widget key without limits under the widget default 1/1m: %d admitted, want 1", got)
	}
	if got := count(full); got != 8 {
		t.Errorf("full key, no default for full: %d admitted, want all 8", got)
	}
}

func TestHandlerRateLimitHeadersOffLeavesAdmittedAnswersBare(t *testing.T) {
	f := newOwnerFixture(t)
	secret := f.addLimitedKey(t, apikey.ScopeFull, []string{"1/1m"}, nil)
	off := false
	h := f.limitedHandler(t, &Handler{RateLimitHeaders: &off}, ratelimit.NewLocal(-1), nil, false)
	s := serve(t, h, newRequest("GET", "/", apiKeyHeader(secret)))
	if s.resp.Code != 200 || s.resp.Header().Get("RateLimit") != "" {
		t.Fatalf("admitted = %d with RateLimit %q; want 200 without", s.resp.Code, s.resp.Header().Get("RateLimit"))
	}
	s = serve(t, h, newRequest("GET", "/", apiKeyHeader(secret)))
	if s.resp.Code != 429 || s.resp.Header().Get("RateLimit") == "" || s.resp.Header().Get("RateLimit-Policy") == "" {
		t.Fatalf("refused = %d with %v; a 429 always carries both fields", s.resp.Code, s.resp.Header())
	}
}

// failingLimiter is a limiter whose store is down.
type failingLimiter struct{}

func (failingLimiter) Allow(string, *ratelimit.Policy, time.Time) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, ratelimit.ErrUnavailable
}

func TestHandlerRateLimitStoreDownAllowsOrDenies(t *testing.T) {
	f := newOwnerFixture(t)
	secret := f.addLimitedKey(t, apikey.ScopeFull, []string{"1/1m"}, nil)
	unlimited := f.addLimitedKey(t, apikey.ScopeFull, nil, nil)
	allow := f.limitedHandler(t, &Handler{}, failingLimiter{}, nil, false)
	deny := f.limitedHandler(t, &Handler{}, failingLimiter{}, nil, true)
	for range 3 {
		if s := serve(t, allow, newRequest("GET", "/", apiKeyHeader(secret))); s.resp.Code != 200 || s.resp.Header().Get("RateLimit") != "" {
			t.Fatalf("allow: %d with RateLimit %q; want 200 without a guessed field", s.resp.Code, s.resp.Header().Get("RateLimit"))
		}
	}
	s := serve(t, deny, newRequest("GET", "/", apiKeyHeader(secret)))
	if s.resp.Code != 503 || s.upstream != nil || s.resp.Header().Get("Retry-After") != "1" {
		t.Fatalf("deny: %d, Retry-After %q; want 503 with Retry-After 1", s.resp.Code, s.resp.Header().Get("Retry-After"))
	}
	if code, _ := errorAnswer(t, s.resp.Body.Bytes()); code != "rate_limit_unavailable" {
		t.Errorf("code = %q, want rate_limit_unavailable", code)
	}
	if s := serve(t, deny, newRequest("GET", "/", apiKeyHeader(unlimited))); s.resp.Code != 200 {
		t.Errorf("deny, key without limits: %d, want 200 (the store is not asked)", s.resp.Code)
	}
}

// BenchmarkHandlerServeHTTPRateLimit measures the admitted path of a
// cached key with a local limit far from exhaustion, against the same key
// without limits: the verification + limit cost. With the RateLimit field
// on, its value is carved from a shared slab (see ratelimit.RateLimitValue).
func BenchmarkHandlerServeHTTPRateLimit(b *testing.B) {
	f := newOwnerFixture(b)
	plain := f.addLimitedKey(b, apikey.ScopeFull, nil, nil)
	limited := f.addLimitedKey(b, apikey.ScopeFull, []string{"1000000000/1m", "1000000000/1d"}, nil)
	off := false
	for _, bc := range []struct {
		name   string
		h      *Handler
		secret string
	}{
		{"no limit", &Handler{}, plain},
		{"local limit", &Handler{}, limited},
		{"local limit, headers off", &Handler{RateLimitHeaders: &off}, limited},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := f.limitedHandler(b, bc.h, ratelimit.NewLocal(-1), nil, false)
			base := httptest.NewRequest("GET", "/api/data", nil)
			base.Header["Authorization"] = []string{"ApiKey " + bc.secret}
			reqs := newFreshRequests(b, base)
			w := &discardWriter{header: http.Header{}}
			passed := 0
			next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed++; return nil })
			if _ = h.ServeHTTP(w, reqs.get(), next); passed != 1 {
				b.Fatalf("warm-up request refused: %d", w.status)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clear(w.header)
				_ = h.ServeHTTP(w, reqs.get(), next)
			}
			b.StopTimer()
			if passed != b.N+1 {
				b.Fatalf("%d of %d requests passed", passed, b.N+1)
			}
		})
	}
}

// BenchmarkVerifyAndLimitLocal is the verification of a cached key and
// its local rate limit, far from exhaustion, with its RateLimit field
// value: what the handler adds to a request for limits, without Caddy's
// per-request replacer and headers. It allocates nothing per request (the
// field value's slab is amortised over 256 values).
func BenchmarkVerifyAndLimitLocal(b *testing.B) {
	f := newOwnerFixture(b)
	secret := f.addLimitedKey(b, apikey.ScopeFull, []string{"1000000000/1m", "1000000000/1d"}, nil)
	l := ratelimit.NewLocal(-1)
	authorization := "ApiKey " + secret
	ctx := context.Background()
	if _, _, err := f.v.VerifyAttached(ctx, authorization, time.Now()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := time.Now()
		k, att, err := f.v.VerifyAttached(ctx, authorization, now)
		if err != nil {
			b.Fatal(err)
		}
		pol := att.(*keyValues).limits
		d, _ := l.Allow(k.ID, pol, now)
		if !d.Allowed {
			b.Fatal("refused")
		}
		_ = pol.RateLimitValue(d)
	}
}
