package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// addPolicyKey stores a key of scope with owner, allowed origins and
// allowed IPs (given in their stored, normalised form), and returns its
// secret.
func (f *ownerFixture) addPolicyKey(t testing.TB, scope apikey.Scope, owner string, origins, ips []string) string {
	t.Helper()
	secret, k, err := f.format.New("policy key", scope, apikey.ExpiryNever, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k.Owner, k.AllowedOrigins, k.AllowedIPs = owner, origins, ips
	if err := f.res.store.Create(context.Background(), k, keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// serveFrom serves r as Caddy's server does for a client at clientIP
// (its client_ip variable; "" for none, as outside a server).
func serveFrom(t testing.TB, h *Handler, clientIP string, r *http.Request) served {
	t.Helper()
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
	if clientIP != "" {
		caddyhttp.SetVar(r.Context(), caddyhttp.ClientIPVarKey, clientIP)
	}
	return serveOnHost(t, h, "api.example.test", r)
}

func TestHandlerEnforcesAllowedIPsAndOrigins(t *testing.T) {
	f := newOwnerFixture(t)
	shop := []string{"https://shop.example", "http://localhost:8080"}
	nets := []string{"203.0.113.0/24", "2001:db8::/32", "198.51.100.7"}
	both := f.addPolicyKey(t, apikey.ScopeWidget, "acme", shop, nets)
	originsOnly := f.addPolicyKey(t, apikey.ScopeWidget, "", shop, nil)
	ipsOnly := f.addPolicyKey(t, apikey.ScopeRoutine, "", nil, nets)
	open := f.addPolicyKey(t, apikey.ScopeWidget, "", nil, nil)

	route := f.handler(t, &Handler{Scopes: []string{"widget", "routine"}})
	acmeRoute := f.handler(t, &Handler{Scopes: []string{"widget"}, Owner: "acme"})
	globexRoute := f.handler(t, &Handler{Scopes: []string{"widget"}, Owner: "globex"})

	origin := func(o string) http.Header { return http.Header{"Origin": {o}} }
	referer := func(u string) http.Header { return http.Header{"Referer": {u}} }
	tests := []struct {
		name   string
		h      *Handler
		secret string
		ip     string
		header http.Header
		want   string // "ok", or the failure code
		inMsg  string
	}{
		{"allowed IP and origin", route, both, "203.0.113.9", origin("https://shop.example"), "ok", ""},
		{"second origin, IPv6 client", route, both, "2001:db8::1", origin("http://localhost:8080"), "ok", ""},
		{"single address", route, both, "198.51.100.7", origin("https://shop.example"), "ok", ""},
		{"IPv4-mapped IPv6 client", route, both, "::ffff:203.0.113.9", origin("https://shop.example"), "ok", ""},
		{"IP outside the list", route, both, "192.0.2.1", origin("https://shop.example"), "ip_not_allowed", "IP address"},
		{"next address after a /32", route, both, "198.51.100.8", origin("https://shop.example"), "ip_not_allowed", ""},
		{"IPs before origins", route, both, "192.0.2.1", origin("https://evil.example"), "ip_not_allowed", ""},
		{"no client IP known: fail closed", route, both, "", origin("https://shop.example"), "ip_not_allowed", ""},
		{"origin outside the list", route, both, "203.0.113.9", origin("https://evil.example"), "origin_not_allowed", "not accepted from this origin"},
		{"other scheme", route, originsOnly, "192.0.2.1", origin("http://shop.example"), "origin_not_allowed", ""},
		{"other port", route, originsOnly, "192.0.2.1", origin("http://localhost:8081"), "origin_not_allowed", ""},
		{"opaque origin", route, originsOnly, "192.0.2.1", origin("null"), "origin_not_allowed", ""},
		{"two Origin headers", route, originsOnly, "192.0.2.1", http.Header{"Origin": {"https://shop.example", "https://evil.example"}}, "origin_not_allowed", ""},
		{"Referer of an allowed page", route, originsOnly, "192.0.2.1", referer("https://shop.example/cart?id=1"), "ok", ""},
		{"Referer of another site", route, originsOnly, "192.0.2.1", referer("https://evil.example/shop.example"), "origin_not_allowed", ""},
		{"Origin wins over Referer", route, originsOnly, "192.0.2.1", http.Header{"Origin": {"https://evil.example"}, "Referer": {"https://shop.example/"}}, "origin_not_allowed", ""},
		{"neither Origin nor Referer", route, originsOnly, "192.0.2.1", nil, "origin_not_allowed", "no Origin or Referer"},
		{"IPs only: any origin", route, ipsOnly, "203.0.113.1", nil, "ok", ""},
		{"no policy: any origin and IP", route, open, "", origin("https://evil.example"), "ok", ""},
		{"owner checked before IPs", globexRoute, both, "192.0.2.1", origin("https://evil.example"), "owner_mismatch", ""},
		{"owner, then IPs", acmeRoute, both, "192.0.2.1", origin("https://evil.example"), "ip_not_allowed", ""},
		{"scope checked before IPs", acmeRoute, ipsOnly, "192.0.2.1", nil, "insufficient_scope", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := apiKeyHeader(tt.secret)
			for name, v := range tt.header {
				hdr[name] = v
			}
			s := serveFrom(t, tt.h, tt.ip, newRequest("GET", "/api/widget/chat", hdr))
			if tt.want == "ok" {
				if s.upstream == nil {
					t.Fatalf("refused: %d %s", s.resp.Code, s.resp.Body)
				}
				return
			}
			if s.upstream != nil {
				t.Fatal("passed on")
			}
			if s.resp.Code != http.StatusForbidden {
				t.Errorf("status = %d, want 403", s.resp.Code)
			}
			code, msg := errorAnswer(t, s.resp.Body.Bytes())
			if code != tt.want || !strings.Contains(msg, tt.inMsg) {
				t.Errorf("answer = %s %q, want %s with %q", code, msg, tt.want, tt.inMsg)
			}
			if strings.Contains(msg, "example") || strings.Contains(msg, "192.0") {
				t.Errorf("the message repeats the request: %q", msg)
			}
			if id, _ := s.repl.GetString("http.auth.user.id"); id != "" {
				t.Errorf("http.auth.user.id = %q after a refusal", id)
			}
		})
	}
}

// fixedVerifier accepts every request as its key, with nothing attached,
// as a verifier made without attachValues does.
type fixedVerifier struct{ k *apikey.Key }

func (v fixedVerifier) VerifyAttached(context.Context, string, time.Time) (*apikey.Key, any, error) {
	return v.k, nil, nil
}

// TestHandlerRefusesKeysWhosePolicyDoesNotCompile checks that lists the
// stores would no longer accept (a store edited by hand, a rule made
// stricter) refuse the key at their step instead of letting it through
// unrestricted.
func TestHandlerRefusesKeysWhosePolicyDoesNotCompile(t *testing.T) {
	f := newOwnerFixture(t)
	tests := []struct {
		name     string
		origins  []string
		ips      []string
		wantCode string
	}{
		{"origins", []string{"https://shop.example", "not an origin"}, nil, "origin_not_allowed"},
		{"IPs", nil, []string{"203.0.113.0/24", "not an address"}, "ip_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &apikey.Key{ID: "key_x", Name: "x", Scope: apikey.ScopeWidget, AllowedOrigins: tt.origins, AllowedIPs: tt.ips}
			if kv := valuesOf(k); kv.origins != nil || kv.ips != nil || kv.badOrigins != (tt.origins != nil) || kv.badIPs != (tt.ips != nil) {
				t.Fatalf("valuesOf: %+v", kv)
			}
			h := &Handler{Scopes: []string{"widget"}}
			if err := h.provision(fixedVerifier{k}, f.res.recorder, zap.NewNop()); err != nil {
				t.Fatal(err)
			}
			hdr := apiKeyHeader("anything")
			hdr["Origin"] = []string{"https://shop.example"}
			s := serveFrom(t, h, "203.0.113.9", newRequest("GET", "/", hdr))
			if s.upstream != nil {
				t.Fatal("passed on")
			}
			if code, _ := errorAnswer(t, s.resp.Body.Bytes()); s.resp.Code != 403 || code != tt.wantCode {
				t.Errorf("answer %d %s, want 403 %s", s.resp.Code, code, tt.wantCode)
			}
		})
	}
}

func TestHandlerCountsPolicyRefusalsByScope(t *testing.T) {
	f := newOwnerFixture(t)
	key := f.addPolicyKey(t, apikey.ScopeWidget, "", []string{"https://shop.example"}, []string{"203.0.113.0/24"})
	h := f.handler(t, &Handler{Scopes: []string{"widget"}})
	for _, tt := range []struct {
		code string
		ip   string
	}{{"ip_not_allowed", "192.0.2.1"}, {"origin_not_allowed", "203.0.113.1"}} {
		c := processMetrics.Requests.WithLabelValues(tt.code, "widget")
		before := testutil.ToFloat64(c)
		hdr := apiKeyHeader(key)
		hdr["Origin"] = []string{"https://evil.example"}
		serveFrom(t, h, tt.ip, newRequest("GET", "/", hdr))
		if got := testutil.ToFloat64(c); got != before+1 {
			t.Errorf("requests_total{%s,widget} = %v, want %v", tt.code, got, before+1)
		}
	}
}

func TestHandlerAnswersPreflightsWithCORS(t *testing.T) {
	f := newOwnerFixture(t)
	h := f.handler(t, &Handler{Scopes: []string{"widget"}, CORS: true})
	preflight := func(origin, method string, headers ...string) http.Header {
		hdr := http.Header{"Origin": {origin}, "Access-Control-Request-Method": {method}}
		if headers != nil {
			hdr["Access-Control-Request-Headers"] = headers
		}
		return hdr
	}
	tests := []struct {
		name        string
		header      http.Header
		wantOrigin  string // Access-Control-Allow-Origin, "" for none (nothing allowed)
		wantMethods string
		wantHeaders string
	}{
		{"JSON POST", preflight("https://shop.example", "POST", "authorization,content-type"),
			"https://shop.example", "POST", "Authorization, Content-Type"},
		{"other headers asked", preflight("http://localhost:8080", "PUT", "content-type, x-request-id", "x-trace"),
			"http://localhost:8080", "PUT", "Authorization, Content-Type, x-request-id, x-trace"},
		{"no headers asked", preflight("https://shop.example", "GET"),
			"https://shop.example", "GET", "Authorization, Content-Type"},
		{"any origin: the key decides", preflight("https://evil.example", "POST", "authorization"),
			"https://evil.example", "POST", "Authorization, Content-Type"},
		{"CR LF in Origin", preflight("https://shop.example\r\nSet-Cookie: a=b", "POST"), "", "", ""},
		{"space in Origin", preflight("https://shop.example https://evil.example", "POST"), "", "", ""},
		{"comma in Origin", preflight("https://shop.example,https://evil.example", "POST"), "", "", ""},
		{"method not a token", preflight("https://shop.example", "POST\r\nX: y"), "", "", ""},
		{"header names not tokens", preflight("https://shop.example", "POST", "content-type\r\nSet-Cookie: a=b"), "", "", ""},
		{"header list with a space in a name", preflight("https://shop.example", "POST", "x request"), "", "", ""},
		{"header list too long", preflight("https://shop.example", "POST", strings.Repeat("x-a,", 1100)), "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serveFrom(t, h, "192.0.2.1", newRequest("OPTIONS", "/api/widget/chat", tt.header))
			if s.upstream != nil {
				t.Fatal("the preflight was passed on")
			}
			got := s.resp.Result().Header
			if s.resp.Code != http.StatusNoContent {
				t.Errorf("status = %d, want 204", s.resp.Code)
			}
			if !strings.Contains(got.Get("Vary"), "Origin") {
				t.Errorf("Vary = %q, want Origin in it", got.Get("Vary"))
			}
			if v := got.Values(headerAllowOrigin); tt.wantOrigin == "" && len(v) != 0 || tt.wantOrigin != "" && (len(v) != 1 || v[0] != tt.wantOrigin) {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", v, tt.wantOrigin)
			}
			if v := got.Get(headerAllowMethods); v != tt.wantMethods {
				t.Errorf("Access-Control-Allow-Methods = %q, want %q", v, tt.wantMethods)
			}
			if v := got.Get(headerAllowHeaders); v != tt.wantHeaders {
				t.Errorf("Access-Control-Allow-Headers = %q, want %q", v, tt.wantHeaders)
			}
			if tt.wantOrigin != "" && got.Get(headerMaxAge) != "600" {
				t.Errorf("Access-Control-Max-Age = %q, want 600", got.Get(headerMaxAge))
			}
			if _, ok := got["Access-Control-Allow-Credentials"]; ok {
				t.Error("Access-Control-Allow-Credentials is set")
			}
		})
	}
}

func TestHandlerAddsCORSHeadersToAnswers(t *testing.T) {
	f := newOwnerFixture(t)
	locked := f.addPolicyKey(t, apikey.ScopeWidget, "", []string{"https://shop.example"}, nil)
	routine := f.addPolicyKey(t, apikey.ScopeRoutine, "", nil, nil)
	cors := f.handler(t, &Handler{Scopes: []string{"widget"}, CORS: true})
	plain := f.handler(t, &Handler{Scopes: []string{"widget"}})
	withOrigin := func(secret, origin string) http.Header {
		hdr := http.Header{"Origin": {origin}}
		if secret != "" {
			hdr["Authorization"] = []string{"ApiKey " + secret}
		}
		return hdr
	}
	tests := []struct {
		name       string
		h          *Handler
		header     http.Header
		wantStatus int
		wantOrigin string // "" for no CORS headers
	}{
		{"upstream's answer", cors, withOrigin(locked, "https://shop.example"), 200, "https://shop.example"},
		{"missing key", cors, withOrigin("", "https://evil.example"), 401, "https://evil.example"},
		{"insufficient scope", cors, withOrigin(routine, "https://shop.example"), 403, "https://shop.example"},
		{"origin not allowed: unreadable", cors, withOrigin(locked, "https://evil.example"), 403, ""},
		{"Origin with CR LF: not reflected", cors, withOrigin(locked, "https://shop.example\r\nX: y"), 403, ""},
		{"without cors", plain, withOrigin(locked, "https://shop.example"), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serveFrom(t, tt.h, "192.0.2.1", newRequest("POST", "/api/widget/chat", tt.header))
			got := s.resp.Result().Header
			if s.resp.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", s.resp.Code, tt.wantStatus, s.resp.Body)
			}
			if v := got.Values(headerAllowOrigin); tt.wantOrigin == "" && len(v) != 0 || tt.wantOrigin != "" && (len(v) != 1 || v[0] != tt.wantOrigin) {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", v, tt.wantOrigin)
			}
			wantExpose := ""
			if tt.wantOrigin != "" {
				wantExpose = "RateLimit, RateLimit-Policy, Retry-After"
			}
			if v := got.Get(headerExposeHeaders); v != wantExpose {
				t.Errorf("Access-Control-Expose-Headers = %q, want %q", v, wantExpose)
			}
			if vary := got.Get("Vary"); tt.h.CORS != (vary == "Origin") {
				t.Errorf("Vary = %q with cors %v", vary, tt.h.CORS)
			}
			if _, ok := got["Access-Control-Allow-Credentials"]; ok {
				t.Error("Access-Control-Allow-Credentials is set")
			}
		})
	}
}

// TestHandlerCORSKeepsTheUpstreamsVary checks that Vary: Origin joins the
// fields an upstream varies on instead of replacing them.
func TestHandlerCORSKeepsTheUpstreamsVary(t *testing.T) {
	f := newOwnerFixture(t)
	key := f.addPolicyKey(t, apikey.ScopeWidget, "", nil, nil)
	h := f.handler(t, &Handler{Scopes: []string{"widget"}, CORS: true})
	r := newRequest("GET", "/", apiKeyHeader(key))
	r.Header["Origin"] = []string{"https://shop.example"}
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
	caddyhttp.NewTestReplacer(r)
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		// What reverse_proxy does with the upstream's headers.
		w.Header()["Vary"] = append(w.Header()["Vary"], "Accept-Encoding")
		w.WriteHeader(http.StatusOK)
		return nil
	})
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	if got := w.Result().Header.Values("Vary"); len(got) != 2 || got[0] != "Origin" || got[1] != "Accept-Encoding" {
		t.Errorf("Vary = %q, want [Origin Accept-Encoding]", got)
	}
	if varyOrigin[0] != "Origin" || len(varyOrigin) != 1 {
		t.Errorf("the shared Vary value changed: %q", varyOrigin)
	}
}

func TestHandlerPreflightWithoutCORSStillPassesOn(t *testing.T) {
	f := newOwnerFixture(t)
	h := f.handler(t, &Handler{Scopes: []string{"widget"}})
	hdr := http.Header{"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"POST"}}
	s := serveFrom(t, h, "192.0.2.1", newRequest("OPTIONS", "/", hdr))
	if s.upstream == nil {
		t.Fatalf("not passed on: %d", s.resp.Code)
	}
	if v := s.resp.Result().Header.Get(headerAllowOrigin); v != "" {
		t.Errorf("Access-Control-Allow-Origin = %q without cors", v)
	}
}

func TestHandlerRefusesCORSWithPreflightAuthenticate(t *testing.T) {
	f := newOwnerFixture(t)
	h := &Handler{CORS: true, Preflight: PreflightAuthenticate}
	if err := h.provision(f.v, f.res.recorder, nil); err == nil || !strings.Contains(err.Error(), "cannot be combined") {
		t.Errorf("provision = %v, want an error saying they cannot be combined", err)
	}
}
