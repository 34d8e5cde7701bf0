package test

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Console credentials of the tests' basic_auth.
const (
	consoleUser     = "admin"
	consolePassword = "correct horse battery staple"
)

// consoleCaddyfile mounts the console four ways: behind basic_auth (the
// README's setup), behind forward_auth to an SSO, with no authentication
// handler (403), and with allow_unauthenticated. The API routes are the
// design's example.
const consoleCaddyfile = `{
	admin {{.Admin}}
	persist_config off
}

http://127.0.0.1:{{.Site}} {
	log
	redir /console /console/
	handle_path /console/* {
		basic_auth {
			{{.Extra.User}} {{.Extra.Hash}}
		}
		apikey_console
	}
	handle_path /sso/* {
		route {
			forward_auth {{.Extra.SSO}} {
				uri /verify
				copy_headers Remote-User
			}
			vars http.auth.user.id {http.request.header.Remote-User}
			apikey_console
		}
	}
	handle_path /open/* {
		apikey_console
	}
	handle_path /local/* {
		apikey_console {
			allow_unauthenticated
		}
	}
	handle /api/widget/* {
		apikey widget
		reverse_proxy {{.Upstream}}
	}
	handle /api/routines/* {
		apikey routine
		reverse_proxy {{.Upstream}}
	}
	handle {
		apikey
		reverse_proxy {{.Upstream}}
	}
}
`

// hashPassword hashes a password as the README tells operators to, with
// keygate hash-password (at bcrypt's lowest cost, to keep tests fast).
func hashPassword(t testing.TB, password string) string {
	t.Helper()
	out, err := exec.Command(keygateBin, "hash-password", "--plaintext", password, "--bcrypt-cost", "4").Output()
	if err != nil {
		t.Fatalf("keygate hash-password: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// newSSO is a stand-in for a single sign-on's forward-auth endpoint: a
// request with the cookie sso=<user> is allowed as that user, sso=anonymous
// is allowed without a user, anything else is refused with 401.
func newSSO(t testing.TB) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("sso")
		switch {
		case err != nil:
			http.Error(w, "sign in at the SSO", http.StatusUnauthorized)
		case c.Value == "anonymous":
			w.WriteHeader(http.StatusOK)
		default:
			w.Header().Set("Remote-User", c.Value)
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// consoleGateway is a gateway running consoleCaddyfile, with an upstream.
type consoleGateway struct {
	*Gateway
	upstream *Upstream
}

func startConsoleGateway(t testing.TB) *consoleGateway {
	t.Helper()
	up := NewUpstream(t)
	g := StartGateway(t, Options{
		Caddyfile: consoleCaddyfile,
		Upstream:  up,
		Extra:     map[string]any{"User": consoleUser, "Hash": hashPassword(t, consolePassword), "SSO": newSSO(t)},
	})
	return &consoleGateway{Gateway: g, upstream: up}
}

// console sends a request to the console at path (under /console/), signed
// in with basic auth unless header says otherwise. A non-nil form is
// posted as the page's script posts it.
func (g *consoleGateway) console(method, path string, form url.Values, header http.Header) (*http.Response, []byte) {
	g.t.Helper()
	var req *http.Request
	var err error
	if form != nil {
		req, err = http.NewRequest(method, g.SiteURL+path, strings.NewReader(form.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Sec-Fetch-Site", "same-origin")
		}
	} else {
		req, err = http.NewRequest(method, g.SiteURL+path, nil)
	}
	if err != nil {
		g.t.Fatal(err)
	}
	req.SetBasicAuth(consoleUser, consolePassword)
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, body
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// consoleCreated is the console's answer to a create or a rotation.
type consoleCreated struct {
	Secret   string  `json:"secret"`
	APIKey   APIKey  `json:"api_key"`
	Previous *APIKey `json:"previous"`
}

func (g *consoleGateway) consoleCreate(name, scope, expiresIn string) consoleCreated {
	g.t.Helper()
	resp, body := g.console(http.MethodPost, "/console/", url.Values{"op": {"create"}, "name": {name}, "scope": {scope}, "expires_in": {expiresIn}}, nil)
	if resp.StatusCode != http.StatusCreated {
		g.t.Fatalf("console create: status %d, want 201: %s", resp.StatusCode, body)
	}
	var c consoleCreated
	if err := json.Unmarshal(body, &c); err != nil {
		g.t.Fatalf("console create: %v: %s", err, body)
	}
	return c
}

// apiCode calls the API at path with the secret and returns the status and
// the error code of the answer ("" on success).
func (g *consoleGateway) apiCode(path, secret string) (int, string) {
	g.t.Helper()
	resp, body := g.Request(http.MethodPost, path, WithKey(secret))
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return resp.StatusCode, e.Error.Code
}

func TestConsoleBehindBasicAuthManagesKeysTheGatewayChecks(t *testing.T) {
	g := startConsoleGateway(t)

	// basic_auth comes first: no credentials, no console.
	req, _ := http.NewRequest(http.MethodGet, g.SiteURL+"/console/", nil)
	resp, _ := g.Do(req)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("without credentials: status %d, WWW-Authenticate %q; want basic_auth's 401", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp, body := g.console(http.MethodGet, "/console/", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Signed in as <strong>admin</strong>") {
		t.Fatalf("signed in: status %d: %.400s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(got, "default-src 'none'; script-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", got)
	}
	resp, _ = g.console(http.MethodGet, "/console", nil, nil)
	if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/console/" {
		t.Errorf("/console: status %d, Location %q; want a redirect to /console/", resp.StatusCode, resp.Header.Get("Location"))
	}

	// One key of each scope, each accepted where its scope is.
	routes := map[string]string{"full": "/api/anything", "widget": "/api/widget/chat", "routine": "/api/routines/run"}
	created := map[string]consoleCreated{}
	for _, scope := range []string{"full", "widget", "routine"} {
		c := g.consoleCreate("Console "+scope, scope, "1d")
		created[scope] = c
		if status, code := g.apiCode(routes[scope], c.Secret); status != http.StatusOK {
			t.Errorf("%s key on %s: %d %s, want 200", scope, routes[scope], status, code)
		}
		// The admin API sees the same key.
		if k := g.GetKey(c.APIKey.ID); k.Name != "Console "+scope || k.Scope != scope {
			t.Errorf("admin API shows %+v for the console's %s key", k, scope)
		}
	}
	if status, code := g.apiCode("/api/anything", created["widget"].Secret); status != http.StatusForbidden || code != "insufficient_scope" {
		t.Errorf("widget key on a full route: %d %s, want 403 insufficient_scope", status, code)
	}

	// The page lists them.
	_, page := g.console(http.MethodGet, "/console/?scope=routine", nil, nil)
	if !strings.Contains(string(page), created["routine"].APIKey.ID) || strings.Contains(string(page), created["widget"].APIKey.ID) {
		t.Errorf("the routine filter does not show just the routine key")
	}

	// Revoke: the key fails at once.
	resp, body = g.console(http.MethodPost, "/console/", url.Values{"op": {"revoke"}, "id": {created["widget"].APIKey.ID}}, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: status %d: %s", resp.StatusCode, body)
	}
	if status, code := g.apiCode("/api/widget/chat", created["widget"].Secret); status != http.StatusUnauthorized || code != "api_key_revoked" {
		t.Errorf("revoked key: %d %s, want 401 api_key_revoked", status, code)
	}

	// Rotate with no grace: the old key has expired, the new one works.
	resp, body = g.console(http.MethodPost, "/console/", url.Values{"op": {"rotate"}, "id": {created["routine"].APIKey.ID}, "grace": {"0s"}}, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("rotate: status %d: %s", resp.StatusCode, body)
	}
	var rotated consoleCreated
	if err := json.Unmarshal(body, &rotated); err != nil {
		t.Fatal(err)
	}
	if status, code := g.apiCode("/api/routines/run", created["routine"].Secret); status != http.StatusUnauthorized || code != "api_key_expired" {
		t.Errorf("rotated-out key: %d %s, want 401 api_key_expired", status, code)
	}
	if status, code := g.apiCode("/api/routines/run", rotated.Secret); status != http.StatusOK {
		t.Errorf("new key: %d %s, want 200", status, code)
	}

	// Who did what is logged, by key ID; no secret is written anywhere.
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`"msg":"api key created".*"user":"admin".*"action":"create".*"key_id":"` + created["full"].APIKey.ID + `"`),
		regexp.MustCompile(`"msg":"api key revoked".*"user":"admin".*"action":"revoke".*"key_id":"` + created["widget"].APIKey.ID + `"`),
		regexp.MustCompile(`"msg":"api key rotated".*"user":"admin".*"action":"rotate".*"key_id":"` + rotated.APIKey.ID + `"`),
	} {
		if !want.MatchString(g.Output()) {
			t.Errorf("no log line matching %s", want)
		}
	}
	for _, c := range []consoleCreated{created["full"], created["widget"], created["routine"], rotated} {
		if strings.Contains(g.Output(), c.Secret) {
			t.Errorf("the gateway's output holds the secret of %s", c.APIKey.ID)
		}
	}
}

func TestConsoleRefusesCrossOriginChanges(t *testing.T) {
	g := startConsoleGateway(t)
	c := g.consoleCreate("Victim", "full", "never")
	for _, header := range []http.Header{
		{"Sec-Fetch-Site": {"cross-site"}},
		{"Sec-Fetch-Site": {"same-site"}, "Origin": {"http://localhost:1"}},
		{"Sec-Fetch-Site": nil, "Origin": {"https://evil.example"}},
	} {
		resp, body := g.console(http.MethodPost, "/console/", url.Values{"op": {"revoke"}, "id": {c.APIKey.ID}}, header)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%v: status %d, want 403: %s", header, resp.StatusCode, body)
		}
	}
	if k := g.GetKey(c.APIKey.ID); k.Status != "active" {
		t.Errorf("after refused cross-origin revocations the key is %s, want active", k.Status)
	}
	if status, code := g.apiCode("/api/anything", c.Secret); status != http.StatusOK {
		t.Errorf("key after refused revocations: %d %s, want 200", status, code)
	}
}

func TestConsoleWithoutAnAuthenticationHandlerAnswers403(t *testing.T) {
	g := startConsoleGateway(t)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		var form url.Values
		if method == http.MethodPost {
			form = url.Values{"op": {"create"}, "name": {"sneaky"}, "scope": {"full"}, "expires_in": {"never"}}
		}
		// Credentials sent to a route without basic_auth count for nothing.
		resp, body := g.console(method, "/open/", form, http.Header{"Accept": {"text/html"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s /open/: status %d, want 403", method, resp.StatusCode)
		}
		if !strings.Contains(string(body), "has no login of its own") {
			t.Errorf("%s /open/: the 403 page does not explain: %.300s", method, body)
		}
	}
	_, body := g.Admin(http.MethodGet, "/apikeys", nil)
	if strings.Contains(string(body), "sneaky") {
		t.Error("a key was created without authentication")
	}
	// allow_unauthenticated serves this test's loopback connection.
	req, _ := http.NewRequest(http.MethodGet, g.SiteURL+"/local/", nil)
	resp, body2 := g.Do(req)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body2), "Local access") {
		t.Errorf("/local/ from loopback: status %d, want 200 with local access", resp.StatusCode)
	}
}

func TestConsoleBehindForwardAuthTakesTheSSOUser(t *testing.T) {
	g := startConsoleGateway(t)
	tests := []struct {
		name       string
		header     http.Header
		wantStatus int
		wantBody   string
	}{
		{"signed in at the SSO", http.Header{"Cookie": {"sso=bob"}}, http.StatusOK, "Signed in as <strong>bob</strong>"},
		{"not signed in", nil, http.StatusUnauthorized, "sign in at the SSO"},
		{"SSO allows, names nobody", http.Header{"Cookie": {"sso=anonymous"}}, http.StatusForbidden, "has no login of its own"},
		{"client forges Remote-User", http.Header{"Cookie": {"sso=anonymous"}, "Remote-User": {"mallory"}}, http.StatusForbidden, "has no login of its own"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, g.SiteURL+"/sso/", nil)
			for k, vs := range tt.header {
				req.Header[k] = vs
			}
			resp, body := g.Do(req)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("status %d, want %d with %q: %.300s", resp.StatusCode, tt.wantStatus, tt.wantBody, body)
			}
		})
	}
}

func TestConsoleStaticFilesAreCachedAndPagesAreNot(t *testing.T) {
	g := startConsoleGateway(t)
	resp, page := g.console(http.MethodGet, "/console/", nil, nil)
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("page Cache-Control = %q, want no-store", got)
	}
	assets := regexp.MustCompile(`(?:href|src)="(static/console\.[0-9a-f]+\.(?:css|js))"`).FindAllStringSubmatch(string(page), -1)
	if len(assets) != 2 {
		t.Fatalf("found %d asset links, want 2", len(assets))
	}
	var wg sync.WaitGroup
	for _, a := range assets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := g.console(http.MethodGet, "/console/"+a[1], nil, nil)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
				t.Errorf("%s: status %d, Cache-Control %q", a[1], resp.StatusCode, resp.Header.Get("Cache-Control"))
			}
		}()
	}
	wg.Wait()
}

func TestConsoleShowsPagesOf50(t *testing.T) {
	g := startConsoleGateway(t)
	for i := range 51 {
		g.CreateKey(fmt.Sprintf("Key %02d", i), "full", "1d")
	}
	resp, body := g.console(http.MethodGet, "/console/", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /console/: %d", resp.StatusCode)
	}
	page := string(body)
	if n := strings.Count(page, `<tr data-key-id="`); n != 50 {
		t.Errorf("first page shows %d keys, want 50", n)
	}
	i := strings.Index(page, `rel="next" href="./?`)
	if i < 0 {
		t.Fatal("first page has no Older link")
	}
	href := page[i+len(`rel="next" href="./`):]
	href = html.UnescapeString(href[:strings.IndexByte(href, '"')])
	_, body = g.console(http.MethodGet, "/console/"+href, nil, nil)
	if n := strings.Count(string(body), `<tr data-key-id="`); n != 1 {
		t.Errorf("second page shows %d keys, want 1", n)
	}
	if !strings.Contains(string(body), `rel="prev"`) || strings.Contains(string(body), `rel="next"`) {
		t.Error("second page lacks a Newer link or has an Older one")
	}
}

func TestConsoleNeverEchoesOrLogsAPastedKeyWhole(t *testing.T) {
	g := startConsoleGateway(t)
	secret := g.consoleCreate("real", "full", "1d").Secret
	page := http.Header{"Accept": {"text/html"}}
	for _, tt := range []struct {
		name   string
		form   url.Values
		header http.Header
	}{
		{"key as scope (script)", url.Values{"op": {"create"}, "name": {"x"}, "scope": {secret}, "expires_in": {"1d"}}, nil},
		{"key as expiry (script)", url.Values{"op": {"create"}, "name": {"x"}, "scope": {"full"}, "expires_in": {secret}}, nil},
		{"key as scope (form)", url.Values{"op": {"create"}, "name": {"x"}, "scope": {secret}, "expires_in": {"1d"}}, page},
		{"key as expiry (form)", url.Values{"op": {"create"}, "name": {"x"}, "scope": {"full"}, "expires_in": {secret}}, page},
	} {
		resp, body := g.console(http.MethodPost, "/console/", tt.form, tt.header)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %.300s", tt.name, resp.StatusCode, body)
			continue
		}
		if strings.Contains(string(body), secret[:13]) {
			t.Errorf("%s: the answer echoes more than 12 bytes of the key", tt.name)
		}
	}
	if strings.Contains(g.Output(), secret[:13]) {
		t.Errorf("the gateway's output holds more than 12 bytes of the key")
	}
}

// TestConsoleSetsAndClearsAllowedOriginsAndIPs goes through the console
// of the real binary, with and without the page's script: the lists typed
// in the dialogs are what the admin API then shows, and a widget key
// created without origins is warned about.
func TestConsoleSetsAndClearsAllowedOriginsAndIPs(t *testing.T) {
	g := startConsoleGateway(t)
	const warning = "This widget key works from any website. Add allowed origins so that only your site can use it."

	// Created with the script, locked to a site and a network.
	resp, body := g.console(http.MethodPost, "/console/", url.Values{"op": {"create"}, "name": {"Site widget"}, "scope": {"widget"}, "expires_in": {"1y"},
		"allowed_origins": {"https://WWW.Example.com:443\nhttp://localhost:8080\n"}, "allowed_ips": {"127.0.0.1\n10.1.0.0/16"}}, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: status %d, want 201: %s", resp.StatusCode, body)
	}
	var created struct {
		consoleCreated
		Display map[string]string `json:"display"`
	}
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	if created.Display["origins_warning"] != "" {
		t.Errorf("a widget key with origins is warned about: %q", created.Display["origins_warning"])
	}
	k := g.GetKey(created.APIKey.ID)
	if strings.Join(k.AllowedOrigins, " ") != "https://www.example.com http://localhost:8080" || strings.Join(k.AllowedIPs, " ") != "127.0.0.1 10.1.0.0/16" {
		t.Errorf("admin API shows origins %q, IPs %q", k.AllowedOrigins, k.AllowedIPs)
	}
	_, page := g.console(http.MethodGet, "/console/", nil, nil)
	if !strings.Contains(string(page), "Locked to 2 origins") || !strings.Contains(string(page), "Locked to 2 IP ranges") {
		t.Error("the list does not show the key's restrictions")
	}

	// Edited without the script: origins replaced, IPs cleared.
	form := http.Header{"Accept": {"text/html"}}
	resp, page = g.console(http.MethodPost, "/console/", url.Values{"op": {"update"}, "id": {k.ID}, "name": {"Site widget"}, "metadata": {""},
		"allowed_origins": {"https://*.example.org"}, "allowed_ips": {""}}, form)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "updated.") {
		t.Fatalf("update: status %d, want 200 with a notice", resp.StatusCode)
	}
	if k := g.GetKey(k.ID); strings.Join(k.AllowedOrigins, " ") != "https://*.example.org" || len(k.AllowedIPs) != 0 {
		t.Errorf("after the edit, admin API shows origins %q, IPs %q", k.AllowedOrigins, k.AllowedIPs)
	}

	// A bad line is refused under its field, and nothing changes.
	resp, body = g.console(http.MethodPost, "/console/", url.Values{"op": {"update"}, "id": {k.ID}, "name": {"Site widget"}, "metadata": {""},
		"allowed_origins": {"https://ok.example\nexample.com/path"}}, nil)
	var e struct {
		Error struct{ Field, Message string } `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	if resp.StatusCode != http.StatusBadRequest || e.Error.Field != "allowed_origins" || !strings.HasPrefix(e.Error.Message, "Allowed origins: line 2: ") {
		t.Errorf("bad origin: status %d, error %+v; want 400 naming line 2 of allowed_origins", resp.StatusCode, e.Error)
	}
	if k := g.GetKey(k.ID); strings.Join(k.AllowedOrigins, " ") != "https://*.example.org" {
		t.Errorf("a refused edit changed the origins to %q", k.AllowedOrigins)
	}

	// A widget key without origins: warned about, with and without the
	// script; a full key is not.
	resp, body = g.console(http.MethodPost, "/console/", url.Values{"op": {"create"}, "name": {"Open widget"}, "scope": {"widget"}, "expires_in": {"1d"}}, nil)
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"origins_warning":"`+warning+`"`) {
		t.Errorf("widget key without origins: status %d, no warning in %s", resp.StatusCode, body)
	}
	resp, page = g.console(http.MethodPost, "/console/", url.Values{"op": {"create"}, "name": {"Open widget 2"}, "scope": {"widget"}, "expires_in": {"1d"}, "allowed_origins": {""}}, form)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `data-origins-warning><svg`) || !strings.Contains(string(page), warning) {
		t.Errorf("widget key without origins, no script: status %d, no warning in the show-once dialog", resp.StatusCode)
	}
	resp, page = g.console(http.MethodPost, "/console/", url.Values{"op": {"create"}, "name": {"Backend"}, "scope": {"full"}, "expires_in": {"1d"}}, form)
	if resp.StatusCode != http.StatusOK || strings.Contains(string(page), warning) {
		t.Errorf("full key: status %d, or warned about origins", resp.StatusCode)
	}
}
