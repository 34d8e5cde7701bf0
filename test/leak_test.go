package test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/keystore/postgres/pgtest"
	"github.com/docana/keygate/internal/leakreport/leaktest"
)

// leakCaddyfile is the default routes plus two leak report endpoints, one
// per action, verifying reports with the keys of a server in the test
// (.Extra.keysURL, http on 127.0.0.1).
const leakCaddyfile = `{
	admin {{.Admin}}
	persist_config off
}

http://127.0.0.1:{{.Site}} {
	log
	handle /leaks/github {
		apikey_leak_report {
			public_keys_url {{.Extra.keysURL}}
		}
	}
	handle /leaks/notify {
		apikey_leak_report {
			public_keys_url {{.Extra.keysURL}}
			action report
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

// leakResult is one token of an answer.
type leakResult struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

// sendReport posts body to path with hdr (the signature headers) and
// returns the answer.
func (g *Gateway) sendReport(path string, body []byte, hdr http.Header) (*http.Response, []byte) {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.SiteURL+path, bytes.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header = hdr
	return g.Do(req)
}

// labelsOf checks that an answer is 200 with one result per token, in
// order, each with the token's hash and type, and returns the labels.
func labelsOf(t *testing.T, resp *http.Response, body []byte, tokens []leaktest.Report) []string {
	t.Helper()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("report: status %d (%s), want 200 JSON: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var results []leakResult
	if err := json.Unmarshal(body, &results); err != nil {
		t.Fatalf("report answer %s: %v", body, err)
	}
	if len(results) != len(tokens) {
		t.Fatalf("%d results for %d tokens: %s", len(results), len(tokens), body)
	}
	labels := make([]string, len(results))
	for i, r := range results {
		if r.TokenHash != leaktest.TokenHash(tokens[i].Token) || r.TokenType != tokens[i].Type {
			t.Errorf("result %d = %+v, want the hash and type of token %d", i, r, i)
		}
		labels[i] = r.Label
	}
	return labels
}

func TestLeakReportsFromGitHubRevokeLeakedKeysOnTheGateway(t *testing.T) {
	t.Parallel()
	signer := leaktest.NewSigner(t)
	keys := leaktest.NewKeyServer(t, signer)
	up := NewUpstream(t)
	g := StartGateway(t, Options{Caddyfile: leakCaddyfile, Upstream: up, Extra: map[string]any{"keysURL": keys.URL()}})

	backend, backendKey := g.CreateKey("Production Backend", "full", "1y")
	cron, cronKey := g.CreateKey("CI/CD Pipeline", "routine", "1mo")
	widget, widgetID := g.CreatePolicyKey("shop widget", "widget", []string{"https://shop.example"}, nil)
	spare, spareKey := g.CreateKey("spare", "full", "1d")
	shop := http.Header{"Authorization": {"ApiKey " + widget}, "Origin": {"https://shop.example"}}
	works := func(name, path string, hdr http.Header, want int, wantCode string) {
		t.Helper()
		resp, body := g.Request(http.MethodGet, path, hdr)
		if resp.StatusCode != want || (wantCode != "" && !strings.Contains(string(body), `"code":"`+wantCode+`"`)) {
			t.Fatalf("%s on %s: status %d %s, want %d %s", name, path, resp.StatusCode, body, want, wantCode)
		}
	}
	works("backend key", "/api/v1/items", WithKey(backend), http.StatusOK, "")
	works("routine key", "/api/routines/run", WithKey(cron), http.StatusOK, "")
	works("widget key", "/api/widget/chat", shop, http.StatusOK, "")

	tokens := []leaktest.Report{
		{Token: backend, Type: "keygate_api_key", URL: "https://github.com/octo/app/blob/0123abc/.env", Source: "content"},
		{Token: "dk_" + strings.Repeat("A", 38), Type: "keygate_api_key", URL: "https://github.com/octo/app/blob/0123abc/README.md", Source: "commit"},
		{Token: widget, Type: "keygate_api_key", URL: "https://github.com/octo/site/blob/1/index.html", Source: "content"},
		{Token: cron, Type: "keygate_api_key", URL: "https://gist.github.com/octo/1", Source: "gist_content"},
	}
	body := leaktest.Body(tokens...)

	// Refused reports change nothing: a forged signature, a key GitHub
	// never published, a body that is not the one signed.
	forger := leaktest.NewSigner(t)
	for name, hdr := range map[string]http.Header{
		"signed by another key": {"Content-Type": {"application/json"}, "Github-Public-Key-Identifier": {signer.ID}, "Github-Public-Key-Signature": {forger.Sign(body)}},
		"unknown identifier":    forger.Headers(body),
		"signature of []":       {"Content-Type": {"application/json"}, "Github-Public-Key-Identifier": {signer.ID}, "Github-Public-Key-Signature": {signer.Sign([]byte(`[]`))}},
		"unsigned":              {"Content-Type": {"application/json"}},
	} {
		resp, answer := g.sendReport("/leaks/github", body, hdr)
		if resp.StatusCode < 400 || resp.StatusCode > 499 || !strings.Contains(string(answer), `"error"`) {
			t.Errorf("%s: status %d %s, want a 4xx JSON error", name, resp.StatusCode, answer)
		}
	}
	works("backend key after refused reports", "/api/v1/items", WithKey(backend), http.StatusOK, "")

	// Action report: every key of the gateway is a true positive, the
	// garbage a false one, and nothing changes.
	resp, answer := g.sendReport("/leaks/notify", body, signer.Headers(body))
	if got, want := strings.Join(labelsOf(t, resp, answer, tokens), ","), "true_positive,false_positive,true_positive,true_positive"; got != want {
		t.Fatalf("labels with action report = %s, want %s", got, want)
	}
	works("backend key after a report with action report", "/api/v1/items", WithKey(backend), http.StatusOK, "")

	// Action revoke: the leaked keys stop working at once, but the widget
	// key, locked to its origins, keeps working.
	start := time.Now()
	resp, answer = g.sendReport("/leaks/github", body, signer.Headers(body))
	took := time.Since(start)
	if got, want := strings.Join(labelsOf(t, resp, answer, tokens), ","), "true_positive,false_positive,true_positive,true_positive"; got != want {
		t.Fatalf("labels with action revoke = %s, want %s", got, want)
	}
	works("backend key after the report", "/api/v1/items", WithKey(backend), http.StatusUnauthorized, "api_key_revoked")
	works("routine key after the report", "/api/routines/run", WithKey(cron), http.StatusUnauthorized, "api_key_revoked")
	works("widget key after the report", "/api/widget/chat", shop, http.StatusOK, "")
	works("unreported key", "/api/v1/items", WithKey(spare), http.StatusOK, "")
	t.Logf("the report was answered in %v, the keys revoked by then", took)
	for id, want := range map[string]string{backendKey.ID: "revoked", cronKey.ID: "revoked", widgetID: "active", spareKey.ID: "active"} {
		if got := g.GetKey(id).Status; got != want {
			t.Errorf("key %s is %s, want %s", id, got, want)
		}
	}

	// GitHub sends the same report again: nothing more happens, and the
	// answer is the same.
	resp, answer = g.sendReport("/leaks/github", body, signer.Headers(body))
	if got, want := strings.Join(labelsOf(t, resp, answer, tokens), ","), "true_positive,false_positive,true_positive,true_positive"; got != want {
		t.Fatalf("labels of a repeated report = %s, want %s", got, want)
	}

	// The audit log: each report of a known key is a key.leak_reported
	// event by keygate itself, with the report's url and source and what
	// was done; the revocations are key.revoked events of the same actor.
	// No event holds a token.
	_, auditBody := g.Admin(http.MethodGet, "/apikeys/audit?action=key.leak_reported&limit=100", nil)
	var audit struct {
		Events []struct {
			KeyID   string            `json:"key_id"`
			Actor   map[string]string `json:"actor"`
			Details map[string]string `json:"details"`
		} `json:"events"`
	}
	if err := json.Unmarshal(auditBody, &audit); err != nil {
		t.Fatalf("audit: %v: %s", err, auditBody)
	}
	taken := map[string][]string{}
	for _, e := range audit.Events {
		if e.Actor["type"] != "system" {
			t.Errorf("leak event of %s by %v, want actor system", e.KeyID, e.Actor)
		}
		if e.KeyID == backendKey.ID && (e.Details["url"] != tokens[0].URL || e.Details["source"] != "content") {
			t.Errorf("leak event of the backend key: details %v, want the report's url and source", e.Details)
		}
		taken[e.KeyID] = append(taken[e.KeyID], e.Details["action_taken"])
	}
	// Newest first: the repeated report, the revoking one, the report-only one.
	for id, want := range map[string]string{
		backendKey.ID: "already_inactive,revoked,none",
		cronKey.ID:    "already_inactive,revoked,none",
		widgetID:      "kept_public_widget,kept_public_widget,none",
	} {
		if got := strings.Join(taken[id], ","); got != want {
			t.Errorf("leak events of %s: actions %s, want %s", id, got, want)
		}
	}
	_, revokedBody := g.Admin(http.MethodGet, "/apikeys/audit?action=key.revoked&key_id="+backendKey.ID, nil)
	if !strings.Contains(string(revokedBody), `"type":"system"`) {
		t.Errorf("the leak's revocation is not a key.revoked event by system: %s", revokedBody)
	}
	for _, secret := range []string{backend, cron, widget, tokens[1].Token} {
		if strings.Contains(string(auditBody)+string(revokedBody), secret) {
			t.Errorf("an audit event holds a token (%s…)", secret[:6])
		}
	}

	// The metric counts the tokens of the three answered reports; the
	// refused ones count nothing.
	_, metrics := g.Admin(http.MethodGet, "/metrics", nil)
	for _, want := range []string{
		`caddy_apikey_leak_reports_total{label="true_positive"} 9`,
		`caddy_apikey_leak_reports_total{label="false_positive"} 3`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// The log names the keys, never a token.
	g.WaitOutput(`"key_id":"` + backendKey.ID + `"`)
	out := g.Output()
	for _, secret := range []string{backend, cron, widget, spare, tokens[1].Token} {
		if strings.Contains(out, secret) {
			t.Errorf("the gateway's output holds a token (%s…)", secret[:6])
		}
	}
	if !strings.Contains(out, "leaked key reported") {
		t.Error("no log line for the leaked keys")
	}
}

// TestLeakReportRefusesBadInputOnTheRealBinary sends what is not a report
// to the endpoint of the real binary: every answer is a 4xx JSON error.
func TestLeakReportRefusesBadInputOnTheRealBinary(t *testing.T) {
	t.Parallel()
	signer := leaktest.NewSigner(t)
	keys := leaktest.NewKeyServer(t, signer)
	g := StartGateway(t, Options{Caddyfile: leakCaddyfile, Extra: map[string]any{"keysURL": keys.URL()}})
	secret, k := g.CreateKey("backend", "full", "1d")
	leak := leaktest.Body(leaktest.Report{Token: secret, Type: "keygate_api_key"})
	many := make([]leaktest.Report, 1001)
	for i := range many {
		many[i] = leaktest.Report{Token: secret, Type: "keygate_api_key"}
	}
	manyBody := leaktest.Body(many...)
	huge := bytes.Repeat([]byte(" "), 1<<20+1)
	malformed := []byte(`[{"token":"` + secret + `"`)

	tests := []struct {
		name   string
		method string
		body   []byte
		hdr    http.Header
		status int
		code   string
	}{
		{"GET", http.MethodGet, nil, nil, 405, "method_not_allowed"},
		{"text/plain", http.MethodPost, leak, http.Header{"Content-Type": {"text/plain"}, "Github-Public-Key-Identifier": {signer.ID}, "Github-Public-Key-Signature": {signer.Sign(leak)}}, 415, "unsupported_media_type"},
		{"over 1 MiB", http.MethodPost, huge, signer.Headers(huge), 413, "report_too_large"},
		{"not JSON, signed", http.MethodPost, malformed, signer.Headers(malformed), 400, "malformed_report"},
		{"1001 tokens, signed", http.MethodPost, manyBody, signer.Headers(manyBody), 413, "too_many_tokens"},
		{"bad signature", http.MethodPost, leak, http.Header{"Content-Type": {"application/json"}, "Github-Public-Key-Identifier": {signer.ID}, "Github-Public-Key-Signature": {"MEUCIQ=="}}, 403, "invalid_signature"},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, g.SiteURL+"/leaks/github", bytes.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		if tt.hdr != nil {
			req.Header = tt.hdr
		}
		resp, body := g.Do(req)
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != tt.status || e.Error.Code != tt.code {
			t.Errorf("%s: status %d %s, want %d %s", tt.name, resp.StatusCode, body, tt.status, tt.code)
		}
	}
	if got := g.GetKey(k.ID).Status; got != "active" {
		t.Errorf("key is %s after refused reports, want active", got)
	}
	if all, _ := keys.Fetches(); all != 1 {
		t.Errorf("the public keys were fetched %d times, want once", all)
	}
}

// leakSharedCaddyfile is one instance of several on a shared PostgreSQL
// store, with the leak report endpoint. cache_ttl is long and the sync
// poll slow, so that the other instance drops the key only by the
// store's notification of the revocation.
const leakSharedCaddyfile = `{
	admin {{.Admin}}
	persist_config off
	apikeys {
		store postgres {env.KEYGATE_DSN}
		cache_ttl 10m
		sync_interval 1m
	}
}

http://127.0.0.1:{{.Site}} {
	handle /leaks/github {
		apikey_leak_report {
			public_keys_url {{.Extra.keysURL}}
		}
	}
	handle {
		apikey
		reverse_proxy {{.Upstream}}
	}
}
`

// TestLeakReportToOneInstanceRevokesTheKeyOnTheOthers sends a report to
// instance A of two sharing a PostgreSQL store: the key, cached by B, is
// refused by B moments later.
func TestLeakReportToOneInstanceRevokesTheKeyOnTheOthers(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	signer := leaktest.NewSigner(t)
	keys := leaktest.NewKeyServer(t, signer)
	up := NewUpstream(t)
	start := func(name string) *Gateway {
		return StartGateway(t, Options{
			Caddyfile: leakSharedCaddyfile, Upstream: up,
			Extra: map[string]any{"keysURL": keys.URL()},
			Env:   []string{"KEYGATE_DSN=" + instanceDSN(t, dsn, name)},
		})
	}
	a, b := start("leak_a"), start("leak_b")
	secret, k := a.CreateKey("Production Backend", "full", "1y")
	if resp, body := b.Request(http.MethodGet, "/api/items", WithKey(secret)); resp.StatusCode != http.StatusOK {
		t.Fatalf("B before the report: %d %s", resp.StatusCode, body) // now cached by B
	}

	tokens := []leaktest.Report{{Token: secret, Type: "keygate_api_key", URL: "https://github.com/octo/app/blob/1/.env", Source: "content"}}
	body := leaktest.Body(tokens...)
	resp, answer := a.sendReport("/leaks/github", body, signer.Headers(body))
	if got := strings.Join(labelsOf(t, resp, answer, tokens), ","); got != "true_positive" {
		t.Fatalf("labels = %s, want true_positive", got)
	}
	answered := time.Now()
	if resp, _ := a.Request(http.MethodGet, "/api/items", WithKey(secret)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("A after its answer: %d, want 401", resp.StatusCode)
	}
	deadline := answered.Add(10 * time.Second) // far below the 1m poll: only the notification can do it
	for {
		resp, body := b.Request(http.MethodGet, "/api/items", WithKey(secret))
		if resp.StatusCode == http.StatusUnauthorized && strings.Contains(string(body), "api_key_revoked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B still answers %d %s 10s after the report, want 401 api_key_revoked", resp.StatusCode, body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("B refused the leaked key %v after A answered the report", time.Since(answered).Round(time.Millisecond))
	if got := b.GetKey(k.ID).Status; got != "revoked" {
		t.Errorf("B shows the key %s, want revoked", got)
	}
}
