package caddymodule

import (
	"context"
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

// BenchmarkHandlerServeHTTPCachedKeyStrictPaths is the success path of
// BenchmarkHandlerServeHTTPCachedKey with strict_paths on and the
// Connection header an HTTP/1.1 client sends: the path check and the
// Connection list scan must add no allocation.
func BenchmarkHandlerServeHTTPCachedKeyStrictPaths(b *testing.B) {
	f := newGatewayFixture(b)
	secret, _ := f.addKey(b, "bench", apikey.ScopeWidget, time.Now(), apikey.ExpiryNever)
	h, _ := f.handler(b, &Handler{Scopes: []string{"widget"}, StrictPaths: true})
	h.logger = zap.NewNop()
	r := httptest.NewRequest("GET", "/api/widget/chat/history%20x/item.json", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	auth := []string{"ApiKey " + secret}
	connection := []string{"keep-alive"}
	w := &discardWriter{header: http.Header{}}
	passed := 0
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed++; return nil })
	b.ReportAllocs()
	for b.Loop() {
		r.Header["Authorization"] = auth
		r.Header["Connection"] = connection
		_ = h.ServeHTTP(w, r, next)
	}
	if passed == 0 || w.status != 0 {
		b.Fatalf("requests refused: %d", w.status)
	}
}
