package test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// secretPattern matches a key of the default prefix: "dk_", 32 random and
// 6 checksum characters.
var secretPattern = regexp.MustCompile(`^dk_[0-9A-Za-z]{38}$`)

// lastUsedCaddyfile is DefaultCaddyfile with last-used times written only
// every hour, so that a use the admin API shows can only come from the
// pending, not yet written, uses.
const lastUsedCaddyfile = `{
	admin {{.Admin}}
	persist_config off
	apikeys {
		last_used_interval 1h
	}
}

http://127.0.0.1:{{.Site}} {
	handle /api/widget/* {
		apikey widget
		reverse_proxy {{.Upstream}}
	}
	handle {
		apikey
		reverse_proxy {{.Upstream}}
	}
}
`

// adminErr returns the message of Caddy's admin error body, {"error": "..."}.
func adminErr(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not an admin error body: %v", body, err)
	}
	return e.Error
}

// gatewayCode returns the code of a gateway error body,
// {"error": {"code": "...", "message": "..."}}.
func gatewayCode(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %q is not a gateway error body: %v", body, err)
	}
	return e.Error.Code
}

// secretAnswer is the admin API's answer to a create or a rotate.
type secretAnswer struct {
	Secret   string  `json:"secret"`
	APIKey   APIKey  `json:"api_key"`
	Previous *APIKey `json:"previous"`
}

// decodeAnswer decodes an admin answer into v, strictly: a field the test
// does not know is a failure, so the API cannot grow fields unnoticed.
func decodeAnswer(t *testing.T, body []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
}

// expectGateway sends a request with secret to a full-scope route and
// checks the status and, for a failure, the error code.
func expectGateway(t *testing.T, g *Gateway, secret string, wantStatus int, wantCode string) {
	t.Helper()
	resp, body := g.Request(http.MethodGet, "/api/things", WithKey(secret))
	if resp.StatusCode != wantStatus {
		t.Fatalf("gateway answered %d, want %d: %s", resp.StatusCode, wantStatus, body)
	}
	if wantCode != "" {
		if got := gatewayCode(t, body); got != wantCode {
			t.Errorf("gateway answered code %q, want %q", got, wantCode)
		}
	}
}

func TestAdminCreateShowsTheSecretOnceAndTheKeyEverywhere(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})

	before := time.Now().UTC().Truncate(time.Second)
	resp, body := g.Admin(http.MethodPost, "/apikeys", `{"name":"Production Backend","scope":"full","expires_in":"1w"}`)
	after := time.Now().UTC()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /apikeys: status %d, want 201: %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("got Cache-Control %q, want no-store", got)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("got Content-Type %q, want application/json", got)
	}
	var created secretAnswer
	decodeAnswer(t, body, &created)
	k := created.APIKey
	if !secretPattern.MatchString(created.Secret) {
		t.Errorf("got secret %q, want dk_ and 38 base62 characters", created.Secret)
	}
	if got := resp.Header.Get("Location"); got != "/apikeys/"+k.ID {
		t.Errorf("got Location %q, want /apikeys/%s", got, k.ID)
	}
	if created.Previous != nil {
		t.Errorf("a create answered a previous key: %+v", created.Previous)
	}
	if k.Name != "Production Backend" || k.Scope != "full" || k.Status != "active" {
		t.Errorf("got key %+v, want Production Backend, full, active", k)
	}
	if want := "dk_…" + created.Secret[len(created.Secret)-4:]; k.Hint != want {
		t.Errorf("got hint %q, want %q", k.Hint, want)
	}
	if k.CreatedAt.Before(before) || k.CreatedAt.After(after) {
		t.Errorf("got created_at %v, want between %v and %v", k.CreatedAt, before, after)
	}
	if k.ExpiresAt == nil || !k.ExpiresAt.Equal(k.CreatedAt.AddDate(0, 0, 7)) {
		t.Errorf("got expires_at %v, want created_at + 7 days (%v)", k.ExpiresAt, k.CreatedAt.AddDate(0, 0, 7))
	}
	if k.LastUsedAt != nil || k.RevokedAt != nil {
		t.Errorf("got last_used_at %v, revoked_at %v, want both null", k.LastUsedAt, k.RevokedAt)
	}

	// The key works at once, and the secret is in no later answer.
	expectGateway(t, g, created.Secret, http.StatusOK, "")
	resp, body = g.Admin(http.MethodGet, "/apikeys/"+k.ID, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /apikeys/%s: status %d: %s", k.ID, resp.StatusCode, body)
	}
	var shown APIKey
	decodeAnswer(t, body, &shown)
	// Stores keep microseconds; the create answer may hold more.
	if shown.ID != k.ID || shown.Hint != k.Hint || !shown.CreatedAt.Equal(k.CreatedAt.Truncate(time.Microsecond)) {
		t.Errorf("GET answered %+v, want the created key %+v", shown, k)
	}
	resp, list := g.Admin(http.MethodGet, "/apikeys", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /apikeys: status %d: %s", resp.StatusCode, list)
	}
	for _, b := range [][]byte{body, list} {
		if strings.Contains(string(b), created.Secret) || strings.Contains(string(b), "secret") {
			t.Errorf("a later answer holds the secret: %s", b)
		}
	}
	if strings.Contains(g.Output(), created.Secret) {
		t.Error("the gateway's output holds the secret")
	}

	// An expiry of never is null.
	_, forever := g.CreateKey("Forever", "widget", "never")
	if forever.ExpiresAt != nil {
		t.Errorf("a never-expiring key has expires_at %v, want null", forever.ExpiresAt)
	}
}

func TestAdminRejectsBadInput(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	_, k := g.CreateKey("Target", "full", "1d")
	_, revoked := g.CreateKey("Revoked", "full", "1d")
	if resp, body := g.Admin(http.MethodDelete, "/apikeys/"+revoked.ID, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: status %d: %s", resp.StatusCode, body)
	}
	unknownID := "key_0000000000000000000000"
	secret := "dk_0123456789abcdefghijABCDEFGHIJ01abcdef"

	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantAllow  string
		wantErr    string // a part of the error message
	}{
		{"unknown field", "POST", "/apikeys", `{"name":"a","scope":"full","expires_in":"1d","rate_limit":["10/1s"]}`, 400, "", `unknown field "rate_limit"`},
		{"bad rate limit", "POST", "/apikeys", `{"name":"a","scope":"full","expires_in":"1d","rate_limits":["10/1s","0/1m"]}`, 400, "",
			`rate_limits[1]: "0/1m": N must be from 1 to 1000000000`},
		{"bad allowed origin", "POST", "/apikeys", `{"name":"a","scope":"widget","expires_in":"1d","allowed_origins":["https://a.example","a.example"]}`, 400, "",
			`allowed_origins[1]: origin "a.example": want scheme://host[:port]`},
		{"allowed origin not a string", "POST", "/apikeys", `{"name":"a","scope":"widget","expires_in":"1d","allowed_origins":[1]}`, 400, "", `allowed_origins[0]: must be a string`},
		{"bad allowed IP", "POST", "/apikeys", `{"name":"a","scope":"full","expires_in":"1d","allowed_ips":["10.0.0.1/8"]}`, 400, "",
			`allowed_ips[0]: IP "10.0.0.1/8": bits are set after the prefix length /8`},
		{"bad allowed IP on PATCH", "PATCH", "/apikeys/" + k.ID, `{"name":"changed","allowed_ips":["::1","10.0.0.256"]}`, 400, "",
			`allowed_ips[1]: IP "10.0.0.256": not an IP address or CIDR prefix`},
		{"field name in another case", "POST", "/apikeys", `{"Name":"a","scope":"full","expires_in":"1d"}`, 400, "", `unknown field "Name"`},
		{"empty name", "POST", "/apikeys", `{"name":"","scope":"full","expires_in":"1d"}`, 400, "", "name: must not be empty"},
		{"blank name", "POST", "/apikeys", `{"name":"   ","scope":"full","expires_in":"1d"}`, 400, "", "name: must not be empty"},
		{"missing name", "POST", "/apikeys", `{"scope":"full","expires_in":"1d"}`, 400, "", "name: must not be empty"},
		{"101-character name", "POST", "/apikeys", `{"name":"` + strings.Repeat("n", 101) + `","scope":"full","expires_in":"1d"}`, 400, "", "name: must be at most 100 characters"},
		{"name with a control character", "POST", "/apikeys", `{"name":"a\u001bb","scope":"full","expires_in":"1d"}`, 400, "", "name: must not hold control characters"},
		{"name with a C1 control", "POST", "/apikeys", `{"name":"a\u009bb","scope":"full","expires_in":"1d"}`, 400, "", "name: must not hold control characters (U+009B)"},
		{"name with a bidi override", "POST", "/apikeys", `{"name":"abc\u202etxt","scope":"full","expires_in":"1d"}`, 400, "", "name: must not hold format characters (U+202E)"},
		{"name with a zero-width space", "POST", "/apikeys", `{"name":"a\u200bb","scope":"full","expires_in":"1d"}`, 400, "", "name: must not hold format characters (U+200B)"},
		{"name of ideographic spaces", "POST", "/apikeys", `{"name":"\u3000","scope":"full","expires_in":"1d"}`, 400, "", "name: must not be empty"},
		{"unknown scope", "POST", "/apikeys", `{"name":"a","scope":"admin","expires_in":"1d"}`, 400, "", `scope: unknown scope "admin"`},
		{"unknown expires_in", "POST", "/apikeys", `{"name":"a","scope":"full","expires_in":"2d"}`, 400, "", `expires_in: unknown expiry "2d"`},
		{"number for a string", "POST", "/apikeys", `{"name":1,"scope":"full","expires_in":"1d"}`, 400, "", "name: must be a string"},
		{"not JSON", "POST", "/apikeys", `name=a`, 400, "", "not valid JSON"},
		{"two JSON values", "POST", "/apikeys", `{"name":"a","scope":"full","expires_in":"1d"} {}`, 400, "", "one JSON object and nothing after it"},
		{"empty create body", "POST", "/apikeys", ``, 400, "", "request body is empty"},
		{"oversized body", "POST", "/apikeys", `{"name":"` + strings.Repeat("n", 20000) + `"}`, 413, "", "larger than"},
		{"unknown status", "GET", "/apikeys?status=deleted", "", 400, "", `status: unknown status "deleted"`},
		{"bad grace", "POST", "/apikeys/" + k.ID + "/rotate", `{"grace":"soon"}`, 400, "", "grace:"},
		{"negative grace", "POST", "/apikeys/" + k.ID + "/rotate", `{"grace":"-1s"}`, 400, "", "grace: must be between 0s and 168h"},
		{"grace over 7 days", "POST", "/apikeys/" + k.ID + "/rotate", `{"grace":"169h"}`, 400, "", "grace: must be between 0s and 168h"},
		{"unknown rotate field", "POST", "/apikeys/" + k.ID + "/rotate", `{"grace":"1h","name":"x"}`, 400, "", `unknown field "name"`},
		{"malformed ID on GET", "GET", "/apikeys/key_123", "", 400, "", "malformed key ID"},
		{"malformed ID on DELETE", "DELETE", "/apikeys/nope", "", 400, "", "malformed key ID"},
		{"malformed ID on rotate", "POST", "/apikeys/key_%21%21/rotate", "", 400, "", "malformed key ID"},
		{"a secret in place of the ID", "GET", "/apikeys/" + secret, "", 400, "", "malformed key ID"},
		{"unknown ID on GET", "GET", "/apikeys/" + unknownID, "", 404, "", "no API key has ID " + unknownID},
		{"unknown ID on DELETE", "DELETE", "/apikeys/" + unknownID, "", 404, "", "no API key has ID " + unknownID},
		{"unknown ID on rotate", "POST", "/apikeys/" + unknownID + "/rotate", "", 404, "", "no API key has ID " + unknownID},
		{"rotating a revoked key", "POST", "/apikeys/" + revoked.ID + "/rotate", "", 409, "", "is revoked"},
		{"unknown route", "POST", "/apikeys/" + k.ID + "/revoke", "", 404, "", "resource not found"},
		{"PUT on the collection", "PUT", "/apikeys", `{}`, 405, "GET, POST", "method"},
		{"DELETE on the collection", "DELETE", "/apikeys", "", 405, "GET, POST", "method"},
		{"POST on a key", "POST", "/apikeys/" + k.ID, `{}`, 405, "GET, PATCH, DELETE", "method"},
		{"PUT on a key", "PUT", "/apikeys/" + k.ID, `{}`, 405, "GET, PATCH, DELETE", "method"},
		{"GET on rotate", "GET", "/apikeys/" + k.ID + "/rotate", "", 405, "POST", "method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any
			if tt.body != "" {
				body = tt.body
			}
			resp, got := g.Admin(tt.method, tt.path, body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, got)
			}
			if msg := adminErr(t, got); !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error %q, want it to hold %q", msg, tt.wantErr)
			}
			if allow := resp.Header.Get("Allow"); allow != tt.wantAllow {
				t.Errorf("Allow %q, want %q", allow, tt.wantAllow)
			}
			if strings.Contains(string(got), secret) {
				t.Errorf("the answer echoes the secret from the path: %s", got)
			}
		})
	}

	// None of it changed anything.
	resp, body := g.Admin(http.MethodGet, "/apikeys", nil)
	var list listAnswer
	decodeAnswer(t, body, &list)
	if resp.StatusCode != http.StatusOK || len(list.APIKeys) != 2 {
		t.Errorf("after the bad requests: status %d, %d keys, want 200 and the 2 keys made", resp.StatusCode, len(list.APIKeys))
	}
	if got := g.GetKey(k.ID); got.Name != "Target" || got.Status != "active" || got.ExpiresAt == nil || !got.ExpiresAt.Equal(k.ExpiresAt.Truncate(time.Microsecond)) {
		t.Errorf("the target key changed: %+v", got)
	}
}

func TestAdminRevokeStopsTheKeyAtOnce(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	secret, k := g.CreateKey("CI/CD Pipeline", "full", "never")
	other, _ := g.CreateKey("Other", "full", "never")

	// The key is verified, and so cached, before it is revoked.
	expectGateway(t, g, secret, http.StatusOK, "")
	expectGateway(t, g, secret, http.StatusOK, "")

	before := time.Now().UTC().Truncate(time.Second)
	resp, body := g.Admin(http.MethodDelete, "/apikeys/"+k.ID, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: status %d, want 200: %s", resp.StatusCode, body)
	}
	var revoked APIKey
	decodeAnswer(t, body, &revoked)
	if revoked.Status != "revoked" || revoked.RevokedAt == nil || revoked.RevokedAt.Before(before) {
		t.Errorf("DELETE answered %+v, want status revoked and revoked_at after %v", revoked, before)
	}

	// The very next request is refused, and so is every later one.
	expectGateway(t, g, secret, http.StatusUnauthorized, "api_key_revoked")
	expectGateway(t, g, secret, http.StatusUnauthorized, "api_key_revoked")
	expectGateway(t, g, other, http.StatusOK, "")

	// Revoking again changes nothing and succeeds.
	resp, body = g.Admin(http.MethodDelete, "/apikeys/"+k.ID, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("second DELETE: status %d, want 200: %s", resp.StatusCode, body)
	}
	var again APIKey
	decodeAnswer(t, body, &again)
	if again.Status != "revoked" || again.RevokedAt == nil || !again.RevokedAt.Equal(*revoked.RevokedAt) {
		t.Errorf("second DELETE answered revoked_at %v, want the first one, %v", again.RevokedAt, revoked.RevokedAt)
	}
}

func TestAdminRotate(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})

	t.Run("grace 0s expires the old key at once", func(t *testing.T) {
		oldSecret, old := g.CreateKey("Widget", "widget", "1mo")
		resp, _ := g.Request(http.MethodGet, "/api/widget/chat", WithKey(oldSecret))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("old key before rotation: status %d", resp.StatusCode)
		}
		resp, body := g.Admin(http.MethodPost, "/apikeys/"+old.ID+"/rotate", `{"grace":"0s"}`)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("rotate: status %d, want 201: %s", resp.StatusCode, body)
		}
		if got := resp.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("got Cache-Control %q, want no-store", got)
		}
		var rotated secretAnswer
		decodeAnswer(t, body, &rotated)
		next, prev := rotated.APIKey, rotated.Previous
		if !secretPattern.MatchString(rotated.Secret) || rotated.Secret == oldSecret {
			t.Errorf("got new secret %q, want a fresh key", rotated.Secret)
		}
		if next.ID == old.ID || next.Name != "Widget" || next.Scope != "widget" || next.Status != "active" {
			t.Errorf("got new key %+v, want a new ID with the old name and scope", next)
		}
		if next.ExpiresAt == nil || !next.ExpiresAt.Equal(next.CreatedAt.AddDate(0, 1, 0)) {
			t.Errorf("got new expires_at %v, want a month after %v", next.ExpiresAt, next.CreatedAt)
		}
		if prev == nil || prev.ID != old.ID || prev.Status != "expired" {
			t.Fatalf("got previous %+v, want the old key, expired", prev)
		}
		if prev.ReplacedBy == nil || *prev.ReplacedBy != next.ID {
			t.Errorf("got previous replaced_by %v, want %s", prev.ReplacedBy, next.ID)
		}
		if next.ReplacedBy != nil {
			t.Errorf("got new key replaced_by %v, want null", *next.ReplacedBy)
		}

		for _, path := range []string{"/api/widget/chat", "/api/widget/history"} {
			resp, body := g.Request(http.MethodGet, path, WithKey(oldSecret))
			if resp.StatusCode != http.StatusUnauthorized || gatewayCode(t, body) != "api_key_expired" {
				t.Errorf("old key on %s: %d %s, want 401 api_key_expired", path, resp.StatusCode, body)
			}
			resp, body = g.Request(http.MethodGet, path, WithKey(rotated.Secret))
			if resp.StatusCode != http.StatusOK {
				t.Errorf("new key on %s: %d %s, want 200", path, resp.StatusCode, body)
			}
		}
	})

	t.Run("without a body the old key works for 24h", func(t *testing.T) {
		oldSecret, old := g.CreateKey("Backend", "full", "never")
		before := time.Now().UTC().Truncate(time.Second)
		resp, body := g.Admin(http.MethodPost, "/apikeys/"+old.ID+"/rotate", nil)
		after := time.Now().UTC()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("rotate: status %d, want 201: %s", resp.StatusCode, body)
		}
		var rotated secretAnswer
		decodeAnswer(t, body, &rotated)
		prev := rotated.Previous
		if prev == nil || prev.Status != "active" || prev.ExpiresAt == nil {
			t.Fatalf("got previous %+v, want it active with an expiry", prev)
		}
		if e := *prev.ExpiresAt; e.Before(before.Add(24*time.Hour)) || e.After(after.Add(24*time.Hour)) {
			t.Errorf("got previous expires_at %v, want 24h after the rotation (%v to %v)", e, before, after)
		}
		if rotated.APIKey.ExpiresAt != nil {
			t.Errorf("a never-expiring key's rotation expires at %v, want never", rotated.APIKey.ExpiresAt)
		}
		expectGateway(t, g, oldSecret, http.StatusOK, "")
		expectGateway(t, g, rotated.Secret, http.StatusOK, "")

		// The old key works for its grace period, but is replaced: it
		// cannot be rotated again, and shows its successor.
		resp, body = g.Admin(http.MethodPost, "/apikeys/"+old.ID+"/rotate", nil)
		if resp.StatusCode != http.StatusConflict || !strings.Contains(adminErr(t, body), "was already replaced") {
			t.Errorf("rotating the replaced key again: %d %s, want 409 saying it was already replaced", resp.StatusCode, body)
		}
		if got := g.GetKey(old.ID); got.ReplacedBy == nil || *got.ReplacedBy != rotated.APIKey.ID {
			t.Errorf("GET old key: replaced_by %v, want %s", got.ReplacedBy, rotated.APIKey.ID)
		}
		resp, body = g.Admin(http.MethodGet, "/apikeys?status=active", nil)
		if n := strings.Count(string(body), `"name":"Backend"`); resp.StatusCode != http.StatusOK || n != 2 {
			t.Errorf("active keys named Backend: %d (%d %s), want 2: the old and its one successor", n, resp.StatusCode, body)
		}
	})

}

func TestAdminListFiltersByStatusNewestFirst(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	_, a := g.CreateKey("A", "full", "1d")
	_, b := g.CreateKey("B", "widget", "1d")
	_, c := g.CreateKey("C", "routine", "never")
	if resp, body := g.Admin(http.MethodDelete, "/apikeys/"+b.ID, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}
	resp, body := g.Admin(http.MethodPost, "/apikeys/"+c.ID+"/rotate", `{"grace":"0s"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("rotate: %d %s", resp.StatusCode, body)
	}
	var rotated secretAnswer
	decodeAnswer(t, body, &rotated)
	d := rotated.APIKey

	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{d.ID, c.ID, b.ID, a.ID}},
		{"?status=active", []string{d.ID, a.ID}},
		{"?status=revoked", []string{b.ID}},
		{"?status=expired", []string{c.ID}},
	}
	for _, tt := range tests {
		t.Run("status"+tt.query, func(t *testing.T) {
			resp, body := g.Admin(http.MethodGet, "/apikeys"+tt.query, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var list listAnswer
			decodeAnswer(t, body, &list)
			var got []string
			for _, k := range list.APIKeys {
				got = append(got, k.ID)
				if want := strings.TrimPrefix(tt.query, "?status="); want != "" && k.Status != want {
					t.Errorf("key %s has status %q in the %s list", k.ID, k.Status, want)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v (newest first)", got, tt.want)
			}
		})
	}

	// An empty list is [], not null.
	g2 := StartGateway(t, Options{Upstream: NewUpstream(t)})
	resp, body = g2.Admin(http.MethodGet, "/apikeys", nil)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"api_keys":[],"next_cursor":null}` {
		t.Errorf("empty store: %d %s, want 200 {\"api_keys\":[],\"next_cursor\":null}", resp.StatusCode, body)
	}
}

// listAnswer is an answer of GET /apikeys.
type listAnswer struct {
	APIKeys    []APIKey `json:"api_keys"`
	NextCursor *string  `json:"next_cursor"`
}

func TestAdminListPagesWithLimitAndCursor(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	var created []string
	for _, name := range []string{"Alpha", "Beta", "Gamma", "Delta", "Epsilon"} {
		_, k := g.CreateKey(name, "full", "1d")
		created = append(created, k.ID)
	}
	var all listAnswer
	_, body := g.Admin(http.MethodGet, "/apikeys", nil)
	decodeAnswer(t, body, &all)
	if len(all.APIKeys) != 5 || all.NextCursor != nil {
		t.Fatalf("GET /apikeys: %d keys, next %v; want 5, null", len(all.APIKeys), all.NextCursor)
	}
	var want []string
	for _, k := range all.APIKeys {
		want = append(want, k.ID)
	}

	var got []string
	path := "/apikeys?limit=2"
	for pages := 0; pages < 10; pages++ {
		resp, body := g.Admin(http.MethodGet, path, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		var page listAnswer
		decodeAnswer(t, body, &page)
		if len(page.APIKeys) > 2 {
			t.Fatalf("GET %s: %d keys, want at most 2", path, len(page.APIKeys))
		}
		for _, k := range page.APIKeys {
			got = append(got, k.ID)
		}
		if page.NextCursor == nil {
			break
		}
		// A key created between pages is newer than every key listed: it
		// does not appear in the pages that follow.
		if pages == 0 {
			g.CreateKey("Created between pages", "full", "1d")
		}
		path = "/apikeys?limit=2&cursor=" + url.QueryEscape(*page.NextCursor)
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages of 2 = %v, want %v", got, want)
	}

	// q: a whole ID, or part of a name in any ASCII case.
	_, body = g.Admin(http.MethodGet, "/apikeys?q="+created[2], nil)
	var byID listAnswer
	decodeAnswer(t, body, &byID)
	if len(byID.APIKeys) != 1 || byID.APIKeys[0].ID != created[2] {
		t.Errorf("q=<ID> found %v, want %s", byID.APIKeys, created[2])
	}
	_, body = g.Admin(http.MethodGet, "/apikeys?q=ELTA&status=active", nil)
	var byName listAnswer
	decodeAnswer(t, body, &byName)
	if len(byName.APIKeys) != 1 || byName.APIKeys[0].Name != "Delta" {
		t.Errorf("q=ELTA found %v, want Delta", byName.APIKeys)
	}
}

func TestAdminListRefusesBadPagingParameters(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	secret, _ := g.CreateKey("A", "full", "1d")
	tests := []struct {
		query, wantErr string
	}{
		{"?limit=0", "limit: must be a whole number from 1 to 1000"},
		{"?limit=1001", "limit: must be a whole number from 1 to 1000"},
		{"?limit=-1", "limit: must be a whole number from 1 to 1000"},
		{"?limit=many", "limit: must be a whole number from 1 to 1000"},
		{"?limit=1&limit=2", "limit: give it once"},
		{"?cursor=" + secret, "cursor: is not a cursor from a previous page"},
		{"?cursor=AAAA", "cursor: is not a cursor from a previous page"},
		{"?q=" + strings.Repeat("a", 201), "q: must be at most 200 characters"},
		{"?owner=", "owner: is empty"},
		{"?owner=me&owner=you", "owner: give it once"},
	}
	for _, tt := range tests {
		resp, body := g.Admin(http.MethodGet, "/apikeys"+tt.query, nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /apikeys%.40s: %d, want 400", tt.query, resp.StatusCode)
			continue
		}
		msg := adminErr(t, body)
		if !strings.Contains(msg, tt.wantErr) {
			t.Errorf("GET /apikeys%.40s: error %q, want it to hold %q", tt.query, msg, tt.wantErr)
		}
		// The error does not repeat the cursor (Caddy's admin endpoint
		// logs every URI by itself, which no handler can prevent).
		if strings.Contains(msg, secret[:13]) {
			t.Errorf("GET /apikeys%.40s: error %q repeats the cursor", tt.query, msg)
		}
	}
}

func TestAdminShowsAUseBeforeItIsWritten(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t), Caddyfile: lastUsedCaddyfile})
	secret, k := g.CreateKey("Widget", "widget", "1d")
	if got := g.GetKey(k.ID); got.LastUsedAt != nil {
		t.Fatalf("unused key has last_used_at %v", got.LastUsedAt)
	}

	before := time.Now().UTC().Truncate(time.Microsecond)
	resp, _ := g.Request(http.MethodGet, "/api/widget/chat", WithKey(secret))
	after := time.Now().UTC()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("request: status %d", resp.StatusCode)
	}

	// The use is written only after an hour: what the API shows is the
	// pending use, in the key, the list and its status filter.
	if got := g.GetKey(k.ID); got.LastUsedAt == nil || got.LastUsedAt.Before(before.Add(-time.Second)) || got.LastUsedAt.After(after) {
		t.Errorf("GET: last_used_at %v, want the use between %v and %v", got.LastUsedAt, before, after)
	}
	_, body := g.Admin(http.MethodGet, "/apikeys?status=active", nil)
	var list listAnswer
	decodeAnswer(t, body, &list)
	if len(list.APIKeys) != 1 || list.APIKeys[0].LastUsedAt == nil {
		t.Errorf("list: %s, want the key with its last use", body)
	}
}

func TestAdminWithoutKeygateInTheConfig(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t), Caddyfile: `{
	admin {{.Admin}}
	persist_config off
}

http://127.0.0.1:{{.Site}} {
	respond "no keys here"
}
`})
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/apikeys"},
		{http.MethodPost, "/apikeys"},
		{http.MethodGet, "/apikeys/key_0000000000000000000000"},
	} {
		var body any
		if req.method == http.MethodPost {
			body = `{"name":"a","scope":"full","expires_in":"1d"}`
		}
		resp, got := g.Admin(req.method, req.path, body)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s %s: status %d, want 503: %s", req.method, req.path, resp.StatusCode, got)
			continue
		}
		if msg := adminErr(t, got); !strings.Contains(msg, "keygate is not configured in the running config") {
			t.Errorf("%s %s: error %q", req.method, req.path, msg)
		}
		if got := resp.Header.Get("Retry-After"); got != "1" {
			t.Errorf("%s %s: Retry-After %q, want 1", req.method, req.path, got)
		}
	}

	// Once a config uses keygate, the same endpoint manages keys.
	g.Reload(DefaultCaddyfile)
	secret, _ := g.CreateKey("After reload", "full", "1h")
	expectGateway(t, g, secret, http.StatusOK, "")
}

func TestAdminNeverEchoesOrLogsAPastedKeyWhole(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	secret, _ := g.CreateKey("real", "full", "1h")
	for _, tt := range []struct {
		name string
		body map[string]string
	}{
		{"key as scope", map[string]string{"name": "x", "scope": secret, "expires_in": "1h"}},
		{"key as expires_in", map[string]string{"name": "x", "scope": "full", "expires_in": secret}},
	} {
		resp, body := g.Admin(http.MethodPost, "/apikeys", tt.body)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %s", tt.name, resp.StatusCode, body)
			continue
		}
		if msg := adminErr(t, body); !strings.Contains(msg, `"`+secret[:12]+`"…`) {
			t.Errorf("%s: error %q, want it to quote the first 12 bytes of the value", tt.name, msg)
		}
		if strings.Contains(string(body), secret[:13]) {
			t.Errorf("%s: the answer echoes more than 12 bytes of the key: %s", tt.name, body)
		}
	}
	// Caddy logs every admin error; the answer must have been logged, cut.
	g.WaitOutput(`unknown expiry`)
	if strings.Contains(g.Output(), secret[:13]) {
		t.Errorf("the gateway's output holds more than 12 bytes of the key")
	}
}

func TestAdminAllowedOriginsAndIPsAreStoredNormalisedAndPatchedAndRotated(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	resp, body := g.Admin(http.MethodPost, "/apikeys", `{"name":"Shop widget","scope":"widget","expires_in":"1mo",`+
		`"allowed_origins":["HTTPS://Shop.Example.com:443","https://*.bücher.example","https://shop.example.com"],`+
		`"allowed_ips":["203.0.113.7/32","2001:DB8::/32"]}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	var created secretAnswer
	decodeAnswer(t, body, &created)
	wantOrigins := []string{"https://shop.example.com", "https://*.xn--bcher-kva.example"}
	wantIPs := []string{"203.0.113.7", "2001:db8::/32"}
	id := created.APIKey.ID
	for what, k := range map[string]APIKey{"POST answer": created.APIKey, "GET": g.GetKey(id)} {
		if !slices.Equal(k.AllowedOrigins, wantOrigins) || !slices.Equal(k.AllowedIPs, wantIPs) {
			t.Errorf("%s: origins %q, IPs %q; want %q, %q", what, k.AllowedOrigins, k.AllowedIPs, wantOrigins, wantIPs)
		}
	}

	patch := func(body string) APIKey {
		t.Helper()
		resp, got := g.Admin(http.MethodPatch, "/apikeys/"+id, body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PATCH %s: %d %s", body, resp.StatusCode, got)
		}
		var k APIKey
		decodeAnswer(t, got, &k)
		return k
	}
	if k := patch(`{"allowed_origins":["http://localhost:3000"]}`); !slices.Equal(k.AllowedOrigins, []string{"http://localhost:3000"}) || !slices.Equal(k.AllowedIPs, wantIPs) {
		t.Errorf("after replacing the origins: %q %q", k.AllowedOrigins, k.AllowedIPs)
	}
	if k := patch(`{"allowed_ips":[]}`); k.AllowedIPs == nil || len(k.AllowedIPs) != 0 || len(k.AllowedOrigins) != 1 {
		t.Errorf("after clearing the IPs: %q %q, want [] and the origin kept", k.AllowedOrigins, k.AllowedIPs)
	}
	if got := g.GetKey(id); len(got.AllowedIPs) != 0 || !slices.Equal(got.AllowedOrigins, []string{"http://localhost:3000"}) {
		t.Errorf("GET after the patches: %q %q", got.AllowedOrigins, got.AllowedIPs)
	}

	resp, body = g.Admin(http.MethodPost, "/apikeys/"+id+"/rotate", `{"grace":"0s"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("rotate: %d %s", resp.StatusCode, body)
	}
	var rotated secretAnswer
	decodeAnswer(t, body, &rotated)
	if next := g.GetKey(rotated.APIKey.ID); !slices.Equal(next.AllowedOrigins, []string{"http://localhost:3000"}) || len(next.AllowedIPs) != 0 {
		t.Errorf("rotated key: origins %q, IPs %q; want those of the old key", next.AllowedOrigins, next.AllowedIPs)
	}
}
