package test

import (
	"encoding/json"
	"hash/crc32"
	"net/http"
	"strings"
	"testing"
)

// gatewayCaddyfile has a route per handler option, all proxied to the
// test's upstream.
const gatewayCaddyfile = `{
	admin {{.Admin}}
	persist_config off
}

http://127.0.0.1:{{.Site}} {
	log
	handle /api/widget/* {
		apikey widget
		reverse_proxy {{.Upstream}}
	}
	handle /api/routines/* {
		apikey routine
		reverse_proxy {{.Upstream}}
	}
	handle /keep/* {
		apikey {
			keep_credentials
		}
		reverse_proxy {{.Upstream}}
	}
	handle /anonymous/* {
		apikey {
			forward_identity off
		}
		reverse_proxy {{.Upstream}}
	}
	handle /strict/* {
		apikey widget {
			realm strict-api
			preflight authenticate
		}
		reverse_proxy {{.Upstream}}
	}
	handle /placeholders/* {
		apikey widget
		reverse_proxy {{.Upstream}} {
			header_up X-Caller "{http.auth.user.id} {http.auth.user.name} {http.auth.user.scope}"
		}
	}
	handle {
		apikey
		reverse_proxy {{.Upstream}}
	}
}
`

// keyring holds keys of a gateway, by what they are.
type keyring struct {
	secrets map[string]string
	keys    map[string]APIKey
}

// newKeyedGateway starts gatewayCaddyfile with a recording upstream and
// creates a full, a widget and a routine key, a revoked key and an expired
// one (rotated with no grace).
func newKeyedGateway(t *testing.T) (*Gateway, *Upstream, keyring) {
	t.Helper()
	up := NewUpstream(t)
	g := StartGateway(t, Options{Caddyfile: gatewayCaddyfile, Upstream: up})
	kr := keyring{secrets: map[string]string{}, keys: map[string]APIKey{}}
	for _, scope := range []string{"full", "widget", "routine"} {
		kr.secrets[scope], kr.keys[scope] = g.CreateKey(scope+" key", scope, "1d")
	}
	kr.secrets["revoked"], kr.keys["revoked"] = g.CreateKey("revoked key", "full", "never")
	if resp, body := g.Admin(http.MethodDelete, "/apikeys/"+kr.keys["revoked"].ID, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoking: %d %s", resp.StatusCode, body)
	}
	kr.secrets["expired"], kr.keys["expired"] = g.CreateKey("expired key", "full", "1h")
	if resp, body := g.Admin(http.MethodPost, "/apikeys/"+kr.keys["expired"].ID+"/rotate", map[string]string{"grace": "0s"}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("rotating with no grace: %d %s", resp.StatusCode, body)
	}
	return g, up, kr
}

// decodeFailure returns the code and message of a failure answer, failing
// the test if the body is not exactly {"error": {"code", "message"}}.
func decodeFailure(t *testing.T, body []byte) (code, message string) {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("failure body %q is not {\"error\": {\"code\", \"message\"}}: %v", body, err)
	}
	return e.Error.Code, e.Error.Message
}

// mangle returns key with its last character changed, which breaks the
// checksum only.
func mangle(key string) string {
	if strings.HasSuffix(key, "A") {
		return key[:len(key)-1] + "B"
	}
	return key[:len(key)-1] + "A"
}

func TestGatewayAnswersEveryRowOfTheErrorTable(t *testing.T) {
	t.Parallel()
	g, up, kr := newKeyedGateway(t)
	full := kr.secrets["full"]
	unknown := wellFormedUnknownKey(t, full)

	tests := []struct {
		name       string
		path       string
		header     http.Header
		wantStatus int
		wantCode   string
		wantInMsg  string
	}{
		{"no Authorization header", "/x", nil, 401, "missing_api_key", "Authorization: ApiKey <key>"},
		{"empty Authorization header", "/x", http.Header{"Authorization": {""}}, 401, "missing_api_key", ""},
		{"scheme only", "/x", http.Header{"Authorization": {"ApiKey"}}, 401, "missing_api_key", ""},
		{"scheme and spaces only", "/x", http.Header{"Authorization": {"ApiKey    "}}, 401, "missing_api_key", ""},
		{"Bearer", "/x", http.Header{"Authorization": {"Bearer " + full}}, 401, "invalid_auth_scheme", "Authorization: ApiKey <key>"},
		{"wrong prefix", "/x", WithKey("zz" + full[2:]), 401, "malformed_api_key", `"dk_"`},
		{"too long", "/x", WithKey(full + "a"), 401, "malformed_api_key", ""},
		{"too short", "/x", WithKey(full[:20]), 401, "malformed_api_key", ""},
		{"bad alphabet", "/x", WithKey(full[:5] + "*" + full[6:]), 401, "malformed_api_key", ""},
		{"bad checksum", "/x", WithKey(mangle(full)), 401, "malformed_api_key", "checksum"},
		{"unknown key", "/x", WithKey(unknown), 401, "invalid_api_key", ""},
		{"revoked key", "/x", WithKey(kr.secrets["revoked"]), 401, "api_key_revoked", ""},
		{"expired key (rotated with grace 0s)", "/x", WithKey(kr.secrets["expired"]), 401, "api_key_expired", ""},
		{"widget key on a full-only route", "/x", WithKey(kr.secrets["widget"]), 403, "insufficient_scope", "full"},
		{"routine key on the widget route", "/api/widget/chat", WithKey(kr.secrets["routine"]), 403, "insufficient_scope", "full, widget"},
		{"widget key on the routine route", "/api/routines/run", WithKey(kr.secrets["widget"]), 403, "insufficient_scope", "full, routine"},
		{"two Authorization headers", "/x", http.Header{"Authorization": {"ApiKey " + full, "ApiKey " + full}}, 400, "ambiguous_credentials", ""},
		{"realm of the route", "/strict/x", nil, 401, "missing_api_key", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.Count()
			resp, body := g.Request(http.MethodGet, tt.path, tt.header)
			if up.Count() != before {
				t.Errorf("the request reached the upstream")
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			code, msg := decodeFailure(t, body)
			if code != tt.wantCode {
				t.Errorf("code = %q, want %q (message %q)", code, tt.wantCode, msg)
			}
			if !strings.Contains(msg, tt.wantInMsg) {
				t.Errorf("message %q does not contain %q", msg, tt.wantInMsg)
			}
			wantChallenge := ""
			if tt.wantStatus == 401 {
				wantChallenge = `ApiKey realm="keygate"`
				if strings.HasPrefix(tt.path, "/strict/") {
					wantChallenge = `ApiKey realm="strict-api"`
				}
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, wantChallenge)
			}
			if got := resp.Header.Get("Retry-After"); got != "" {
				t.Errorf("Retry-After = %q on a %d", got, resp.StatusCode)
			}
			for name, secret := range kr.secrets {
				if strings.Contains(string(body), secret[3:]) {
					t.Errorf("the answer holds the %s key: %s", name, body)
				}
			}
		})
	}
}

// wellFormedUnknownKey returns a key of like's prefix with a valid
// checksum that no store holds: like with its random part changed and the
// checksum recomputed (CRC-32 IEEE of prefix_random, 6 base62 digits).
func wellFormedUnknownKey(t *testing.T, like string) string {
	t.Helper()
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	body := []byte(like[:len(like)-6])
	body[len(body)-1] = alphabet[(strings.IndexByte(alphabet, body[len(body)-1])+1)%62]
	sum := crc32.ChecksumIEEE(body)
	check := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		check[i] = alphabet[sum%62]
		sum /= 62
	}
	return string(body) + string(check)
}

func TestGatewayForwardsTheIdentityAndNotTheKey(t *testing.T) {
	t.Parallel()
	g, up, kr := newKeyedGateway(t)
	tests := []struct {
		name, path, key string
		header          http.Header
		wantAuth        bool
		wantIdentity    bool
	}{
		{name: "full key on the catch-all", path: "/anything", key: "full", wantIdentity: true},
		{name: "full key on the widget route", path: "/api/widget/chat", key: "full", wantIdentity: true},
		{name: "widget key on the widget route", path: "/api/widget/history", key: "widget", wantIdentity: true},
		{name: "routine key on the routine route", path: "/api/routines/nightly", key: "routine", wantIdentity: true},
		{name: "keep_credentials", path: "/keep/x", key: "full", wantAuth: true, wantIdentity: true},
		{name: "forward_identity off", path: "/anonymous/x", key: "full"},
		{name: "client copies of the identity headers", path: "/anonymous/x", key: "full", header: http.Header{
			"X-Api-Key-Id": {"key_forged"}, "X-Api-Key-Name": {"forged"}, "X-Api-Key-Scope": {"full"},
		}},
		{name: "client copies replaced by the real identity", path: "/api/widget/chat", key: "widget", wantIdentity: true, header: http.Header{
			"X-Api-Key-Id": {"key_forged"}, "X-Api-Key-Scope": {"full"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := WithKey(kr.secrets[tt.key])
			for k, v := range tt.header {
				header[k] = v
			}
			resp, body := g.Request(http.MethodPost, tt.path, header)
			if resp.StatusCode != http.StatusOK || string(body) != `{"upstream":"ok"}` {
				t.Fatalf("status %d %s, want the upstream's 200", resp.StatusCode, body)
			}
			got := up.Last(t)
			if got.URL.Path != tt.path {
				t.Fatalf("upstream's last request is %s, want %s", got.URL.Path, tt.path)
			}
			wantAuth := ""
			if tt.wantAuth {
				wantAuth = "ApiKey " + kr.secrets[tt.key]
			}
			if a := got.Header.Get("Authorization"); a != wantAuth {
				t.Errorf("upstream Authorization = %q, want %q", a, wantAuth)
			}
			k := kr.keys[tt.key]
			want := map[string]string{"X-Api-Key-Id": "", "X-Api-Key-Name": "", "X-Api-Key-Scope": ""}
			if tt.wantIdentity {
				want = map[string]string{"X-Api-Key-Id": k.ID, "X-Api-Key-Name": k.Name, "X-Api-Key-Scope": k.Scope}
			}
			for name, w := range want {
				if v := got.Header.Values(name); len(v) > 1 || got.Header.Get(name) != w {
					t.Errorf("upstream %s = %q, want %q", name, v, w)
				}
			}
		})
	}
}

func TestGatewaySetsTheAuthPlaceholders(t *testing.T) {
	t.Parallel()
	g, up, kr := newKeyedGateway(t)
	resp, body := g.Request(http.MethodGet, "/placeholders/x", WithKey(kr.secrets["widget"]))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	k := kr.keys["widget"]
	if got, want := up.Last(t).Header.Get("X-Caller"), k.ID+" widget key widget"; got != want {
		t.Errorf("X-Caller = %q, want %q", got, want)
	}
	// The access log names the key by ID in user_id.
	g.WaitOutput(`"user_id":"` + k.ID + `"`)
}

func TestGatewayLetsCORSPreflightPassWithoutAKey(t *testing.T) {
	t.Parallel()
	g, up, _ := newKeyedGateway(t)
	preflight := http.Header{"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"POST"}}
	tests := []struct {
		name, method, path string
		header             http.Header
		wantStatus         int
	}{
		{"preflight", http.MethodOptions, "/api/widget/chat", preflight, 200},
		{"preflight on a route with preflight authenticate", http.MethodOptions, "/strict/x", preflight, 401},
		{"OPTIONS without Origin", http.MethodOptions, "/api/widget/chat", http.Header{"Access-Control-Request-Method": {"POST"}}, 401},
		{"POST with CORS headers", http.MethodPost, "/api/widget/chat", preflight, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.Count()
			resp, body := g.Request(tt.method, tt.path, tt.header)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d %s, want %d", resp.StatusCode, body, tt.wantStatus)
			}
			if proxied := up.Count() > before; proxied != (tt.wantStatus == 200) {
				t.Errorf("proxied = %v, want %v", proxied, tt.wantStatus == 200)
			}
		})
	}
}
