package test

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestCaddyfileExampleRuns runs Caddyfile.example as shipped, with only
// its ports moved to free ones, and calls each of its routes.
func TestCaddyfileExampleRuns(t *testing.T) {
	t.Parallel()
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	text := string(example)
	for old, tmpl := range map[string]string{
		"localhost:2019": "{{.Admin}}",
		":8080 {":        ":{{.Site}} {",
		"127.0.0.1:9000": "127.0.0.1:{{.Extra.upstreamPort}}",
		"http://:9000 {": "http://:{{.Extra.upstreamPort}} {",
	} {
		if !strings.Contains(text, old) {
			t.Fatalf("Caddyfile.example no longer holds %q: update this test", old)
		}
		text = strings.ReplaceAll(text, old, tmpl)
	}
	g := StartGateway(t, Options{Caddyfile: text, Extra: map[string]any{"upstreamPort": freePort(t)}})

	full, fullKey := g.CreateKey("Production Backend", "full", "1y")
	widget, widgetKey := g.CreateKey("Web widget", "widget", "1mo")
	routine, _ := g.CreateKey("Nightly scheduler", "routine", "never")

	tests := []struct {
		name, path, secret string
		wantStatus         int
		wantKeyID          string
	}{
		{"widget key on chat", "/api/widget/chat", widget, 200, widgetKey.ID},
		{"widget key on archive", "/api/widget/archive/2026", widget, 200, widgetKey.ID},
		{"widget key on another widget path", "/api/widget/settings", widget, 403, ""},
		{"routine key on routines", "/api/routines/nightly/run", routine, 200, ""},
		{"routine key on chat", "/api/widget/chat", routine, 403, ""},
		{"full key anywhere", "/api/billing", full, 200, fullKey.ID},
		{"no key", "/api/widget/chat", "", 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h http.Header
			if tt.secret != "" {
				h = WithKey(tt.secret)
			}
			resp, body := g.Request(http.MethodGet, tt.path, h)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				return
			}
			var echo map[string]string
			if err := json.Unmarshal(body, &echo); err != nil {
				t.Fatalf("stand-in answer %s: %v", body, err)
			}
			if echo["upstream"] != "stand-in" || echo["path"] != tt.path || echo["authorization"] != "" {
				t.Errorf("stand-in saw %v", echo)
			}
			if tt.wantKeyID != "" && echo["key_id"] != tt.wantKeyID {
				t.Errorf("stand-in saw key_id %q, want %q", echo["key_id"], tt.wantKeyID)
			}
		})
	}

	// Keys sent where keygate does not read them are refused with a
	// message that says where they belong, and the access log does not
	// hold them: the example's log filter removes them.
	for _, tt := range []struct {
		name, path string
		header     http.Header
	}{
		{"X-Api-Key header", "/api/wrong-place-header", http.Header{"X-Api-Key": {full}}},
		{"api_key query parameter", "/api/wrong-place-query?api_key=" + full + "&page=2", nil},
	} {
		resp, body := g.Request(http.MethodGet, tt.path, tt.header)
		if resp.StatusCode != 401 || !strings.Contains(string(body), `"missing_api_key"`) ||
			!strings.Contains(string(body), "Authorization: ApiKey <key>") || strings.Contains(string(body), full) {
			t.Errorf("%s: %d %s, want 401 missing_api_key saying where the key belongs", tt.name, resp.StatusCode, body)
		}
		g.WaitOutput(tt.path[:strings.IndexAny(tt.path+"?", "?")])
	}
	g.WaitOutput("page=2") // the rest of the query is still logged
	if strings.Contains(g.Output(), full[3:]) {
		t.Errorf("the output holds the key sent in the wrong place:\n%s", g.Output())
	}

	resp, body := g.Request(http.MethodGet, "/metrics", WithKey(full))
	if resp.StatusCode != 200 || !strings.Contains(string(body), "caddy_apikey_requests_total") {
		t.Errorf("/metrics with a full key: %d, no caddy_apikey_requests_total", resp.StatusCode)
	}
	if resp, _ := g.Request(http.MethodGet, "/metrics", WithKey(widget)); resp.StatusCode != 403 {
		t.Errorf("/metrics with a widget key: %d, want 403", resp.StatusCode)
	}

	// The widget route has cors: the gateway answers preflights (the
	// stand-in would answer 200 with JSON) and pages can read answers.
	resp, _ = g.Request(http.MethodOptions, "/api/widget/chat", http.Header{
		"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization, content-type"},
	})
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" ||
		resp.Header.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type" {
		t.Errorf("widget preflight: %d %v, want 204 allowing the origin", resp.StatusCode, resp.Header)
	}
	// The leak report endpoint is not behind apikey, and refuses what is
	// not signed before fetching anything from GitHub.
	req, _ := http.NewRequest(http.MethodPost, g.SiteURL+"/leaks/github", strings.NewReader(`[{"token":"`+full+`"}]`))
	req.Header.Set("Content-Type", "application/json")
	if resp, body := g.Do(req); resp.StatusCode != 400 || !strings.Contains(string(body), `"missing_signature"`) {
		t.Errorf("unsigned leak report: %d %s, want 400 missing_signature", resp.StatusCode, body)
	}
	h := WithKey(widget)
	h["Origin"] = []string{"https://shop.example"}
	if resp, _ := g.Request(http.MethodGet, "/api/widget/chat", h); resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Errorf("widget request from a page: %d, Access-Control-Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
}
