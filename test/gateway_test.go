package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net"
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
		// Keys sent where keygate does not read them: the answer says where
		// the key belongs and never repeats it.
		{"key in an X-Api-Key header", "/x", http.Header{"X-Api-Key": {full}}, 401, "missing_api_key", "X-Api-Key header is not read: send Authorization: ApiKey <key>"},
		{"key in an x-api-key header", "/x", http.Header{"x-api-key": {full}}, 401, "missing_api_key", "X-Api-Key header is not read: send Authorization: ApiKey <key>"},
		{"key in the api_key query parameter", "/x?api_key=" + full, nil, 401, "missing_api_key", "api_key query parameter is not read (URLs are logged): send Authorization: ApiKey <key>"},
		{"key in an encoded api_key query parameter", "/x?a=1&api%5Fkey=" + full, nil, 401, "missing_api_key", "api_key query parameter is not read (URLs are logged): send Authorization: ApiKey <key>"},
		// HTTP's white space is SP and HTAB, and its case folding ASCII:
		// Unicode spaces and look-alike letters are part of the value.
		{"key followed by U+00A0", "/x", http.Header{"Authorization": {"ApiKey " + full + "\u00a0"}}, 401, "malformed_api_key", ""},
		{"key followed by U+0085", "/x", http.Header{"Authorization": {"ApiKey " + full + "\u0085"}}, 401, "malformed_api_key", ""},
		{"scheme led by U+3000", "/x", http.Header{"Authorization": {"\u3000ApiKey " + full}}, 401, "invalid_auth_scheme", ""},
		{"scheme spelled with the Kelvin sign", "/x", http.Header{"Authorization": {"Api\u212aey " + full}}, 401, "invalid_auth_scheme", ""},
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
	g, up, kr := newKeyedGateway(t)
	preflight := http.Header{"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"POST"}}
	withKey := WithKey(kr.secrets["full"])
	for k, v := range preflight {
		withKey[k] = v
	}
	tests := []struct {
		name, method, path string
		header             http.Header
		wantStatus         int
		// wantAuth: the upstream receives the Authorization header.
		wantAuth bool
	}{
		{"preflight", http.MethodOptions, "/api/widget/chat", preflight, 200, false},
		{"preflight with a key", http.MethodOptions, "/api/widget/chat", withKey, 200, false},
		{"preflight with a key on a keep_credentials route", http.MethodOptions, "/keep/x", withKey, 200, true},
		{"preflight on a route with preflight authenticate", http.MethodOptions, "/strict/x", preflight, 401, false},
		{"OPTIONS without Origin", http.MethodOptions, "/api/widget/chat", http.Header{"Access-Control-Request-Method": {"POST"}}, 401, false},
		{"POST with CORS headers", http.MethodPost, "/api/widget/chat", preflight, 401, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.Count()
			resp, body := g.Request(tt.method, tt.path, tt.header)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d %s, want %d", resp.StatusCode, body, tt.wantStatus)
			}
			if proxied := up.Count() > before; proxied != (tt.wantStatus == 200) {
				t.Fatalf("proxied = %v, want %v", proxied, tt.wantStatus == 200)
			}
			if tt.wantStatus != 200 {
				return
			}
			if got := up.Last(t).Header.Get("Authorization"); (got != "") != tt.wantAuth {
				t.Errorf("upstream Authorization = %q, want it sent: %v", got, tt.wantAuth)
			}
		})
	}
}

// RawRequest sends raw, a request as written on the wire, to g's site on
// a connection of its own and returns the response with its body read.
// It reaches what http.Client refuses or rewrites: paths that are not
// clean, header names with underscores, chunked bodies with trailers.
func rawRequest(t *testing.T, g *Gateway, raw string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.SiteURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", raw, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, body
}

// identitySpellings are the spellings of the identity headers' names that
// an upstream could read as the real ones.
var identitySpellings = []string{
	"X-Api-Key-Id", "x-api-key-name", "X-API-KEY-SCOPE", "X_Api_Key_Id", "x_api_key_name", "X-Api-Key_Scope",
}

// isIdentitySpelling reports whether name is an identity header's name
// in some spelling (case, '_' for '-').
func isIdentitySpelling(name string) bool {
	switch strings.ReplaceAll(strings.ToLower(name), "_", "-") {
	case "x-api-key-id", "x-api-key-name", "x-api-key-scope":
		return true
	}
	return false
}

func TestGatewayKeepsIdentityHeadersNamedInConnection(t *testing.T) {
	t.Parallel()
	g, up, kr := newKeyedGateway(t)
	tests := []struct {
		name, path, key, connection string
		wantAuth                    bool
	}{
		{"identity headers named hop-by-hop", "/api/widget/chat", "widget",
			"keep-alive, X-Api-Key-Scope, x-api-key-id,X-API-KEY-NAME , X_Api_Key_Id", false},
		{"identity headers in a second Connection line", "/api/widget/chat", "widget",
			"keep-alive\r\nConnection: X-Api-Key-Scope, X-Api-Key-Id, X-Api-Key-Name", false},
		{"Authorization named hop-by-hop on a keep_credentials route", "/keep/x", "full",
			"keep-alive, authorization, X-Api-Key-Scope", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawRequest(t, g, "GET "+tt.path+" HTTP/1.1\r\nHost: 127.0.0.1\r\n"+
				"Authorization: ApiKey "+kr.secrets[tt.key]+"\r\n"+
				"X-Other: kept\r\n"+
				"Connection: "+tt.connection+"\r\n\r\n")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %s, want the upstream's 200", resp.StatusCode, body)
			}
			got := up.Last(t)
			k := kr.keys[tt.key]
			for name, want := range map[string]string{"X-Api-Key-Id": k.ID, "X-Api-Key-Name": k.Name, "X-Api-Key-Scope": k.Scope} {
				if v := got.Header.Values(name); len(v) != 1 || v[0] != want {
					t.Errorf("upstream %s = %q, want %q", name, v, want)
				}
			}
			if a := got.Header.Get("Authorization"); (a != "") != tt.wantAuth {
				t.Errorf("upstream Authorization = %q, want it sent: %v", a, tt.wantAuth)
			}
			// The rest of the Connection list still works: X-Other was
			// not named, so it is passed on.
			if got.Header.Get("X-Other") != "kept" {
				t.Errorf("upstream X-Other = %q, want kept", got.Header.Get("X-Other"))
			}
		})
	}
}

func TestGatewayDropsIdentityTrailers(t *testing.T) {
	t.Parallel()
	g, up, kr := newKeyedGateway(t)
	const announce = "Trailer: X-Api-Key-Id, x_api_key_name, X-Checksum\r\nTrailer: X-API-KEY-SCOPE\r\n"
	tests := []struct {
		name, path, key, trailerHeader string
		wantIdentity                   bool
	}{
		{"identity trailers on an accepted request", "/api/widget/chat", "widget", announce, true},
		{"identity trailers with forward_identity off", "/anonymous/x", "full", announce, false},
		{"identity trailers not announced", "/anonymous/x", "full", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var trailers strings.Builder
			for _, name := range identitySpellings {
				fmt.Fprintf(&trailers, "%s: forged\r\n", name)
			}
			resp, body := rawRequest(t, g, "POST "+tt.path+" HTTP/1.1\r\nHost: 127.0.0.1\r\n"+
				"Authorization: ApiKey "+kr.secrets[tt.key]+"\r\n"+
				"Transfer-Encoding: chunked\r\n"+
				tt.trailerHeader+
				"Connection: close\r\n\r\n"+
				"5\r\nhello\r\n0\r\n"+trailers.String()+"X-Checksum: abc\r\n\r\n")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %s, want the upstream's 200", resp.StatusCode, body)
			}
			got := up.Last(t)
			for name, vals := range got.Trailer {
				if isIdentitySpelling(name) {
					t.Errorf("upstream trailer %s = %q", name, vals)
				}
			}
			if v := got.Trailer.Get("X-Checksum"); v != "abc" && tt.trailerHeader != "" {
				t.Errorf("upstream trailer X-Checksum = %q, want abc (trailers: %v)", v, got.Trailer)
			}
			for _, v := range got.Header.Values("Trailer") {
				for _, name := range strings.Split(v, ",") {
					if isIdentitySpelling(strings.TrimSpace(name)) {
						t.Errorf("upstream Trailer header = %q", got.Header.Values("Trailer"))
					}
				}
			}
			for name, vals := range got.Header {
				if isIdentitySpelling(name) && (!tt.wantIdentity || len(vals) != 1 || vals[0] == "forged") {
					t.Errorf("upstream header %s = %q", name, vals)
				}
			}
		})
	}
}

// strictPathsCaddyfile authenticates every request of the site with
// strict_paths on, so that no route matcher sees a path first.
const strictPathsCaddyfile = `{
	admin {{.Admin}}
	persist_config off
}

http://127.0.0.1:{{.Site}} {
	apikey {
		strict_paths
	}
	reverse_proxy {{.Upstream}}
}
`

func TestGatewayRefusesAmbiguousPathsWithStrictPaths(t *testing.T) {
	t.Parallel()
	up := NewUpstream(t)
	g := StartGateway(t, Options{Caddyfile: strictPathsCaddyfile, Upstream: up})
	full, _ := g.CreateKey("full key", "full", "1d")
	tests := []struct {
		name, path string
		noKey      bool
		wantStatus int
	}{
		{"plain path", "/api/users/42", false, 200},
		{"trailing slash", "/api/users/", false, 200},
		{"dot inside a segment", "/api/file.json", false, 200},
		{"encoded letter", "/api/%41bc", false, 200},
		{"encoded dot inside a segment", "/api/file%2ejson", false, 200},
		{"encoded space", "/api/a%20b", false, 200},
		{"query with ambiguous characters", "/api/x?next=/..;/%2e%2e/%5c", false, 200},
		{"Tomcat path parameter dot-dot", "/api/..;/admin", false, 400},
		{"path parameter", "/api/users;jsessionid=1/42", false, 400},
		{"encoded semicolon", "/api/users%3bx/42", false, 400},
		{"backslash", "/api/..\\admin", false, 400},
		{"encoded backslash", "/api/..%5cadmin", false, 400},
		{"encoded backslash, upper case", "/api/..%5Cadmin", false, 400},
		{"encoded slash", "/api/a%2fb", false, 400},
		{"encoded slash, upper case", "/api/a%2Fb", false, 400},
		{"double-encoded dot", "/api/%252e%252e/admin", false, 400},
		{"double-encoded slash", "/api/a%252fb", false, 400},
		{"encoded dot-dot segment", "/api/%2e%2e/admin", false, 400},
		{"half-encoded dot-dot segment", "/api/.%2E/admin", false, 400},
		{"encoded dot segment", "/api/%2e/admin", false, 400},
		{"dot-dot segment", "/api/../admin", false, 400},
		{"dot segment", "/api/./admin", false, 400},
		{"empty segment", "/api//admin", false, 400},
		{"encoded NUL", "/api/admin%00.json", false, 400},
		{"ambiguous path without a key", "/api/..;/admin", true, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.Count()
			auth := "Authorization: ApiKey " + full + "\r\n"
			if tt.noKey {
				auth = ""
			}
			resp, body := rawRequest(t, g, "GET "+tt.path+" HTTP/1.1\r\nHost: 127.0.0.1\r\n"+auth+"Connection: close\r\n\r\n")
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tt.wantStatus)
			}
			if proxied := up.Count() > before; proxied != (tt.wantStatus == 200) {
				t.Fatalf("proxied = %v, want %v", proxied, tt.wantStatus == 200)
			}
			if tt.wantStatus == 200 {
				if got := up.Last(t).RequestURI; got != tt.path {
					t.Errorf("upstream request-target = %q, want %q", got, tt.path)
				}
				return
			}
			if code, msg := decodeFailure(t, body); code != "ambiguous_path" || strings.Contains(msg, tt.path) {
				t.Errorf("answer %s, want code ambiguous_path and a message not repeating the path", body)
			}
		})
	}
	// Counted like every other refusal.
	_, metrics := g.Admin(http.MethodGet, "/metrics", nil)
	if !strings.Contains(string(metrics), `caddy_apikey_requests_total{result="ambiguous_path",scope=""} 18`) {
		t.Errorf("metrics do not count the 18 ambiguous paths:\n%s", grepLines(string(metrics), "caddy_apikey_requests_total"))
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
