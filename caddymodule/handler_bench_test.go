package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/identity"
)

// The benchmarks here cover the handler's paths that the load benchmark
// (test/loadbench) drives and BenchmarkHandlerServeHTTPCachedKey does not,
// and the helpers every request calls.

// BenchmarkHandlerServeHTTPUnknownKey measures refusing a well-formed key
// that no store holds, remembered by the negative cache: what a client
// repeating a deleted or mistyped key costs.
func BenchmarkHandlerServeHTTPUnknownKey(b *testing.B) {
	f := newGatewayFixture(b)
	h, _ := f.handler(b, &Handler{})
	h.logger = zap.NewNop()
	secret, err := f.format.Generate()
	if err != nil {
		b.Fatal(err)
	}
	auth := []string{"ApiKey " + secret}
	r := httptest.NewRequest("GET", "/", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		b.Fatal("an unknown key reached next")
		return nil
	})
	w := &discardWriter{header: http.Header{}}
	r.Header["Authorization"] = auth
	_ = h.ServeHTTP(w, r, next) // remembered as unknown from now on
	b.ReportAllocs()
	for b.Loop() {
		r.Header["Authorization"] = auth
		clear(w.header)
		_ = h.ServeHTTP(w, r, next)
	}
	if w.status != http.StatusUnauthorized {
		b.Fatalf("status: got %d, want 401", w.status)
	}
}

// discardWriter is a ResponseWriter that keeps only the status, so that
// the benchmarks count the handler's allocations and not a recorder's.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// BenchmarkRemoveIdentityHeaders runs on the headers of a typical API
// request, none of them an identity header: the case of every request.
func BenchmarkRemoveIdentityHeaders(b *testing.B) {
	hdr := http.Header{
		"Accept":          {"application/json"},
		"Accept-Encoding": {"gzip"},
		"Authorization":   {"ApiKey dk_0123456789abcdefghijklmnopqrstuv0AbCdE"},
		"Content-Type":    {"application/json"},
		"User-Agent":      {"client/1.0"},
		"X-Request-Id":    {"3f2b9c1e"},
	}
	b.ReportAllocs()
	for b.Loop() {
		identity.RemoveHeaders(hdr)
	}
	if len(hdr) != 6 {
		b.Fatalf("headers left: got %d, want 6", len(hdr))
	}
}

// BenchmarkRequestCountersInc counts one successful request: the metric
// update every request makes.
func BenchmarkRequestCountersInc(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		processRequests.inc(processMetrics.Requests, resultOK, apikey.ScopeWidget)
	}
}

// freshRequests hands out copies of a request, each with a replacer of its
// own as Caddy's server gives every request (caddyhttp.NewTestReplacer
// does what the server does), made in batches outside the timer: the
// handler adds a placeholder provider to the replacer on success, so a
// replacer shared by every iteration would grow without end.
type freshRequests struct {
	b     *testing.B
	base  *http.Request
	batch []*http.Request
	next  int
	// clientIP, if set, is the client_ip variable each request gets, as
	// Caddy's server sets it.
	clientIP string
}

func newFreshRequests(b *testing.B, base *http.Request) *freshRequests {
	return &freshRequests{b: b, base: base, batch: make([]*http.Request, 1024), next: 1024}
}

// get returns the next request.
func (p *freshRequests) get() *http.Request {
	if p.next == len(p.batch) {
		p.b.StopTimer()
		for i := range p.batch {
			ctx := context.Background()
			if p.clientIP != "" {
				ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: p.clientIP})
			}
			r := p.base.Clone(ctx)
			caddyhttp.NewTestReplacer(r)
			p.batch[i] = r
		}
		p.next = 0
		p.b.StartTimer()
	}
	r := p.batch[p.next]
	p.next++
	return r
}

// BenchmarkHandlerServeHTTPOwners measures the success path with owners and
// metadata: a key without either, one with both where nothing asks for
// them, the owner subdirective (a fixed value, and a host label), and a
// metadata placeholder resolved as header_up resolves it.
func BenchmarkHandlerServeHTTPOwners(b *testing.B) {
	f := newOwnerFixture(b)
	plain, _ := f.addOwnedKey(b, apikey.ScopeWidget, "", nil)
	owned, _ := f.addOwnedKey(b, apikey.ScopeWidget, "acme", map[string]string{"plan": "pro", "region": "eu"})
	noop := func(http.ResponseWriter, *http.Request) error { return nil }
	headerUp := func(_ http.ResponseWriter, r *http.Request) error {
		// What reverse_proxy's header_up X-Plan {http.auth.user.metadata.plan} does.
		repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		r.Header["X-Plan"] = []string{repl.ReplaceKnown("{http.auth.user.metadata.plan}", "")}
		return nil
	}
	for _, bc := range []struct {
		name   string
		h      *Handler
		secret string
		next   func(http.ResponseWriter, *http.Request) error
	}{
		{"key without owner or metadata", &Handler{Scopes: []string{"widget"}}, plain, noop},
		{"key with owner and metadata, unused", &Handler{Scopes: []string{"widget"}}, owned, noop},
		{"owner subdirective, fixed value", &Handler{Scopes: []string{"widget"}, Owner: "acme"}, owned, noop},
		{"owner subdirective, host label", &Handler{Scopes: []string{"widget"}, Owner: "{http.request.host.labels.2}"}, owned, noop},
		{"metadata placeholder in header_up", &Handler{Scopes: []string{"widget"}}, owned, headerUp},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := f.handler(b, bc.h)
			base := httptest.NewRequest("GET", "/api/widget/chat", nil)
			base.Host = "acme.example.test"
			base.Header["Authorization"] = []string{"ApiKey " + bc.secret}
			reqs := newFreshRequests(b, base)
			w := &discardWriter{header: http.Header{}}
			passed := 0
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { passed++; return bc.next(w, r) })
			if _ = h.ServeHTTP(w, reqs.get(), next); passed != 1 {
				b.Fatalf("warm-up request refused: %d", w.status)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_ = h.ServeHTTP(w, reqs.get(), next)
			}
			b.StopTimer()
			if passed != b.N+1 {
				b.Fatalf("%d of %d requests passed", passed, b.N+1)
			}
		})
	}
}

// BenchmarkHandlerServeHTTPCachedKeyStrictPaths is the success path of
// BenchmarkHandlerServeHTTPCachedKey with strict_paths on and the
// Connection header an HTTP/1.1 client sends: the path check and the
// Connection list scan must add no allocation. Every request has a fresh
// replacer, as in Caddy's server.
func BenchmarkHandlerServeHTTPCachedKeyStrictPaths(b *testing.B) {
	f := newGatewayFixture(b)
	secret, _ := f.addKey(b, "bench", apikey.ScopeWidget, time.Now(), apikey.ExpiryNever)
	h, _ := f.handler(b, &Handler{Scopes: []string{"widget"}, StrictPaths: true})
	h.logger = zap.NewNop()
	base := httptest.NewRequest("GET", "/api/widget/chat/history%20x/item.json", nil)
	base.Header["Authorization"] = []string{"ApiKey " + secret}
	base.Header["Connection"] = []string{"keep-alive"}
	reqs := newFreshRequests(b, base)
	w := &discardWriter{header: http.Header{}}
	passed := 0
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed++; return nil })
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = h.ServeHTTP(w, reqs.get(), next)
	}
	if passed != b.N || w.status != 0 {
		b.Fatalf("requests refused: %d", w.status)
	}
}

// BenchmarkHandlerServeHTTPPolicy measures the success path with a key's
// allowed origins and IPs: a key without them, and keys with 32 of each
// matched by their last entries (the most work a request can take), by
// Origin and by Referer, on a route with and without cors. Matching must
// add no allocation to the key without them.
func BenchmarkHandlerServeHTTPPolicy(b *testing.B) {
	f := newOwnerFixture(b)
	var origins, ips []string
	for i := range 32 {
		origins = append(origins, fmt.Sprintf("https://shop%02d.example.com", i))
		ips = append(ips, fmt.Sprintf("203.0.%d.0/24", i))
	}
	plain := f.addPolicyKey(b, apikey.ScopeWidget, "", nil, nil)
	locked := f.addPolicyKey(b, apikey.ScopeWidget, "", origins, ips)
	for _, bc := range []struct {
		name   string
		h      *Handler
		secret string
		header http.Header
	}{
		{"key without origins or IPs", &Handler{Scopes: []string{"widget"}}, plain,
			http.Header{"Origin": {"https://shop31.example.com"}}},
		{"32 origins and 32 IPs, Origin", &Handler{Scopes: []string{"widget"}}, locked,
			http.Header{"Origin": {"https://shop31.example.com"}}},
		{"32 origins and 32 IPs, Referer", &Handler{Scopes: []string{"widget"}}, locked,
			http.Header{"Referer": {"https://shop31.example.com/cart/checkout?step=2"}}},
		{"key without origins or IPs, cors", &Handler{Scopes: []string{"widget"}, CORS: true}, plain,
			http.Header{"Origin": {"https://shop31.example.com"}}},
		{"32 origins and 32 IPs, Origin, cors", &Handler{Scopes: []string{"widget"}, CORS: true}, locked,
			http.Header{"Origin": {"https://shop31.example.com"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := f.handler(b, bc.h)
			base := httptest.NewRequest("GET", "/api/widget/chat", nil)
			base.Header["Authorization"] = []string{"ApiKey " + bc.secret}
			for name, v := range bc.header {
				base.Header[name] = v
			}
			reqs := newFreshRequests(b, base)
			reqs.clientIP = "203.0.31.200"
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
