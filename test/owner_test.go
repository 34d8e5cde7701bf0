package test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// ownerCaddyfile routes by owner the ways a SaaS deploys keygate: one
// hostname per customer (acme.example.test), a tenant header set by the
// application, and metadata passed to the upstream.
const ownerCaddyfile = `{
	admin {{.Admin}}
	persist_config off
}

http://:{{.Site}} {
	bind 127.0.0.1
	handle /host/* {
		apikey widget {
			owner {http.request.host.labels.2}
		}
		reverse_proxy {{.Upstream}}
	}
	handle /tenant/* {
		apikey widget {
			owner {http.request.header.X-Tenant}
		}
		reverse_proxy {{.Upstream}}
	}
	handle /anonymous/* {
		apikey widget {
			forward_identity off
		}
		reverse_proxy {{.Upstream}}
	}
	handle {
		apikey widget
		reverse_proxy {{.Upstream}} {
			header_up X-Plan {http.auth.user.metadata.plan}
			header_up X-Owner-Placeholder {http.auth.user.owner}
		}
	}
}
`

// CreateOwnedKey creates a widget key of owner with metadata through the
// admin API and returns its secret and ID.
func (g *Gateway) CreateOwnedKey(name, owner string, metadata map[string]string) (string, string) {
	g.t.Helper()
	resp, body := g.Admin(http.MethodPost, "/apikeys", map[string]any{
		"name": name, "scope": "widget", "expires_in": "1d", "owner": owner, "metadata": metadata,
	})
	if resp.StatusCode != http.StatusCreated {
		g.t.Fatalf("POST /apikeys with an owner: status %d, want 201: %s", resp.StatusCode, body)
	}
	var created struct {
		Secret string `json:"secret"`
		APIKey struct {
			ID    string  `json:"id"`
			Owner *string `json:"owner"`
		} `json:"api_key"`
	}
	if err := json.Unmarshal(body, &created); err != nil {
		g.t.Fatalf("POST /apikeys: %v: %s", err, body)
	}
	if created.APIKey.Owner == nil || *created.APIKey.Owner != owner {
		g.t.Fatalf("POST /apikeys: owner %v, want %q: %s", created.APIKey.Owner, owner, body)
	}
	return created.Secret, created.APIKey.ID
}

// requestOnHost sends a request to the site with Host set to host.
func (g *Gateway) requestOnHost(host, path string, header http.Header) (*http.Response, []byte) {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.SiteURL+path, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	req.Host = host
	for k, vs := range header {
		req.Header[k] = append([]string(nil), vs...)
	}
	return g.Do(req)
}

// with returns h with the header name set to value, in that spelling.
func with(h http.Header, name, value string) http.Header {
	h[name] = []string{value}
	return h
}

// Without an owner on the key, what a route with an owner does can be seen
// already: it refuses the key, fails closed on an empty value, and a
// client's X-Api-Key-Owner never reaches the upstream.
func TestGatewayOwnerRouteRefusesKeysWithoutOwner(t *testing.T) {
	t.Parallel()
	up := NewUpstream(t)
	g := StartGateway(t, Options{Caddyfile: ownerCaddyfile, Upstream: up})
	secret, _ := g.CreateKey("operator key", "widget", "1d")

	tests := []struct {
		name   string
		host   string
		path   string
		header http.Header
	}{
		{"host label", "acme.example.test", "/host/x", WithKey(secret)},
		{"IP address as host", "127.0.0.1", "/host/x", WithKey(secret)},
		{"tenant header", "api.example.test", "/tenant/x", with(WithKey(secret), "X-Tenant", "acme")},
		{"no tenant header", "api.example.test", "/tenant/x", WithKey(secret)},
		{"empty tenant header", "api.example.test", "/tenant/x", with(WithKey(secret), "X-Tenant", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.Count()
			resp, body := g.requestOnHost(tt.host, tt.path, tt.header)
			if resp.StatusCode != http.StatusForbidden || code(t, body) != "owner_mismatch" {
				t.Errorf("answer %d %s, want 403 owner_mismatch", resp.StatusCode, body)
			}
			if up.Count() != before {
				t.Error("the request was proxied")
			}
		})
	}

	for _, spelling := range []string{"X-Api-Key-Owner", "X_Api_Key_Owner", "x-api-key_owner"} {
		resp, body := g.requestOnHost("api.example.test", "/x", with(WithKey(secret), spelling, "globex"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", spelling, resp.StatusCode, body)
		}
		got := up.Last(t).Header
		for name := range got {
			if equalFoldUnderscore(name, "X-Api-Key-Owner") {
				t.Errorf("the client's %s reached the upstream as %s: %q", spelling, name, got[name])
			}
		}
		if v := got.Get("X-Owner-Placeholder"); v != "" {
			t.Errorf("{http.auth.user.owner} of a key without owner = %q, want empty", v)
		}
		if v := got.Get("X-Plan"); v != "" {
			t.Errorf("{http.auth.user.metadata.plan} of a key without metadata = %q, want empty", v)
		}
	}
	if c := processCounter(t, g, `caddy_apikey_requests_total{result="owner_mismatch",scope="widget"}`); c != 5 {
		t.Errorf("owner_mismatch counted %v times, want 5", c)
	}
}

func TestGatewayRoutesByOwnerAndForwardsMetadata(t *testing.T) {
	t.Parallel()

	up := NewUpstream(t)
	g := StartGateway(t, Options{Caddyfile: ownerCaddyfile, Upstream: up})
	acme, _ := g.CreateOwnedKey("acme widget", "acme", map[string]string{"plan": "pro"})
	globex, _ := g.CreateOwnedKey("globex widget", "globex", nil)

	tests := []struct {
		name   string
		host   string
		path   string
		header http.Header
		want   int
	}{
		{"acme's key on acme's hostname", "acme.example.test", "/host/x", WithKey(acme), 200},
		{"acme's key on globex's hostname", "globex.example.test", "/host/x", WithKey(acme), 403},
		{"globex's key on globex's hostname", "globex.example.test", "/host/x", WithKey(globex), 200},
		{"acme's key on an IP address as host", "127.0.0.1", "/host/x", WithKey(acme), 403},
		{"acme's key, tenant acme", "api.example.test", "/tenant/x", with(WithKey(acme), "X-Tenant", "acme"), 200},
		{"acme's key, tenant globex", "api.example.test", "/tenant/x", with(WithKey(acme), "X-Tenant", "globex"), 403},
		{"acme's key, no tenant", "api.example.test", "/tenant/x", WithKey(acme), 403},
		{"acme's key, empty tenant", "api.example.test", "/tenant/x", with(WithKey(acme), "X-Tenant", ""), 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.Count()
			resp, body := g.requestOnHost(tt.host, tt.path, with(tt.header, "X-Api-Key-Owner", "globex"))
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			if tt.want == 403 {
				if c := code(t, body); c != "owner_mismatch" {
					t.Errorf("code %q, want owner_mismatch", c)
				}
				if up.Count() != before {
					t.Error("the request was proxied")
				}
				return
			}
			got := up.Last(t).Header
			if want := map[string]string{"/host/x": tt.host[:len(tt.host)-len(".example.test")], "/tenant/x": "acme"}[tt.path]; got.Get("X-Api-Key-Owner") != want || len(got.Values("X-Api-Key-Owner")) != 1 {
				t.Errorf("X-Api-Key-Owner = %q, want %q", got.Values("X-Api-Key-Owner"), want)
			}
		})
	}

	resp, body := g.requestOnHost("api.example.test", "/x", with(WithKey(acme), "X_Api_Key_Owner", "globex"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	got := up.Last(t).Header
	for name, want := range map[string]string{"X-Plan": "pro", "X-Owner-Placeholder": "acme", "X-Api-Key-Owner": "acme"} {
		if got.Get(name) != want || len(got.Values(name)) != 1 {
			t.Errorf("upstream %s = %q, want %q", name, got.Values(name), want)
		}
	}
	if _, ok := got["X_api_key_owner"]; ok {
		t.Error("the client's X_Api_Key_Owner reached the upstream")
	}

	g.requestOnHost("api.example.test", "/anonymous/x", with(WithKey(acme), "X-Api-Key-Owner", "globex"))
	if v := up.Last(t).Header.Values("X-Api-Key-Owner"); len(v) != 0 {
		t.Errorf("X-Api-Key-Owner with forward_identity off = %q, want none", v)
	}
}

// equalFoldUnderscore reports whether a and b are the same header name
// when case and the difference between '_' and '-' are ignored.
func equalFoldUnderscore(a, b string) bool {
	return strings.EqualFold(strings.ReplaceAll(a, "_", "-"), strings.ReplaceAll(b, "_", "-"))
}

// code returns the code of a failure answer.
func code(t *testing.T, body []byte) string {
	t.Helper()
	c, _ := decodeFailure(t, body)
	return c
}

// processCounter returns the value of the sample series (name and labels,
// as the exposition writes them) from the admin endpoint's /metrics, 0 if
// it is absent.
func processCounter(t *testing.T, g *Gateway, series string) float64 {
	t.Helper()
	resp, body := g.Admin(http.MethodGet, "/metrics", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin /metrics: %d", resp.StatusCode)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}
