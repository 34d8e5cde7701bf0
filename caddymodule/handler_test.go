package caddymodule

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// gatewayFixture is a real key store (SQLite in a temp dir) with the
// verifier and recorder an apikeys app would give a handler.
type gatewayFixture struct {
	res    *resources
	format *apikey.Format
}

func newGatewayFixture(t testing.TB) *gatewayFixture {
	t.Helper()
	cfg, err := (&App{Store: &StoreConfig{Path: filepath.Join(t.TempDir(), "keys.db")}}).effective()
	if err != nil {
		t.Fatal(err)
	}
	res, err := newResources(context.Background(), cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = res.Destruct() })
	format, err := apikey.NewFormat(apikey.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return &gatewayFixture{res: res, format: format}
}

// addKey stores a new key of scope, changed by edit if not nil, and
// returns its secret and record.
func (f *gatewayFixture) addKey(t testing.TB, name string, scope apikey.Scope, created time.Time, expiry apikey.Expiry) (string, apikey.Key) {
	t.Helper()
	secret, k, err := f.format.New(name, scope, expiry, created)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.res.store.Create(context.Background(), k, keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	return secret, k
}

// handler provisions h over the fixture, logging into the returned
// observer at debug level.
func (f *gatewayFixture) handler(t testing.TB, h *Handler) (*Handler, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	if err := h.provision(f.res.verifier, f.res.recorder, zap.New(core)); err != nil {
		t.Fatal(err)
	}
	return h, logs
}

// served is what one request through a handler produced.
type served struct {
	resp     *httptest.ResponseRecorder
	upstream *http.Request // the request next received; nil if next was not called
	repl     *caddy.Replacer
}

func serve(t testing.TB, h *Handler, r *http.Request) served {
	t.Helper()
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	var s served
	s.repl = repl
	s.resp = httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		s.upstream = r
		w.WriteHeader(http.StatusOK)
		return nil
	})
	if err := h.ServeHTTP(s.resp, r, next); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	return s
}

func newRequest(method, target string, header http.Header) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for k, vs := range header {
		r.Header[k] = vs
	}
	return r
}

func apiKeyHeader(secret string) http.Header {
	return http.Header{"Authorization": {"ApiKey " + secret}}
}

// errorAnswer decodes a failure body.
func errorAnswer(t testing.TB, body []byte) (code, message string) {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("failure body %q: %v", body, err)
	}
	return e.Error.Code, e.Error.Message
}

func TestHandlerAnswersEveryFailureWithItsStatusAndCode(t *testing.T) {
	f := newGatewayFixture(t)
	now := time.Now()
	full, _ := f.addKey(t, "full", apikey.ScopeFull, now, apikey.ExpiryNever)
	widget, _ := f.addKey(t, "widget", apikey.ScopeWidget, now, apikey.ExpiryNever)
	routine, _ := f.addKey(t, "routine", apikey.ScopeRoutine, now, apikey.ExpiryNever)
	revoked, rk := f.addKey(t, "revoked", apikey.ScopeFull, now, apikey.ExpiryNever)
	if _, err := f.res.store.Revoke(context.Background(), rk.ID, now, keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	expired, _ := f.addKey(t, "expired", apikey.ScopeFull, now.Add(-2*time.Hour), apikey.ExpiryHour)
	unknown, err := f.format.Generate()
	if err != nil {
		t.Fatal(err)
	}
	// Changing the last checksum digit breaks the checksum only.
	badChecksum := unknown[:len(unknown)-1] + "0"
	if strings.HasSuffix(unknown, "0") {
		badChecksum = unknown[:len(unknown)-1] + "1"
	}

	widgetRoute, _ := f.handler(t, &Handler{Scopes: []string{"widget"}, Realm: "widgets"})
	fullRoute, _ := f.handler(t, &Handler{})

	tests := []struct {
		name       string
		h          *Handler
		header     http.Header
		wantStatus int
		wantCode   string
		wantInMsg  string
	}{
		{"no Authorization header", fullRoute, nil, 401, "missing_api_key", "Authorization: ApiKey <key>"},
		{"empty Authorization header", fullRoute, http.Header{"Authorization": {""}}, 401, "missing_api_key", ""},
		{"scheme without a key", fullRoute, http.Header{"Authorization": {"ApiKey   "}}, 401, "missing_api_key", ""},
		{"Bearer scheme", fullRoute, http.Header{"Authorization": {"Bearer " + full}}, 401, "invalid_auth_scheme", "Authorization: ApiKey <key>"},
		{"Basic scheme", fullRoute, http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, 401, "invalid_auth_scheme", ""},
		{"wrong prefix", fullRoute, apiKeyHeader("xx" + full[2:]), 401, "malformed_api_key", "dk_"},
		{"too short", fullRoute, apiKeyHeader(full[:len(full)-1]), 401, "malformed_api_key", ""},
		{"bad alphabet", fullRoute, apiKeyHeader(full[:10] + "-" + full[11:]), 401, "malformed_api_key", ""},
		{"bad checksum", fullRoute, apiKeyHeader(badChecksum), 401, "malformed_api_key", "checksum"},
		{"two tokens", fullRoute, http.Header{"Authorization": {"ApiKey " + full + " " + full}}, 401, "malformed_api_key", ""},
		{"unknown key", fullRoute, apiKeyHeader(unknown), 401, "invalid_api_key", ""},
		{"revoked key", fullRoute, apiKeyHeader(revoked), 401, "api_key_revoked", ""},
		{"expired key", fullRoute, apiKeyHeader(expired), 401, "api_key_expired", ""},
		{"widget key on a full route", fullRoute, apiKeyHeader(widget), 403, "insufficient_scope", "full"},
		{"routine key on a widget route", widgetRoute, apiKeyHeader(routine), 403, "insufficient_scope", "full, widget"},
		{"two Authorization headers", fullRoute, http.Header{"Authorization": {"ApiKey " + full, "ApiKey " + full}}, 400, "ambiguous_credentials", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, tt.h, newRequest("GET", "/api/x", tt.header))
			if s.upstream != nil {
				t.Error("the request was passed on")
			}
			if got := s.resp.Code; got != tt.wantStatus {
				t.Errorf("status = %d, want %d", got, tt.wantStatus)
			}
			if got := s.resp.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			code, msg := errorAnswer(t, s.resp.Body.Bytes())
			if code != tt.wantCode {
				t.Errorf("code = %q, want %q (message %q)", code, tt.wantCode, msg)
			}
			if !strings.Contains(msg, tt.wantInMsg) {
				t.Errorf("message %q does not contain %q", msg, tt.wantInMsg)
			}
			gotChallenge := s.resp.Header().Get("WWW-Authenticate")
			wantChallenge := ""
			if tt.wantStatus == 401 {
				wantChallenge = `ApiKey realm="keygate"`
				if tt.h == widgetRoute {
					wantChallenge = `ApiKey realm="widgets"`
				}
			}
			if gotChallenge != wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", gotChallenge, wantChallenge)
			}
			for _, secret := range []string{full, widget, routine, revoked, expired, unknown} {
				if strings.Contains(s.resp.Body.String(), secret) {
					t.Errorf("the body holds a key: %s", s.resp.Body)
				}
			}
			if id, _ := s.repl.GetString("http.auth.user.id"); id != "" {
				t.Errorf("http.auth.user.id = %q after a failure", id)
			}
		})
	}
}

func TestHandlerAcceptsKeysWhoseScopeTheRouteAccepts(t *testing.T) {
	f := newGatewayFixture(t)
	now := time.Now()
	keys := map[apikey.Scope]string{}
	for _, s := range apikey.Scopes {
		keys[s], _ = f.addKey(t, s.String()+" key", s, now, apikey.ExpiryDay)
	}
	tests := []struct {
		route []string
		scope apikey.Scope
		want  bool
	}{
		{nil, apikey.ScopeFull, true},
		{nil, apikey.ScopeWidget, false},
		{nil, apikey.ScopeRoutine, false},
		{[]string{"widget"}, apikey.ScopeFull, true},
		{[]string{"widget"}, apikey.ScopeWidget, true},
		{[]string{"widget"}, apikey.ScopeRoutine, false},
		{[]string{"routine"}, apikey.ScopeRoutine, true},
		{[]string{"routine"}, apikey.ScopeWidget, false},
		{[]string{"widget", "routine"}, apikey.ScopeRoutine, true},
		{[]string{"widget", "routine"}, apikey.ScopeWidget, true},
		{[]string{"full"}, apikey.ScopeWidget, false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.route, "+")+"/"+tt.scope.String(), func(t *testing.T) {
			h, _ := f.handler(t, &Handler{Scopes: tt.route})
			s := serve(t, h, newRequest("GET", "/", apiKeyHeader(keys[tt.scope])))
			if got := s.upstream != nil; got != tt.want {
				t.Errorf("passed on = %v, want %v (status %d, %s)", got, tt.want, s.resp.Code, s.resp.Body)
			}
		})
	}
}

func TestHandlerSetsIdentityAndRemovesCredentials(t *testing.T) {
	f := newGatewayFixture(t)
	secret, k := f.addKey(t, "CI/CD Pipeline", apikey.ScopeWidget, time.Now(), apikey.ExpiryWeek)
	off := false
	tests := []struct {
		name          string
		h             *Handler
		wantAuth      bool
		wantIdentity  bool
		extraHeaders  http.Header
		schemeSpacing string
	}{
		{name: "defaults", h: &Handler{Scopes: []string{"widget"}}, wantIdentity: true},
		{name: "keep_credentials", h: &Handler{Scopes: []string{"widget"}, KeepCredentials: true}, wantAuth: true, wantIdentity: true},
		{name: "forward_identity off", h: &Handler{Scopes: []string{"widget"}, ForwardIdentity: &off}},
		{name: "lowercase scheme and several spaces", h: &Handler{Scopes: []string{"widget"}}, wantIdentity: true, schemeSpacing: "apikey   "},
		{name: "client identity copies", h: &Handler{Scopes: []string{"widget"}, ForwardIdentity: &off}, extraHeaders: http.Header{
			"X-Api-Key-Id": {"key_forged"}, "X-Api-Key-Name": {"forged"}, "X-Api-Key-Scope": {"full"},
			"X_api_key_id": {"key_forged"}, "X-Api-Key_Scope": {"full"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := f.handler(t, tt.h)
			hdr := http.Header{}
			for name, v := range tt.extraHeaders {
				hdr[name] = v
			}
			auth := "ApiKey " + secret
			if tt.schemeSpacing != "" {
				auth = tt.schemeSpacing + secret
			}
			hdr["Authorization"] = []string{auth}
			s := serve(t, h, newRequest("POST", "/api/widget/chat", hdr))
			if s.upstream == nil {
				t.Fatalf("not passed on: %d %s", s.resp.Code, s.resp.Body)
			}
			up := s.upstream.Header
			if got := up.Get("Authorization"); (got == auth) != tt.wantAuth || (!tt.wantAuth && got != "") {
				t.Errorf("upstream Authorization = %q, want kept: %v", got, tt.wantAuth)
			}
			wantID, wantName, wantScope := "", "", ""
			if tt.wantIdentity {
				wantID, wantName, wantScope = k.ID, "CI/CD Pipeline", "widget"
			}
			for name, want := range map[string]string{HeaderKeyID: wantID, HeaderKeyName: wantName, HeaderKeyScope: wantScope} {
				if got := up.Values(name); len(got) > 1 || up.Get(name) != want {
					t.Errorf("upstream %s = %q, want %q", name, got, want)
				}
			}
			for name := range up {
				if strings.Contains(strings.ToLower(name), "api_key") || strings.Contains(strings.ToLower(name), "api-key_") {
					t.Errorf("upstream still has the client's %s", name)
				}
			}
			for placeholder, want := range map[string]string{
				"http.auth.user.id": k.ID, "http.auth.user.name": "CI/CD Pipeline", "http.auth.user.scope": "widget",
			} {
				if got, _ := s.repl.GetString(placeholder); got != want {
					t.Errorf("{%s} = %q, want %q", placeholder, got, want)
				}
			}
			if when, ok := f.res.recorder.Pending(k.ID); !ok || when.IsZero() {
				t.Errorf("last use not noted")
			}
		})
	}
}

func TestHandlerRemovesClientIdentityHeadersOnFailuresToo(t *testing.T) {
	f := newGatewayFixture(t)
	h, _ := f.handler(t, &Handler{})
	r := newRequest("GET", "/", http.Header{"X-Api-Key-Id": {"key_forged"}, "X_api_key_scope": {"full"}})
	serve(t, h, r)
	if got := r.Header.Get(HeaderKeyID); got != "" {
		t.Errorf("X-Api-Key-Id = %q, want removed", got)
	}
	if _, ok := r.Header["X_api_key_scope"]; ok {
		t.Errorf("X_api_key_scope kept")
	}
}

func TestHandlerLetsCORSPreflightPassUnlessConfigured(t *testing.T) {
	f := newGatewayFixture(t)
	preflight := http.Header{"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"POST"}}
	tests := []struct {
		name       string
		h          *Handler
		method     string
		header     http.Header
		wantPassed bool
	}{
		{"preflight passes by default", &Handler{Scopes: []string{"widget"}}, "OPTIONS", preflight, true},
		{"preflight authenticate", &Handler{Scopes: []string{"widget"}, Preflight: "authenticate"}, "OPTIONS", preflight, false},
		{"OPTIONS without Origin", &Handler{}, "OPTIONS", http.Header{"Access-Control-Request-Method": {"POST"}}, false},
		{"OPTIONS without request method", &Handler{}, "OPTIONS", http.Header{"Origin": {"https://shop.example"}}, false},
		{"GET with CORS headers", &Handler{}, "GET", preflight, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := f.handler(t, tt.h)
			s := serve(t, h, newRequest(tt.method, "/api/widget/chat", tt.header))
			if got := s.upstream != nil; got != tt.wantPassed {
				t.Errorf("passed on = %v, want %v", got, tt.wantPassed)
			}
			if !tt.wantPassed && s.resp.Code != 401 {
				t.Errorf("status = %d, want 401", s.resp.Code)
			}
		})
	}
}

func TestHandlerAnswers503WhenTheStoreIsUnreachable(t *testing.T) {
	f := newGatewayFixture(t)
	cached, _ := f.addKey(t, "cached", apikey.ScopeFull, time.Now(), apikey.ExpiryNever)
	uncached, _ := f.addKey(t, "uncached", apikey.ScopeFull, time.Now(), apikey.ExpiryNever)
	h, logs := f.handler(t, &Handler{})
	if s := serve(t, h, newRequest("GET", "/", apiKeyHeader(cached))); s.upstream == nil {
		t.Fatalf("cached key refused before the outage: %d %s", s.resp.Code, s.resp.Body)
	}
	// Closing the store makes every query fail, as a lost connection does.
	if err := f.res.store.Close(); err != nil {
		t.Fatal(err)
	}

	s := serve(t, h, newRequest("GET", "/", apiKeyHeader(uncached)))
	if s.upstream != nil {
		t.Fatal("passed on while the store is down")
	}
	if s.resp.Code != 503 {
		t.Errorf("status = %d, want 503", s.resp.Code)
	}
	if code, _ := errorAnswer(t, s.resp.Body.Bytes()); code != "key_store_unavailable" {
		t.Errorf("code = %q, want key_store_unavailable", code)
	}
	if got := s.resp.Header().Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After = %q, want %q", got, retryAfter)
	}
	if got := s.resp.Header().Get("WWW-Authenticate"); got != "" {
		t.Errorf("WWW-Authenticate = %q on a 503", got)
	}
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n == 0 {
		t.Error("the store failure was not logged at error level")
	}

	if s := serve(t, h, newRequest("GET", "/", apiKeyHeader(cached))); s.upstream == nil {
		t.Errorf("a key verified within cache_ttl stopped working during the outage: %d %s", s.resp.Code, s.resp.Body)
	}
}

func TestLogLimiterAllowsOneLinePerSecond(t *testing.T) {
	var l logLimiter
	start := time.Unix(1000, 0)
	steps := []struct {
		at        time.Duration
		wantOK    bool
		wantSkips int64
	}{
		{0, true, 0},
		{100 * time.Millisecond, false, 0},
		{999 * time.Millisecond, false, 0},
		{time.Second, true, 2},
		{1500 * time.Millisecond, false, 0},
		{5 * time.Second, true, 1},
	}
	for _, st := range steps {
		n, ok := l.allow(start.Add(st.at))
		if ok != st.wantOK || (ok && n != st.wantSkips) {
			t.Errorf("at %v: allow = %d, %v; want %d, %v", st.at, n, ok, st.wantSkips, st.wantOK)
		}
	}
}

func TestHandlerLogsRejectionsWithoutSecrets(t *testing.T) {
	f := newGatewayFixture(t)
	revoked, k := f.addKey(t, "revoked", apikey.ScopeFull, time.Now(), apikey.ExpiryNever)
	if _, err := f.res.store.Revoke(context.Background(), k.ID, time.Now(), keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	unknown, _ := f.format.Generate()
	h, logs := f.handler(t, &Handler{})
	serve(t, h, newRequest("GET", "/", apiKeyHeader(revoked)))
	serve(t, h, newRequest("GET", "/", apiKeyHeader(unknown)))
	serve(t, h, newRequest("GET", "/", http.Header{"Authorization": {"Bearer " + unknown}}))

	entries := logs.All()
	if len(entries) != 3 {
		t.Fatalf("%d log entries, want 3: %v", len(entries), entries)
	}
	first := entries[0].ContextMap()
	if first["key_id"] != k.ID || first["hint"] != k.Hint || first["code"] != "api_key_revoked" {
		t.Errorf("revoked key logged as %v, want key_id %s, hint %s", first, k.ID, k.Hint)
	}
	if _, ok := entries[1].ContextMap()["key_id"]; ok {
		t.Errorf("unknown key logged with a key_id: %v", entries[1].ContextMap())
	}
	for _, e := range entries {
		if e.Level != zapcore.DebugLevel {
			t.Errorf("%q logged at %v, want debug", e.Message, e.Level)
		}
		line := e.Message
		for key, v := range e.ContextMap() {
			line += " " + key + "=" + toString(v)
		}
		for _, secret := range []string{revoked, unknown, revoked[3:], unknown[3:]} {
			if strings.Contains(line, secret) {
				t.Errorf("log entry holds a secret: %s", line)
			}
		}
	}
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestHandlerProvisionRefusesBadConfig(t *testing.T) {
	f := newGatewayFixture(t)
	for name, h := range map[string]*Handler{
		"unknown scope":      {Scopes: []string{"admin"}},
		"quote in realm":     {Realm: `a"b`},
		"newline in realm":   {Realm: "a\nb"},
		"unknown preflight":  {Preflight: "skip"},
		"scope in uppercase": {Scopes: []string{"Widget"}},
	} {
		t.Run(name, func(t *testing.T) {
			if err := h.provision(f.res.verifier, f.res.recorder, zap.NewNop()); err == nil {
				t.Error("provision succeeded")
			}
		})
	}
}

// BenchmarkHandlerServeHTTPCachedKey measures the success path: a key
// already in the cache, identity headers set, next a no-op. Every request
// has a fresh replacer, as in Caddy's server.
func BenchmarkHandlerServeHTTPCachedKey(b *testing.B) {
	f := newGatewayFixture(b)
	secret, _ := f.addKey(b, "bench", apikey.ScopeWidget, time.Now(), apikey.ExpiryNever)
	h, _ := f.handler(b, &Handler{Scopes: []string{"widget"}})
	h.logger = zap.NewNop()
	base := httptest.NewRequest("GET", "/api/widget/chat", nil)
	base.Header["Authorization"] = []string{"ApiKey " + secret}
	reqs := newFreshRequests(b, base)
	w := httptest.NewRecorder()
	passed := 0
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed++; return nil })
	if err := h.ServeHTTP(w, reqs.get(), next); err != nil || passed != 1 {
		b.Fatalf("warm-up request refused: %v %d %s", err, w.Code, w.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = h.ServeHTTP(w, reqs.get(), next)
	}
	b.StopTimer()
	if w.Code != http.StatusOK || passed != b.N+1 {
		b.Fatalf("requests refused: %d %s", w.Code, w.Body)
	}
}

// BenchmarkHandlerServeHTTPUnknownScheme measures a rejection before any
// lookup (a Bearer token).
func BenchmarkHandlerServeHTTPUnknownScheme(b *testing.B) {
	f := newGatewayFixture(b)
	h, _ := f.handler(b, &Handler{})
	h.logger = zap.NewNop()
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer abc")
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		_ = h.ServeHTTP(w, r, next)
	}
}

// TestHandlerRemovesIdentityTrailersAtTheEndOfTheBody reads a chunked
// request with http.ReadRequest, which, like the server, fills in
// r.Trailer only when the body reaches its end: the trailers next sees
// then hold no identity name and no Authorization, and the others.
func TestHandlerRemovesIdentityTrailersAtTheEndOfTheBody(t *testing.T) {
	f := newGatewayFixture(t)
	secret, _ := f.addKey(t, "k", apikey.ScopeFull, time.Now(), apikey.ExpiryNever)
	h, _ := f.handler(t, &Handler{})
	for _, announce := range []string{"Trailer: X-Api-Key-Id, X-Checksum\r\n", ""} {
		raw := "POST /x HTTP/1.1\r\nHost: gw\r\nAuthorization: ApiKey " + secret + "\r\n" +
			"Transfer-Encoding: chunked\r\n" + announce + "\r\n" +
			"5\r\nhello\r\n0\r\n" +
			"X-Api-Key-Id: key_forged\r\nx_api_key_scope: full\r\nAuthorization: ApiKey forged\r\nX-Checksum: abc\r\n\r\n"
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			t.Fatal(err)
		}
		var trailers http.Header
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			if _, err := io.ReadAll(r.Body); err != nil {
				return err
			}
			trailers = r.Trailer.Clone()
			return nil
		})
		if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
			t.Fatal(err)
		}
		for name, v := range trailers {
			if n := strings.ReplaceAll(strings.ToLower(name), "_", "-"); strings.HasPrefix(n, "x-api-key-") || n == "authorization" {
				t.Errorf("%q: trailer %s = %q left", announce, name, v)
			}
		}
		if got := trailers.Get("X-Checksum"); got != "abc" {
			t.Errorf("%q: trailer X-Checksum = %q, want abc", announce, got)
		}
	}
}

func TestHandlerAnswersKeysSentInTheWrongPlace(t *testing.T) {
	f := newGatewayFixture(t)
	h, _ := f.handler(t, &Handler{})
	const key = "dk_0123456789abcdefghijklmnopqrstuv0AbCdE"
	tests := []struct {
		name, target string
		header       http.Header
		wantInMsg    string
	}{
		{"nowhere", "/x", nil, "no API key was sent"},
		{"X-Api-Key header", "/x", http.Header{"X-Api-Key": {key}}, "X-Api-Key header is not read"},
		{"api_key parameter", "/x?api_key=" + key, nil, "api_key query parameter is not read"},
		{"api_key parameter after others", "/x?a=1&b&api_key=" + key, nil, "api_key query parameter is not read"},
		{"encoded api_key parameter", "/x?api%5fkey=" + key, nil, "api_key query parameter is not read"},
		{"api_key parameter without a value", "/x?api_key", nil, "api_key query parameter is not read"},
		{"other parameters", "/x?key=" + key + "&api_keys=1&xapi_key=1", nil, "no API key was sent"},
		{"empty Authorization and X-Api-Key", "/x", http.Header{"Authorization": {""}, "X-Api-Key": {key}}, "X-Api-Key header is not read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, h, newRequest("GET", tt.target, tt.header))
			code, msg := errorAnswer(t, s.resp.Body.Bytes())
			if s.resp.Code != 401 || code != "missing_api_key" {
				t.Errorf("answer %d %s, want 401 missing_api_key", s.resp.Code, code)
			}
			if !strings.Contains(msg, tt.wantInMsg) || !strings.Contains(msg, "Authorization: ApiKey <key>") || strings.Contains(msg, key[3:]) {
				t.Errorf("message %q: want %q and where the key belongs, never the key", msg, tt.wantInMsg)
			}
		})
	}
}

func TestHandlerRefusesAmbiguousPathsWithStrictPaths(t *testing.T) {
	f := newGatewayFixture(t)
	secret, _ := f.addKey(t, "k", apikey.ScopeFull, time.Now(), apikey.ExpiryNever)
	preflight := http.Header{"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"POST"}}
	tests := []struct {
		name, target string
		h            *Handler
		header       http.Header
		wantStatus   int
		wantCode     string
	}{
		{"plain path", "/api/x", &Handler{StrictPaths: true}, apiKeyHeader(secret), 200, ""},
		{"ambiguous path with a key", "/api/..;/admin", &Handler{StrictPaths: true}, apiKeyHeader(secret), 400, "ambiguous_path"},
		{"ambiguous path without a key", "/api/%2e%2e/admin", &Handler{StrictPaths: true}, nil, 400, "ambiguous_path"},
		{"ambiguous path of a preflight", "/api/%5cadmin", &Handler{StrictPaths: true}, preflight, 400, "ambiguous_path"},
		{"ambiguous path, strict_paths off", "/api/..;/admin", &Handler{}, apiKeyHeader(secret), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := f.handler(t, tt.h)
			method := "GET"
			if tt.header.Get("Origin") != "" {
				method = "OPTIONS"
			}
			s := serve(t, h, newRequest(method, tt.target, tt.header))
			if s.resp.Code != tt.wantStatus || (s.upstream != nil) != (tt.wantStatus == 200) {
				t.Fatalf("status %d, passed on %v; want %d", s.resp.Code, s.upstream != nil, tt.wantStatus)
			}
			if tt.wantCode == "" {
				return
			}
			if code, msg := errorAnswer(t, s.resp.Body.Bytes()); code != tt.wantCode || !strings.Contains(msg, "plain form") {
				t.Errorf("answer %s %q, want %s", code, msg, tt.wantCode)
			}
			if got := s.resp.Header().Get("WWW-Authenticate"); got != "" {
				t.Errorf("WWW-Authenticate = %q on a 400", got)
			}
		})
	}
}
