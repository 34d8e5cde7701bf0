package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
)

func TestConsoleUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    Console
		wantErr string
	}{
		{name: "no block", input: `apikey_console`, want: Console{}},
		{name: "empty block", input: "apikey_console {\n}", want: Console{}},
		{name: "allow_unauthenticated", input: "apikey_console {\nallow_unauthenticated\n}", want: Console{AllowUnauthenticated: true}},
		{name: "argument", input: `apikey_console /keys`, wantErr: "wrong argument count"},
		{name: "argument to allow_unauthenticated", input: "apikey_console {\nallow_unauthenticated yes\n}", wantErr: "wrong argument count"},
		{name: "repeated subdirective", input: "apikey_console {\nallow_unauthenticated\nallow_unauthenticated\n}", wantErr: "allow_unauthenticated is given more than once"},
		{name: "unknown subdirective", input: "apikey_console {\nlogin admin\n}", wantErr: `unrecognized subdirective "login"`},
		{name: "owner", input: "apikey_console {\nowner acme\n}", want: Console{Owner: "acme"}},
		{name: "owner placeholder", input: "apikey_console {\nowner {http.request.header.X-Org-Id}\n}", want: Console{Owner: "{http.request.header.X-Org-Id}"}},
		{name: "owner without value", input: "apikey_console {\nowner\n}", wantErr: "wrong argument count"},
		{name: "owner with two values", input: "apikey_console {\nowner acme globex\n}", wantErr: "wrong argument count"},
		{name: "owner empty", input: "apikey_console {\nowner \"\"\n}", wantErr: "owner must not be empty"},
		{name: "owner repeated", input: "apikey_console {\nowner acme\nowner globex\n}", wantErr: "owner is given more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Console
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "Testfile:") {
					t.Errorf("error %q does not name the file and line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.AllowUnauthenticated != tt.want.AllowUnauthenticated {
				t.Errorf("AllowUnauthenticated = %v, want %v", got.AllowUnauthenticated, tt.want.AllowUnauthenticated)
			}
			if got.Owner != tt.want.Owner {
				t.Errorf("Owner = %q, want %q", got.Owner, tt.want.Owner)
			}
		})
	}
}

// TestConsoleDirectiveOrder checks that apikey_console runs after the
// authentication handlers and before respond even when written first, so
// that a plain Caddyfile needs no route block or order option.
func TestConsoleDirectiveOrder(t *testing.T) {
	input := `:8080 {
	handle_path /console/* {
		apikey_console
		respond "unreachable"
		forward_auth localhost:9091 {
			uri /verify
		}
		basic_auth {
			admin $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG
		}
		apikey
	}
}
`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	var handlers []string
	collectHandlers(t, out, &handlers)
	var order []string
	for _, h := range handlers {
		switch h {
		case "apikey", "authentication", "reverse_proxy", "apikey_console", "static_response":
			order = append(order, h)
		}
	}
	// forward_auth is a reverse_proxy; its handle_response routes hold
	// more handlers, so only the first of each kind counts.
	var firsts []string
	seen := map[string]bool{}
	for _, h := range order {
		if !seen[h] {
			seen[h] = true
			firsts = append(firsts, h)
		}
	}
	want := []string{"apikey", "authentication", "reverse_proxy", "apikey_console", "static_response"}
	if strings.Join(firsts, " ") != strings.Join(want, " ") {
		t.Errorf("handler order = %v, want %v\n%s", firsts, want, out)
	}
}

// collectHandlers appends the "handler" names of a JSON config in document
// order.
func collectHandlers(t *testing.T, data []byte, out *[]string) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	expectName := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		switch v := tok.(type) {
		case string:
			if expectName {
				*out = append(*out, v)
				expectName = false
			} else if v == "handler" {
				expectName = true
			}
		default:
			expectName = false
		}
	}
}

// newTestConsole provisions an apikeys app over a new SQLite store and a
// console over it.
func newTestConsole(t *testing.T, c *Console) *App {
	t.Helper()
	ctx := newTestContext(t)
	a := &App{Store: &StoreConfig{Path: filepath.Join(t.TempDir(), "keys.db")}}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Cleanup() })
	if err := c.provision(a, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	return a
}

// consoleRequest is a request as Caddy hands it to a handler: with a
// replacer (holding the user an authentication handler set, if any) and
// the original request, before handle_path stripped origPath's prefix.
func consoleRequest(method, origPath, path, user string, form url.Values) *http.Request {
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		r.Header.Set("Accept", "application/json")
	} else {
		r = httptest.NewRequest(method, path, nil)
	}
	repl := caddy.NewReplacer()
	if user != "" {
		repl.Set("http.auth.user.id", user)
	}
	orig := r.Clone(context.Background())
	orig.URL.Path = origPath
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.OriginalRequestCtxKey, *orig)
	return r.WithContext(ctx)
}

// byAPIKey marks r as let through by the apikey handler, which sets the
// scope placeholder besides the user ID.
func byAPIKey(r *http.Request) *http.Request {
	r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set("http.auth.user.scope", "full")
	return r
}

func TestConsoleServesTheAuthenticatedUser(t *testing.T) {
	c := &Console{}
	a := newTestConsole(t, c)
	_, k, err := a.service().Create(context.Background(), adminKey("Backend", "full", "never"))
	if err != nil {
		t.Fatal(err)
	}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("the console called the next handler")
		return nil
	})

	tests := []struct {
		name       string
		req        *http.Request
		wantStatus int
		wantBody   string
		wantHeader map[string]string
	}{
		{"user set by basic_auth", consoleRequest("GET", "/console/", "/", "alice", nil), http.StatusOK, "Signed in as <strong>alice</strong>", nil},
		{"no user", consoleRequest("GET", "/console/", "/", "", nil), http.StatusForbidden, "has no login of its own", nil},
		{"user set by the apikey handler", byAPIKey(consoleRequest("GET", "/console/", "/", k.ID, nil)), http.StatusForbidden, "has no login of its own", nil},
		{"prefix without slash", consoleRequest("GET", "/console", "/", "alice", nil), http.StatusMovedPermanently, "", map[string]string{"Location": "console/"}},
		{"revoke by the user", consoleRequest("POST", "/console/", "/", "alice", url.Values{"op": {"revoke"}, "id": {k.ID}}), http.StatusOK, `"status":"revoked"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := c.ServeHTTP(rec, tt.req, next); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %.300s", rec.Code, tt.wantStatus, rec.Body)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body lacks %q: %.300s", tt.wantBody, rec.Body)
			}
			for name, want := range tt.wantHeader {
				if got := rec.Header().Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// TestConsoleOwnerIsResolvedPerRequest checks that the owner subdirective
// is resolved with the request's replacer, as a map handler or a header
// copied by forward_auth would set it, and that a value resolving to ""
// (an unknown placeholder included) is refused.
func TestConsoleOwnerIsResolvedPerRequest(t *testing.T) {
	c := &Console{Owner: "{org}"}
	a := newTestConsole(t, c)
	keys := map[string]string{}
	for _, owner := range []string{"acme", "globex"} {
		_, k, err := a.service().Create(context.Background(), keyservice.NewKey{
			Name: owner + " key", Scope: "full", ExpiresIn: "never", Owner: owner, CreatedBy: apikey.Actor{Type: apikey.ActorAdmin},
		})
		if err != nil {
			t.Fatal(err)
		}
		keys[owner] = k.ID
	}
	tests := []struct {
		name       string
		org        *string
		wantStatus int
		want, not  string
	}{
		{"acme", ptr("acme"), http.StatusOK, keys["acme"], keys["globex"]},
		{"globex", ptr("globex"), http.StatusOK, keys["globex"], keys["acme"]},
		{"empty", ptr(""), http.StatusForbidden, "your session does not name one", keys["acme"]},
		{"unset placeholder", nil, http.StatusForbidden, "your session does not name one", keys["acme"]},
		{"not an owner", ptr("{http.request.header.X-Org}"), http.StatusForbidden, "your session does not name one", keys["acme"]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := consoleRequest("GET", "/console/", "/", "alice", nil)
			if tt.org != nil {
				r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set("org", *tt.org)
			}
			rec := httptest.NewRecorder()
			if err := c.ServeHTTP(rec, r, nil); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.want) || strings.Contains(rec.Body.String(), tt.not) {
				t.Errorf("status %d, want %d with %q and without %q", rec.Code, tt.wantStatus, tt.want, tt.not)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestConsoleProvisionRefusesALiteralOwnerNoKeyCouldHave(t *testing.T) {
	for _, tt := range []struct {
		owner   string
		wantErr bool
	}{
		{"acme", false},
		{"{http.request.header.X-Org-Id}", false},
		{"org:{org}", false},
		{"acme corp", true},
		{strings.Repeat("a", 129), true},
	} {
		a := &App{Store: &StoreConfig{Path: filepath.Join(t.TempDir(), "keys.db")}}
		if err := a.Provision(newTestContext(t)); err != nil {
			t.Fatal(err)
		}
		err := (&Console{Owner: tt.owner}).provision(a, zap.NewNop())
		if (err != nil) != tt.wantErr {
			t.Errorf("owner %q: error %v, want error: %v", tt.owner, err, tt.wantErr)
		}
		_ = a.Cleanup()
	}
}

func TestConsoleAllowUnauthenticatedOnlyFromLoopback(t *testing.T) {
	c := &Console{AllowUnauthenticated: true}
	newTestConsole(t, c)
	tests := []struct {
		remote     string
		wantStatus int
	}{
		{"127.0.0.1:41000", http.StatusOK},
		{"[::1]:41000", http.StatusOK},
		{"192.0.2.1:41000", http.StatusForbidden},
		{"[2001:db8::1]:41000", http.StatusForbidden},
	}
	for _, tt := range tests {
		r := consoleRequest("GET", "/console/", "/", "", nil)
		r.RemoteAddr = tt.remote
		rec := httptest.NewRecorder()
		if err := c.ServeHTTP(rec, r, nil); err != nil {
			t.Fatal(err)
		}
		if rec.Code != tt.wantStatus {
			t.Errorf("from %s: status %d, want %d", tt.remote, rec.Code, tt.wantStatus)
		}
	}
}

func TestConsoleProvisionWithoutTheApp(t *testing.T) {
	c := &Console{}
	if err := c.provision(&App{}, zap.NewNop()); err == nil {
		t.Error("provisioned over an app that was not provisioned")
	}
}
