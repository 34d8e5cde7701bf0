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
	"github.com/docana/keygate/internal/verifier"
)

// ownerFixture serves handlers with a real verifier (made as the apikeys
// app makes it) over keys that have owners and metadata.
type ownerFixture struct {
	*gatewayFixture
	store verifier.Store
	v     *verifier.Verifier
}

func newOwnerFixture(t testing.TB) *ownerFixture {
	t.Helper()
	f := newGatewayFixture(t)
	store := f.res.store
	v, err := verifier.New(store, verifier.Config{Format: f.format, Attach: attachValues})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return &ownerFixture{gatewayFixture: f, store: store, v: v}
}

// addOwnedKey stores a key of scope with owner and metadata, and returns
// its secret and record.
func (f *ownerFixture) addOwnedKey(t testing.TB, scope apikey.Scope, owner string, md map[string]string) (string, apikey.Key) {
	t.Helper()
	secret, k, err := f.format.New(owner+" key", scope, apikey.ExpiryNever, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k.Owner, k.Metadata = owner, md
	if err := f.res.store.Create(context.Background(), k, keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	return secret, k
}

func (f *ownerFixture) handler(t testing.TB, h *Handler) *Handler {
	t.Helper()
	if err := h.provision(f.v, f.res.recorder, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	return h
}

// serveOnHost serves r on host with the replacer Caddy's server gives a
// request (with the {http.request.*} placeholders).
func serveOnHost(t testing.TB, h *Handler, host string, r *http.Request) served {
	t.Helper()
	r.Host = host
	repl := caddyhttp.NewTestReplacer(r)
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

func TestHandlerAcceptsOnlyKeysOfTheRoutesOwner(t *testing.T) {
	f := newOwnerFixture(t)
	acme, _ := f.addOwnedKey(t, apikey.ScopeWidget, "acme", nil)
	globex, _ := f.addOwnedKey(t, apikey.ScopeWidget, "globex", nil)
	acmeRoutine, _ := f.addOwnedKey(t, apikey.ScopeRoutine, "acme", nil)
	operator, _ := f.addOwnedKey(t, apikey.ScopeFull, "", nil)

	static := f.handler(t, &Handler{Scopes: []string{"widget"}, Owner: "acme"})
	byHost := f.handler(t, &Handler{Scopes: []string{"widget"}, Owner: "{http.request.host.labels.2}"})
	byHeader := f.handler(t, &Handler{Scopes: []string{"widget"}, Owner: "{http.request.header.X-Tenant}"})
	prefixed := f.handler(t, &Handler{Scopes: []string{"widget"}, Owner: "org:{http.request.header.X-Tenant}"})
	unknown := f.handler(t, &Handler{Scopes: []string{"widget"}, Owner: "{http.request.no_such_placeholder}"})
	noOwner := f.handler(t, &Handler{Scopes: []string{"widget"}})

	tests := []struct {
		name   string
		h      *Handler
		host   string
		header http.Header
		secret string
		want   string // "ok", or the failure code
		inMsg  string
	}{
		{"static owner, its key", static, "api.example.test", nil, acme, "ok", ""},
		{"static owner, another owner's key", static, "api.example.test", nil, globex, "owner_mismatch", "another owner"},
		{"static owner, a key without owner", static, "api.example.test", nil, operator, "owner_mismatch", "another owner"},
		{"host label, its key", byHost, "acme.example.test", nil, acme, "ok", ""},
		{"host label, the other customer's host", byHost, "globex.example.test", nil, acme, "owner_mismatch", ""},
		{"host label, the other customer's key", byHost, "globex.example.test", nil, globex, "ok", ""},
		{"host label, a host without that label", byHost, "localhost", nil, acme, "owner_mismatch", "not known"},
		{"host label, upper-case host", byHost, "ACME.example.test", nil, acme, "ok", ""},
		{"tenant header, its key", byHeader, "api.example.test", http.Header{"X-Tenant": {"acme"}}, acme, "ok", ""},
		{"tenant header, another tenant", byHeader, "api.example.test", http.Header{"X-Tenant": {"globex"}}, acme, "owner_mismatch", "another owner"},
		{"tenant header missing: fail closed", byHeader, "api.example.test", nil, acme, "owner_mismatch", "not known"},
		{"tenant header empty, key without owner: fail closed", byHeader, "api.example.test", http.Header{"X-Tenant": {""}}, operator, "owner_mismatch", "not known"},
		{"tenant header in another case", byHeader, "api.example.test", http.Header{"X-Tenant": {"ACME"}}, acme, "owner_mismatch", ""},
		{"placeholder in a longer value", prefixed, "api.example.test", http.Header{"X-Tenant": {"acme"}}, acme, "owner_mismatch", "another owner"},
		{"unknown placeholder: fail closed", unknown, "api.example.test", nil, acme, "owner_mismatch", "not known"},
		{"scope is checked first", byHeader, "api.example.test", http.Header{"X-Tenant": {"globex"}}, acmeRoutine, "insufficient_scope", ""},
		{"no owner subdirective: every owner", noOwner, "api.example.test", nil, globex, "ok", ""},
		{"no owner subdirective: no owner", noOwner, "api.example.test", nil, operator, "ok", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := apiKeyHeader(tt.secret)
			for name, v := range tt.header {
				hdr[name] = v
			}
			s := serveOnHost(t, tt.h, tt.host, newRequest("GET", "/api/widget/chat", hdr))
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
			if strings.Contains(msg, "acme") || strings.Contains(msg, "globex") {
				t.Errorf("the message names an owner: %q", msg)
			}
			if id, _ := s.repl.GetString("http.auth.user.id"); id != "" {
				t.Errorf("http.auth.user.id = %q after a refusal", id)
			}
		})
	}
}

func TestHandlerCountsOwnerMismatchesByScope(t *testing.T) {
	f := newOwnerFixture(t)
	globex, _ := f.addOwnedKey(t, apikey.ScopeWidget, "globex", nil)
	h := f.handler(t, &Handler{Scopes: []string{"widget"}, Owner: "acme"})
	c := processMetrics.Requests.WithLabelValues("owner_mismatch", "widget")
	before := testutil.ToFloat64(c)
	serveOnHost(t, h, "api.example.test", newRequest("GET", "/", apiKeyHeader(globex)))
	if got := testutil.ToFloat64(c); got != before+1 {
		t.Errorf("requests_total{owner_mismatch,widget} = %v, want %v", got, before+1)
	}
}

func TestHandlerSetsOwnerAndMetadataForTheUpstream(t *testing.T) {
	f := newOwnerFixture(t)
	owned, _ := f.addOwnedKey(t, apikey.ScopeFull, "acme", map[string]string{"plan": "pro", "region": "eu_1"})
	plain, _ := f.addOwnedKey(t, apikey.ScopeFull, "", nil)
	off := false
	spoofed := http.Header{
		"X-Api-Key-Owner": {"globex"}, "X_api_key_owner": {"globex"}, "X-API-KEY_OWNER": {"globex"},
	}
	const template = "{http.auth.user.owner}|{http.auth.user.metadata.plan}|{http.auth.user.metadata.region}|" +
		"{http.auth.user.metadata.absent}|{http.auth.user.metadata.Plan}|{http.auth.user.metadata.}"
	tests := []struct {
		name       string
		h          *Handler
		secret     string
		wantHeader string // X-Api-Key-Owner upstream, "" for none
		wantOwner  string
		wantText   string // template replaced with ReplaceKnown
	}{
		{"owner and metadata", &Handler{}, owned, "acme", "acme",
			"acme|pro|eu_1||{http.auth.user.metadata.Plan}|{http.auth.user.metadata.}"},
		{"forward_identity off", &Handler{ForwardIdentity: &off}, owned, "", "acme",
			"acme|pro|eu_1||{http.auth.user.metadata.Plan}|{http.auth.user.metadata.}"},
		{"neither", &Handler{}, plain, "", "",
			"||||{http.auth.user.metadata.Plan}|{http.auth.user.metadata.}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := f.handler(t, tt.h)
			hdr := apiKeyHeader(tt.secret)
			for name, v := range spoofed {
				hdr[name] = v
			}
			s := serveOnHost(t, h, "api.example.test", newRequest("GET", "/", hdr))
			if s.upstream == nil {
				t.Fatalf("refused: %d %s", s.resp.Code, s.resp.Body)
			}
			up := s.upstream.Header
			if got := up.Values(HeaderKeyOwner); len(got) > 1 || up.Get(HeaderKeyOwner) != tt.wantHeader {
				t.Errorf("upstream %s = %q, want %q", HeaderKeyOwner, got, tt.wantHeader)
			}
			for name := range up {
				if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), HeaderKeyOwner) && name != HeaderKeyOwner {
					t.Errorf("upstream still has the client's %s", name)
				}
			}
			owner, known := s.repl.Get(placeholderOwner)
			if !known || owner != tt.wantOwner {
				t.Errorf("{%s} = %#v (known %v), want %q", placeholderOwner, owner, known, tt.wantOwner)
			}
			if got := s.repl.ReplaceKnown(template, ""); got != tt.wantText {
				t.Errorf("replaced:\n%s\nwant:\n%s", got, tt.wantText)
			}
		})
	}
}

func TestHandlerMakesTheSameValuesWithoutAnAttachingVerifier(t *testing.T) {
	f := newOwnerFixture(t)
	secret, _ := f.addOwnedKey(t, apikey.ScopeFull, "acme", map[string]string{"plan": "pro"})
	// A verifier without Attach, as a handler under test may be given.
	v, err := verifier.New(f.store, verifier.Config{Format: f.format})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	h := &Handler{Owner: "acme"}
	if err := h.provision(v, f.res.recorder, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	s := serveOnHost(t, h, "api.example.test", newRequest("GET", "/", apiKeyHeader(secret)))
	if s.upstream == nil {
		t.Fatalf("refused: %d %s", s.resp.Code, s.resp.Body)
	}
	if got := s.repl.ReplaceKnown("{http.auth.user.owner} {http.auth.user.metadata.plan}", ""); got != "acme pro" {
		t.Errorf("placeholders = %q, want %q", got, "acme pro")
	}
}

func TestMetadataPlaceholderNames(t *testing.T) {
	tests := []struct {
		key       string
		wantName  string
		wantKnown bool
	}{
		{"http.auth.user.metadata.plan", "plan", true},
		{"http.auth.user.metadata.a", "a", true},
		{"http.auth.user.metadata.tier_2", "tier_2", true},
		{"http.auth.user.metadata." + strings.Repeat("a", 32), strings.Repeat("a", 32), true},
		{"http.auth.user.metadata." + strings.Repeat("a", 33), "", false},
		{"http.auth.user.metadata.", "", false},
		{"http.auth.user.metadata.Plan", "", false},
		{"http.auth.user.metadata.2fa", "", false},
		{"http.auth.user.metadata._x", "", false},
		{"http.auth.user.metadata.plan.name", "", false},
		{"http.auth.user.metadata.plan-name", "", false},
		{"http.auth.user.owner", "", false},
		{"http.request.host", "", false},
	}
	for _, tt := range tests {
		name, known := metadataName(tt.key)
		if name != tt.wantName || known != tt.wantKnown {
			t.Errorf("metadataName(%q) = %q, %v; want %q, %v", tt.key, name, known, tt.wantName, tt.wantKnown)
		}
	}
}

// Interface guard: the handler's verifier is the real one.
var _ keyVerifier = (*verifier.Verifier)(nil)
