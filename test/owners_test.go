package test

import (
	"maps"
	"net/http"
	"os"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/keystore/postgres/pgtest"
)

// adminWith sends a JSON admin request with extra headers.
func (g *Gateway) adminWith(method, path, body string, header http.Header) (*http.Response, []byte) {
	g.t.Helper()
	req, err := http.NewRequest(method, g.AdminURL+path, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	maps.Copy(req.Header, header)
	return g.Do(req)
}

func TestAdminOwnerMetadataAndCreatorRoundTrip(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	resp, body := g.adminWith(http.MethodPost, "/apikeys",
		`{"name":"Acme backend","scope":"full","expires_in":"never","owner":"org_acme","metadata":{"plan":"pro","region":"eu"}}`,
		http.Header{"Keygate-Actor": {"alice@laptop"}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /apikeys: %d %s", resp.StatusCode, body)
	}
	var created secretAnswer
	decodeAnswer(t, body, &created)
	_, other := g.CreateKey("Operator", "full", "never")

	k := g.GetKey(created.APIKey.ID)
	if k.Owner == nil || *k.Owner != "org_acme" || !maps.Equal(k.Metadata, map[string]string{"plan": "pro", "region": "eu"}) ||
		k.CreatedBy != (Actor{Type: "admin", ID: "alice@laptop"}) || k.AllowedOrigins == nil || len(k.AllowedOrigins) != 0 {
		t.Errorf("GET = owner %v, metadata %v, created by %+v, origins %v; want org_acme, plan/region, admin alice@laptop, []",
			k.Owner, k.Metadata, k.CreatedBy, k.AllowedOrigins)
	}
	if o := g.GetKey(other.ID); o.Owner != nil || len(o.Metadata) != 0 || o.CreatedBy != (Actor{Type: "admin"}) {
		t.Errorf("key made without owner or actor: owner %v, metadata %v, created by %+v", o.Owner, o.Metadata, o.CreatedBy)
	}

	resp, body = g.Admin(http.MethodGet, "/apikeys?owner=org_acme", nil)
	var list struct {
		APIKeys    []APIKey `json:"api_keys"`
		NextCursor *string  `json:"next_cursor"`
	}
	decodeAnswer(t, body, &list)
	if resp.StatusCode != http.StatusOK || len(list.APIKeys) != 1 || list.APIKeys[0].ID != k.ID {
		t.Errorf("GET ?owner=org_acme: %d, %d keys; want the Acme key alone", resp.StatusCode, len(list.APIKeys))
	}
	resp, body = g.Admin(http.MethodGet, "/apikeys?owner=org+acme", nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(adminErr(t, body), "owner: must hold only") {
		t.Errorf("GET ?owner=org acme: %d %s, want 400 naming owner", resp.StatusCode, body)
	}
	resp, body = g.adminWith(http.MethodPost, "/apikeys", `{"name":"x","scope":"full","expires_in":"1d"}`,
		http.Header{"Keygate-Actor": {"evil\tactor"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(adminErr(t, body), "Keygate-Actor header: must not hold control characters") {
		t.Errorf("POST with a tab in Keygate-Actor: %d %s, want 400", resp.StatusCode, body)
	}
}

// TestAdminPatchIsInForceWhenItAnswers checks that a rename reaches the
// upstream on the very next request, though the key is cached, and that
// what may not change is refused with what to do instead.
func TestAdminPatchIsInForceWhenItAnswers(t *testing.T) {
	up := NewUpstream(t)
	g := StartGateway(t, Options{Upstream: up})
	secret, k := g.CreateKey("Old name", "full", "never")
	expectGateway(t, g, secret, http.StatusOK, "")
	if got := up.Last(t).Header.Get("X-Api-Key-Name"); got != "Old name" {
		t.Fatalf("upstream saw X-Api-Key-Name %q, want Old name", got)
	}

	resp, body := g.Admin(http.MethodPatch, "/apikeys/"+k.ID, `{"name":"New name","metadata":{"plan":"pro"}}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
	}
	var patched APIKey
	decodeAnswer(t, body, &patched)
	if patched.Name != "New name" || patched.Metadata["plan"] != "pro" {
		t.Errorf("PATCH answered %+v, want the new name and metadata", patched)
	}
	expectGateway(t, g, secret, http.StatusOK, "")
	if got := up.Last(t).Header.Get("X-Api-Key-Name"); got != "New name" {
		t.Errorf("after PATCH, upstream saw X-Api-Key-Name %q, want New name", got)
	}

	for _, tc := range []struct{ body, want string }{
		{`{"scope":"widget"}`, "scope: cannot be changed: create a new key"},
		{`{"owner":"org_b"}`, "owner: cannot be changed: create a new key"},
		{`{"expires_in":"1y"}`, "expires_in: cannot be changed: rotate the key"},
		{`{"rate_limits":["10/1w"]}`, `rate_limits[0]: "10/1w": the window's unit must be s, m, h or d`},
	} {
		resp, body := g.Admin(http.MethodPatch, "/apikeys/"+k.ID, tc.body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(adminErr(t, body), tc.want) {
			t.Errorf("PATCH %s: %d %s, want 400 holding %q", tc.body, resp.StatusCode, body, tc.want)
		}
	}
	if got := g.GetKey(k.ID); got.Scope != "full" || got.Owner != nil {
		t.Errorf("after refused patches: %+v, want scope full, no owner", got)
	}

	if resp, body := g.Admin(http.MethodDelete, "/apikeys/"+k.ID, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}
	resp, body = g.Admin(http.MethodPatch, "/apikeys/"+k.ID, `{"name":"Too late"}`)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(adminErr(t, body), "is revoked") {
		t.Errorf("PATCH of a revoked key: %d %s, want 409", resp.StatusCode, body)
	}
}

func TestCLIOwnerMetadataAndUpdate(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	out := cli(t, g, "create", "--name", "Acme widget", "--scope", "widget", "--expires", "never",
		"--owner", "org_acme", "--meta", "plan=pro", "--meta", "region=eu", "--origin", "https://acme.example")
	id := keyIDInText.FindString(out)
	if id == "" {
		t.Fatalf("no key ID in the output:\n%s", out)
	}
	cli(t, g, "create", "--name", "Operator", "--scope", "full", "--expires", "never")

	k := g.GetKey(id)
	if k.CreatedBy.Type != "admin" || k.CreatedBy.ID != wantCLIActor(t) {
		t.Errorf("created_by = %+v, want admin %s", k.CreatedBy, wantCLIActor(t))
	}
	shown := cli(t, g, "show", id)
	for _, want := range []string{"Owner:      org_acme\n", "Metadata:   plan=pro\n            region=eu\n", "Creator:    admin " + wantCLIActor(t) + "\n"} {
		if !strings.Contains(shown, want) {
			t.Errorf("show lacks %q:\n%s", want, shown)
		}
	}

	listed := cli(t, g, "list")
	if !strings.Contains(listed, "OWNER") || !strings.Contains(listed, "org_acme") {
		t.Errorf("list lacks the owner column:\n%s", listed)
	}
	listed = cli(t, g, "list", "--owner", "org_acme")
	if strings.Count(listed, "key_") != 1 || !strings.Contains(listed, id) {
		t.Errorf("list --owner org_acme:\n%s\nwant the Acme key alone", listed)
	}

	updated := cli(t, g, "update", id, "--meta", "plan=enterprise", "--meta", "region=", "--meta", "seats=5", "--name", "Acme widget 2")
	if !strings.Contains(updated, "Updated API key "+id+" (Acme widget 2).") {
		t.Errorf("update printed:\n%s", updated)
	}
	if k := g.GetKey(id); k.Name != "Acme widget 2" || !maps.Equal(k.Metadata, map[string]string{"plan": "enterprise", "seats": "5"}) {
		t.Errorf("after update: %q %v; want the new name, plan enterprise and seats 5", k.Name, k.Metadata)
	}
	cli(t, g, "update", id, "--meta", "plan=", "--meta", "seats=")
	if k := g.GetKey(id); len(k.Metadata) != 0 {
		t.Errorf("after removing every entry: %v, want none", k.Metadata)
	}

	if stderr := cliFails(t, g, "update", id, "--scope", "full"); !strings.Contains(stderr, "unknown flag: --scope") {
		t.Errorf("update --scope: %s", stderr)
	}
	cli(t, g, "revoke", id, "--yes")
	if stderr := cliFails(t, g, "update", id, "--name", "x"); !strings.Contains(stderr, "is revoked") {
		t.Errorf("update of a revoked key: %s", stderr)
	}
}

// wantCLIActor is the Keygate-Actor the CLI sends from this machine.
func wantCLIActor(t *testing.T) string {
	t.Helper()
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return name + "@" + host
}

// TestMultiInstanceRenamePropagates checks that a change of a key made
// through one instance is in force there when PATCH answers, and on
// another instance sharing the PostgreSQL store as fast as a revocation
// (the change log and its notification), though both had the key cached.
func TestMultiInstanceRenamePropagates(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	up := NewUpstream(t)
	a := startInstance(t, dsn, "keygate-a", up, 5*time.Second)
	b := startInstance(t, dsn, "keygate-b", up, 5*time.Second)
	p := newProber(t)

	secret, k := a.CreateKey("Before", "full", "never")
	nameSeen := func(g *Gateway) string {
		t.Helper()
		p.expect(g, "the key", secret, http.StatusOK, "")
		return up.Last(t).Header.Get("X-Api-Key-Name")
	}
	if got := nameSeen(b); got != "Before" {
		t.Fatalf("B forwarded X-Api-Key-Name %q, want Before", got)
	}
	if got := nameSeen(a); got != "Before" {
		t.Fatalf("A forwarded X-Api-Key-Name %q, want Before", got)
	}

	resp, body := a.Admin(http.MethodPatch, "/apikeys/"+k.ID, `{"name":"After"}`)
	done := time.Now()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PATCH through A: %d %s", resp.StatusCode, body)
	}
	if got := nameSeen(a); got != "After" {
		t.Errorf("A forwarded X-Api-Key-Name %q right after its PATCH answered, want After", got)
	}
	limit := 5*time.Second + 5*time.Second // sync_interval + 5 s, as for a revocation
	for {
		got := nameSeen(b)
		if got == "After" {
			t.Logf("the rename through A reached B's upstream requests %v after PATCH answered", time.Since(done).Round(time.Millisecond))
			break
		}
		if got != "Before" {
			t.Fatalf("B forwarded X-Api-Key-Name %q, want Before or After", got)
		}
		if time.Since(done) > limit {
			t.Fatalf("B still forwards the old name %v after the PATCH (limit %v)", time.Since(done).Round(time.Millisecond), limit)
		}
		time.Sleep(pollEvery)
	}
	if got := b.GetKey(k.ID); got.Name != "After" {
		t.Errorf("B's admin API shows %q, want After", got.Name)
	}
}
