package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The owner-scoped console, as the two shipped examples deploy it:
// Caddyfile.example (basic_auth users mapped to organisations with map)
// and docs/Caddyfile.saas (forward_auth to an application's session
// service, test/sessionsvc, with a role matcher).

// Demo users of Caddyfile.example, with their passwords.
var exampleUsers = map[string]string{"alice": "acme-demo", "bob": "globex-demo", "ops": "operator-demo"}

// renderExample reads a shipped Caddyfile and replaces each old string
// with its template, failing if one is no longer there.
func renderExample(t *testing.T, path string, replace map[string]string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for old, tmpl := range replace {
		if !strings.Contains(text, old) {
			t.Fatalf("%s no longer holds %q: update this test", path, old)
		}
		text = strings.ReplaceAll(text, old, tmpl)
	}
	return text
}

// startCaddyfileExample runs Caddyfile.example with its ports moved to free
// ones.
func startCaddyfileExample(t *testing.T) *Gateway {
	t.Helper()
	text := renderExample(t, "../Caddyfile.example", map[string]string{
		"localhost:2019": "{{.Admin}}",
		":8080 {":        ":{{.Site}} {",
		"127.0.0.1:9000": "127.0.0.1:{{.Extra.upstreamPort}}",
		"http://:9000 {": "http://:{{.Extra.upstreamPort}} {",
	})
	return StartGateway(t, Options{Caddyfile: text, Extra: map[string]any{"upstreamPort": freePort(t)}})
}

// ownedKey is a key as the admin API and the console show it, with the
// fields of owners.
type ownedKey struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Status    string            `json:"status"`
	Owner     *string           `json:"owner"`
	Metadata  map[string]string `json:"metadata"`
	CreatedBy struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	} `json:"created_by"`
	ReplacedBy *string `json:"replaced_by"`
}

func (k ownedKey) owner() string {
	if k.Owner == nil {
		return ""
	}
	return *k.Owner
}

// adminKey reads a key through the admin API.
func adminKey(t *testing.T, g *Gateway, id string) ownedKey {
	t.Helper()
	resp, body := g.Admin(http.MethodGet, "/apikeys/"+id, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /apikeys/%s: status %d: %s", id, resp.StatusCode, body)
	}
	var k ownedKey
	if err := json.Unmarshal(body, &k); err != nil {
		t.Fatalf("GET /apikeys/%s: %v: %s", id, err, body)
	}
	return k
}

// consoleUserClient is a person using a console of a gateway: signed in
// with basic auth, or with the cookies of its jar.
type consoleUserClient struct {
	t              *testing.T
	base           string // the console's URL, ending in "/"
	user, password string // basic auth; "" for none
	client         *http.Client
	header         http.Header // sent with every request
}

func newConsoleUser(t *testing.T, base, user, password string) *consoleUserClient {
	jar, _ := cookiejar.New(nil)
	return &consoleUserClient{t: t, base: base, user: user, password: password, client: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       waitLimit,
	}}
}

// do sends a request to the console; a non-nil form is posted, as the
// page's script posts it when asJSON, as a plain HTML form otherwise.
func (c *consoleUserClient) do(method, query string, form url.Values, asJSON bool) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+query, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	if asJSON {
		req.Header.Set("Accept", "application/json")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, c.base+query, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, string(b)
}

func (c *consoleUserClient) get(query string) (*http.Response, string) {
	c.t.Helper()
	return c.do(http.MethodGet, query, nil, false)
}

// postJSON posts a change as the page's script does.
func (c *consoleUserClient) postJSON(form url.Values) (int, map[string]any) {
	c.t.Helper()
	resp, body := c.do(http.MethodPost, "", form, true)
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		c.t.Fatalf("POST %v: not JSON (status %d): %.300s", form, resp.StatusCode, body)
	}
	return resp.StatusCode, out
}

// create makes a key through the console and returns its secret and ID.
func (c *consoleUserClient) create(form url.Values) (secret, id string) {
	c.t.Helper()
	f := url.Values{"op": {"create"}, "scope": {"full"}, "expires_in": {"1mo"}}
	for k, v := range form {
		f[k] = v
	}
	status, out := c.postJSON(f)
	if status != http.StatusCreated {
		c.t.Fatalf("console create as %s: status %d: %v", c.user, status, out)
	}
	return out["secret"].(string), out["api_key"].(map[string]any)["id"].(string)
}

var rowIDPattern = regexp.MustCompile(`<tr data-key-id="(key_[0-9A-Za-z]{22})"`)

// consoleRowIDs returns the key IDs of a console page's rows.
func consoleRowIDs(page string) []string {
	var ids []string
	for _, m := range rowIDPattern.FindAllStringSubmatch(page, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// checkOrganisationsApart makes every attempt of a user of one
// organisation (a) on a key of another (otherID, named otherName) that
// the issue lists: by listing, by search, by URL, by a change with and
// without the page's script, and by forged owner fields. Each is answered
// as not found, and the key is left as it was. ownID is a key of a's own.
func checkOrganisationsApart(t *testing.T, g *Gateway, a *consoleUserClient, ownOrg, ownID, otherID, otherName string) {
	t.Helper()
	before := adminKey(t, g, otherID)
	const unknown = "key_0000000000000000000000"
	for _, q := range []string{"?status=all", "?status=all&q=" + otherID, "?status=all&q=" + url.QueryEscape(otherName), "?status=all&owner=" + before.owner()} {
		resp, page := a.get(q)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", q, resp.StatusCode)
		}
		if ids := consoleRowIDs(page); slices.Contains(ids, otherID) || strings.Contains(page, `<code class="key-id">`+otherID) {
			t.Errorf("GET %s shows the other organisation's key: rows %v", q, ids)
		}
		if strings.Contains(page, `<th scope="col">Owner</th>`) {
			t.Errorf("GET %s: an organisation's console shows an owner column", q)
		}
	}
	for _, dialog := range []string{"revoke", "rotate", "edit"} {
		resp, page := a.get("?dialog=" + dialog + "&id=" + otherID)
		uresp, _ := a.get("?dialog=" + dialog + "&id=" + unknown)
		if resp.StatusCode != http.StatusNotFound || uresp.StatusCode != http.StatusNotFound ||
			!strings.Contains(page, "There is no key with that ID.") || strings.Contains(page, otherName) {
			t.Errorf("?dialog=%s&id=<other's key>: status %d (unknown key %d), want 404 with no key named", dialog, resp.StatusCode, uresp.StatusCode)
		}
	}
	for _, form := range []url.Values{
		{"op": {"revoke"}, "id": {otherID}},
		{"op": {"rotate"}, "id": {otherID}, "grace": {"0s"}},
		{"op": {"update"}, "id": {otherID}, "name": {"Taken over"}, "metadata": {"by=a"}},
		{"op": {"update"}, "id": {otherID}, "name": {"Taken over"}, "metadata": {""}, "owner": {before.owner()}},
	} {
		status, out := a.postJSON(form)
		msg, _ := out["error"].(map[string]any)["message"].(string)
		if status != http.StatusNotFound || msg != "No API key has ID "+otherID+"." {
			t.Errorf("%s of the other's key with script: %d %v, want 404 not found", form.Get("op"), status, out)
		}
		resp, page := a.do(http.MethodPost, "", form, false)
		if resp.StatusCode != http.StatusNotFound || strings.Contains(page, otherName) {
			t.Errorf("%s of the other's key as a plain form: status %d, want 404 naming no key", form.Get("op"), resp.StatusCode)
		}
	}
	// A create or an update naming the other organisation as owner
	// makes or keeps a key of a's own.
	_, forged := a.create(url.Values{"name": {"Forged owner"}, "owner": {before.owner()}})
	if got := adminKey(t, g, forged).owner(); got != ownOrg {
		t.Errorf("create with owner=%s made a key of %q, want %q", before.owner(), got, ownOrg)
	}
	if status, out := a.postJSON(url.Values{"op": {"update"}, "id": {ownID}, "name": {"Still ours"}, "metadata": {""}, "owner": {before.owner()}}); status != http.StatusOK {
		t.Errorf("update of its own key: %d %v", status, out)
	}
	if got := adminKey(t, g, ownID); got.owner() != ownOrg || got.Name != "Still ours" {
		t.Errorf("after an update with owner=%s: owner %q name %q, want %q, Still ours", before.owner(), got.owner(), got.Name, ownOrg)
	}
	after := adminKey(t, g, otherID)
	if after.Status != "active" || after.Name != before.Name || after.ReplacedBy != nil || len(after.Metadata) != len(before.Metadata) {
		t.Errorf("the other organisation's key changed: %+v, was %+v", after, before)
	}
}

// TestCaddyfileExampleConsolesKeepOrganisationsApart runs
// Caddyfile.example's consoles: alice (acme) and bob (globex) each manage
// their organisation's keys only, ops, whom map gives no organisation,
// gets 403 there and sees every key in the operator's console.
func TestCaddyfileExampleConsolesKeepOrganisationsApart(t *testing.T) {
	t.Parallel()
	g := startCaddyfileExample(t)
	alice := newConsoleUser(t, g.SiteURL+"/console/", "alice", exampleUsers["alice"])
	bob := newConsoleUser(t, g.SiteURL+"/console/", "bob", exampleUsers["bob"])

	_, acmeID := alice.create(url.Values{"name": {"Acme backend"}, "metadata": {"plan=pro"}})
	globexSecret, globexID := bob.create(url.Values{"name": {"Globex backend"}})
	for id, want := range map[string][3]string{acmeID: {"acme", "alice", "pro"}, globexID: {"globex", "bob", ""}} {
		k := adminKey(t, g, id)
		if k.owner() != want[0] || k.CreatedBy.Type != "console" || k.CreatedBy.ID != want[1] || k.Metadata["plan"] != want[2] {
			t.Errorf("key %s: owner %q created_by %+v metadata %v, want %v", id, k.owner(), k.CreatedBy, k.Metadata, want)
		}
	}
	resp, page := alice.get("")
	if resp.StatusCode != http.StatusOK || !slices.Equal(consoleRowIDs(page), []string{acmeID}) ||
		!strings.Contains(page, `Signed in as <strong>alice</strong> · Organisation <strong class="org">acme</strong>`) {
		t.Fatalf("alice's console: status %d, rows %v, want acme's key only", resp.StatusCode, consoleRowIDs(page))
	}

	checkOrganisationsApart(t, g, alice, "acme", acmeID, globexID, "Globex backend")
	// The key of the other organisation still works.
	if resp, body := g.Request(http.MethodGet, "/api/billing", WithKey(globexSecret)); resp.StatusCode != http.StatusOK {
		t.Errorf("globex's key after alice's attempts: status %d %s, want 200", resp.StatusCode, body)
	}

	// ops belongs to no organisation: 403, and nothing of any key.
	ops := newConsoleUser(t, g.SiteURL+"/console/", "ops", exampleUsers["ops"])
	resp, page = ops.get("")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "your session does not name one") || strings.Contains(page, acmeID) {
		t.Errorf("ops at /console/: status %d, want 403 with the no-organisation page", resp.StatusCode)
	}
	if status, _ := ops.postJSON(url.Values{"op": {"revoke"}, "id": {acmeID}}); status != http.StatusForbidden {
		t.Errorf("ops revoking at /console/: status %d, want 403", status)
	}

	// The operator's console sees every key, with the owner column and
	// a working owner filter.
	opsConsole := newConsoleUser(t, g.SiteURL+"/ops/console/", "ops", exampleUsers["ops"])
	_, page = opsConsole.get("?status=all")
	ids := consoleRowIDs(page)
	if !slices.Contains(ids, acmeID) || !slices.Contains(ids, globexID) || !strings.Contains(page, `<th scope="col">Owner</th>`) ||
		!strings.Contains(page, `<code class="owner">globex</code>`) || !strings.Contains(page, `<span title="console">bob</span>`) {
		t.Errorf("operator's console: rows %v, want both keys with owner and created-by columns", ids)
	}
	_, page = opsConsole.get("?status=all&owner=globex")
	if got := consoleRowIDs(page); !slices.Equal(got, []string{globexID}) {
		t.Errorf("operator's console filtered by globex: rows %v, want %v", got, []string{globexID})
	}
	// bob is not an operator.
	if resp, _ := newConsoleUser(t, g.SiteURL+"/ops/console/", "bob", exampleUsers["bob"]).get(""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bob at the operator's console: status %d, want 401", resp.StatusCode)
	}
}

// sessionServiceBin is test/sessionsvc, built once.
var sessionServiceBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "keygate-sessionsvc-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sessionsvc")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/docana/keygate/test/sessionsvc").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building sessionsvc: %v: %s", err, out)
	}
	return bin, nil
})

// startSessionService runs test/sessionsvc with the users of
// docs/Caddyfile.saas and returns its address.
func startSessionService(t *testing.T) string {
	t.Helper()
	bin, err := sessionServiceBin()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(bin, "-listen", addr,
		"-user", "alice:acme:admin", "-user", "bob:acme:member",
		"-user", "gina:globex:admin", "-user", "nora::admin")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(waitLimit)
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessionsvc did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startCaddyfileSaaS runs docs/Caddyfile.saas, with its ports moved to free
// ones, and its session service.
func startCaddyfileSaaS(t *testing.T) *Gateway {
	t.Helper()
	sessions := startSessionService(t)
	text := renderExample(t, "../docs/Caddyfile.saas", map[string]string{
		"localhost:2019": "{{.Admin}}",
		":8080 {":        ":{{.Site}} {",
		"127.0.0.1:9100": sessions,
		"127.0.0.1:9000": "127.0.0.1:{{.Extra.upstreamPort}}",
		"http://:9000 {": "http://:{{.Extra.upstreamPort}} {",
	})
	return StartGateway(t, Options{Caddyfile: text, Extra: map[string]any{"upstreamPort": freePort(t)}})
}

// signIn signs a user in at the gateway's /login, as a browser following
// the application's login would, and returns a console client with the
// session cookie.
func signIn(t *testing.T, g *Gateway, user string) *consoleUserClient {
	t.Helper()
	c := newConsoleUser(t, g.SiteURL+"/console/", "", "")
	req, _ := http.NewRequest(http.MethodGet, g.SiteURL+"/login?user="+user, nil)
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("login as %s: status %d to %q, want 303 to /console/", user, resp.StatusCode, resp.Header.Get("Location"))
	}
	return c
}

// TestCaddyfileSaaSConsoleFollowsTheApplicationsSession runs
// docs/Caddyfile.saas: forward_auth to the session service names the
// user, the organisation and the role; only administrators reach the
// console, each sees their organisation's keys only, and headers a client
// forges change nothing.
func TestCaddyfileSaaSConsoleFollowsTheApplicationsSession(t *testing.T) {
	t.Parallel()
	g := startCaddyfileSaaS(t)
	alice, gina := signIn(t, g, "alice"), signIn(t, g, "gina")

	resp, page := alice.get("")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `Signed in as <strong>alice</strong> · Organisation <strong class="org">acme</strong>`) {
		t.Fatalf("alice's console: status %d: %.300s", resp.StatusCode, page)
	}
	acmeSecret, acmeID := alice.create(url.Values{"name": {"Acme backend"}})
	globexSecret, globexID := gina.create(url.Values{"name": {"Globex backend"}, "metadata": {"plan=pro"}})
	if k := adminKey(t, g, globexID); k.owner() != "globex" || k.CreatedBy.ID != "gina" {
		t.Errorf("gina's key: owner %q created_by %+v, want globex, gina", k.owner(), k.CreatedBy)
	}

	checkOrganisationsApart(t, g, alice, "acme", acmeID, globexID, "Globex backend")
	checkOrganisationsApart(t, g, gina, "globex", globexID, acmeID, "Still ours")
	for name, secret := range map[string]string{"acme": acmeSecret, "globex": globexSecret} {
		if resp, body := g.Request(http.MethodGet, "/api/anything", WithKey(secret)); resp.StatusCode != http.StatusOK {
			t.Errorf("%s's key after the other's attempts: status %d %s, want 200", name, resp.StatusCode, body)
		}
	}

	// Headers sent by the client are replaced by the session service's.
	alice.header = http.Header{"X-Org-Id": {"globex"}, "X-User-Id": {"gina"}, "X-Role": {"admin"}}
	if _, page := alice.get("?status=all"); !slices.Contains(consoleRowIDs(page), acmeID) || slices.Contains(consoleRowIDs(page), globexID) ||
		!strings.Contains(page, "Signed in as <strong>alice</strong>") {
		t.Errorf("alice forging X-Org-Id globex: rows %v, want acme's keys as alice", consoleRowIDs(page))
	}

	bob := signIn(t, g, "bob")
	nora := signIn(t, g, "nora")
	anonymous := newConsoleUser(t, g.SiteURL+"/console/", "", "")
	forging := newConsoleUser(t, g.SiteURL+"/console/", "", "")
	forging.header = http.Header{"X-Org-Id": {"acme"}, "X-User-Id": {"alice"}, "X-Role": {"admin"}}
	bobForging := signIn(t, g, "bob")
	bobForging.header = http.Header{"X-Role": {"admin"}}
	tests := []struct {
		name       string
		c          *consoleUserClient
		wantStatus int
		wantBody   string
	}{
		{"a member, not an administrator", bob, http.StatusForbidden, "Only your organisation's administrators can manage API keys."},
		{"a member sending X-Role admin", bobForging, http.StatusForbidden, "Only your organisation's administrators can manage API keys."},
		{"an administrator of no organisation", nora, http.StatusForbidden, "your session does not name one"},
		{"not signed in", anonymous, http.StatusUnauthorized, "not signed in"},
		{"not signed in, forging every header", forging, http.StatusUnauthorized, "not signed in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, q := range []string{"", "?dialog=edit&id=" + acmeID} {
				resp, page := tt.c.get(q)
				if resp.StatusCode != tt.wantStatus || !strings.Contains(page, tt.wantBody) || strings.Contains(page, acmeID+`"`) {
					t.Errorf("GET %q: status %d, want %d with %q: %.200s", q, resp.StatusCode, tt.wantStatus, tt.wantBody, page)
				}
			}
			if resp, _ := tt.c.do(http.MethodPost, "", url.Values{"op": {"revoke"}, "id": {acmeID}}, true); resp.StatusCode != tt.wantStatus {
				t.Errorf("revoke: status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
		})
	}
	if k := adminKey(t, g, acmeID); k.Status != "active" {
		t.Errorf("acme's key is %s after the refused requests", k.Status)
	}
}

// TestBrowserOwnerConsoleKeepsOrganisationsApart drives docs/Caddyfile.saas
// in Chromium, signed in at the application's login: alice of acme
// creates and edits keys of acme, and cannot reach globex's key by search,
// by URL or by forged form fields; a session without an organisation, or
// of a member, is refused.
func TestBrowserOwnerConsoleKeepsOrganisationsApart(t *testing.T) {
	g := startCaddyfileSaaS(t)
	gina := signIn(t, g, "gina")
	globexSecret, globexID := gina.create(url.Values{"name": {"Globex backend"}, "metadata": {"plan=gold"}})
	globexBefore := adminKey(t, g, globexID)

	ctx := newBrowser(t, 1280, 800)
	browserDo(t, ctx,
		chromedp.Navigate(g.SiteURL+"/login?user=alice"),
		chromedp.WaitVisible(chromedp.CSS(`.empty`)),
	)
	if text := browserJS[string](t, ctx, `document.body.innerText`); strings.Contains(text, "Globex") || !strings.Contains(text, "Organisation acme") {
		t.Errorf("alice's empty console: %q", text)
	}

	// Create and edit a key of acme's.
	secret, acmeID := browserCreateKey(t, ctx, "Acme backend", "full", "1mo")
	if k := adminKey(t, g, acmeID); k.owner() != "acme" || k.CreatedBy.Type != "console" || k.CreatedBy.ID != "alice" {
		t.Errorf("key made in alice's console: owner %q created_by %+v", k.owner(), k.CreatedBy)
	}
	openEdit := func() {
		t.Helper()
		browserDo(t, ctx,
			chromedp.Click(chromedp.CSS(`tr[data-key-id="`+acmeID+`"] summary`)),
			chromedp.Click(chromedp.CSS(`a.menu-item[data-dialog="edit"][data-id="`+acmeID+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#edit-dialog[open]`)),
		)
	}
	openEdit()
	if got := browserJS[string](t, ctx, `document.getElementById("edit-name").value`); got != "Acme backend" {
		t.Errorf("edit dialog's name = %q, want the key's", got)
	}
	if text := browserJS[string](t, ctx, `document.getElementById("edit-dialog").innerText`); !strings.Contains(text, "rotate the key or create a new key") {
		t.Errorf("edit dialog does not say how to change scope, owner or expiry: %q", text)
	}
	browserDo(t, ctx,
		chromedp.Evaluate[chromedp.Void](`document.getElementById("edit-name").value = "Acme API"; document.getElementById("edit-metadata").value = "plan=pro\nregion=eu"`),
		chromedp.Click(chromedp.CSS(`#edit-dialog button.primary`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#edit-dialog`)),
	)
	browserWait(t, ctx, `document.getElementById("notice").textContent.includes("updated") && document.querySelector('tr[data-key-id="`+acmeID+`"] .key-name').textContent === "Acme API"`)
	if k := adminKey(t, g, acmeID); k.Name != "Acme API" || k.Metadata["plan"] != "pro" || k.Metadata["region"] != "eu" || k.owner() != "acme" {
		t.Errorf("after the edit: %+v", k)
	}
	// The edit dialog opened again shows the new values, and bad input
	// is shown under its field.
	openEdit()
	if got := browserJS[string](t, ctx, `document.getElementById("edit-metadata").value`); got != "plan=pro\nregion=eu" {
		t.Errorf("edit dialog's metadata = %q", got)
	}
	browserDo(t, ctx,
		chromedp.Evaluate[chromedp.Void](`document.getElementById("edit-metadata").value = "nonsense"`),
		chromedp.Click(chromedp.CSS(`#edit-dialog button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#edit-metadata-error`)),
	)
	if got := browserJS[string](t, ctx, `document.getElementById("edit-metadata-error").textContent`); got != "Metadata: line 1 is not name=value." {
		t.Errorf("metadata error = %q", got)
	}

	// Forged form fields: the edit form sent with globex's key ID is
	// answered as not found; a create form with owner=globex makes a key
	// of acme.
	browserDo(t, ctx,
		chromedp.Evaluate[chromedp.Void](`(f => { f.querySelector('[name="id"]').value = `+jsString(globexID)+`; f.querySelector('[name="metadata"]').value = ""; f.requestSubmit(); })(document.querySelector("#edit-dialog form"))`),
	)
	browserWait(t, ctx, `document.querySelector('#edit-dialog [data-error-for=""]').textContent === "No API key has ID `+globexID+`."`)
	browserDo(t, ctx, chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS(`#edit-dialog`)))
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`a[data-dialog="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-dialog[open]`)),
		chromedp.Evaluate[chromedp.Void](`(f => { const o = document.createElement("input"); o.type = "hidden"; o.name = "owner"; o.value = "globex"; f.append(o); f.querySelector('[name="name"]').value = "Forged owner"; f.requestSubmit(); })(document.querySelector("#create-dialog form"))`),
		chromedp.WaitVisible(chromedp.CSS(`#secret-dialog[open]`)),
	)
	forgedID := browserJS[string](t, ctx, `document.querySelector('#secret-dialog [data-field="id"]').textContent`)
	if got := adminKey(t, g, forgedID).owner(); got != "acme" {
		t.Errorf("create with a forged owner field made a key of %q, want acme", got)
	}
	browserDo(t, ctx, chromedp.Click(chromedp.CSS(`#secret-dialog button[value="done"]`)), chromedp.WaitNotVisible(chromedp.CSS(`#secret-dialog`)))

	// Search by globex's key ID and name: nothing.
	for _, q := range []string{globexID, "Globex"} {
		browserDo(t, ctx,
			chromedp.Navigate(g.SiteURL+"/console/?status=all"),
			chromedp.WaitVisible(chromedp.CSS(`#filter-q`)),
			chromedp.SendKeys(chromedp.CSS(`#filter-q`), q+kb.Enter),
		)
		browserWait(t, ctx, `location.search.includes("q=") && document.querySelector(".empty") !== null`)
		if ids := browserRowIDs(t, ctx); len(ids) != 0 {
			t.Errorf("search %q: rows %v, want none", q, ids)
		}
	}
	// By URL: each dialog of globex's key is "no key with that ID".
	for _, dialog := range []string{"rotate", "revoke", "edit"} {
		browserDo(t, ctx,
			chromedp.Navigate(g.SiteURL+"/console/?dialog="+dialog+"&id="+globexID),
			chromedp.WaitVisible(chromedp.CSS(`#notice`)),
		)
		if got := browserJS[string](t, ctx, `document.getElementById("notice").textContent + " open:" + document.querySelectorAll("dialog[open]").length`); got != "There is no key with that ID. open:0" {
			t.Errorf("?dialog=%s of globex's key: %q", dialog, got)
		}
		if browserJS[bool](t, ctx, `document.body.innerText.includes("Globex")`) {
			t.Errorf("?dialog=%s of globex's key shows its name", dialog)
		}
	}
	// Globex's key is as it was, and works; acme's works too.
	if k := adminKey(t, g, globexID); k.Status != "active" || k.Name != globexBefore.Name || k.Metadata["plan"] != "gold" || k.ReplacedBy != nil {
		t.Errorf("globex's key changed: %+v", k)
	}
	for name, s := range map[string]string{"globex": globexSecret, "acme": secret} {
		if resp, body := g.Request(http.MethodGet, "/api/anything", WithKey(s)); resp.StatusCode != http.StatusOK {
			t.Errorf("%s's key: status %d %s, want 200", name, resp.StatusCode, body)
		}
	}

	// Sessions without an organisation, or of a member, are refused.
	for user, want := range map[string]string{"nora": "your session does not name one", "bob": "Only your organisation's administrators can manage API keys."} {
		browserDo(t, ctx, chromedp.Navigate(g.SiteURL+"/login?user="+user))
		browserWait(t, ctx, `document.body.innerText.includes(`+jsString(want)+`)`)
		if browserJS[bool](t, ctx, `document.body.innerText.includes("Acme")`) {
			t.Errorf("%s sees a key of acme", user)
		}
	}
}
