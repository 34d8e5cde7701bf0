package test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chromiumPath is Debian's chromium, which CI installs; KEYGATE_CHROMIUM
// overrides it.
const chromiumPath = "/usr/bin/chromium"

// browserLimit bounds the browser work of one test. Like waitLimit it is
// no assertion about speed: a page that needs longer is broken.
const browserLimit = 3 * time.Minute

// newBrowser starts a headless chromium of the test's own, with its own
// profile, and returns a context whose tab it drives. Without chromium the
// test fails in CI and is skipped elsewhere, naming the install command.
func newBrowser(t *testing.T, width, height int) context.Context {
	t.Helper()
	path := os.Getenv("KEYGATE_CHROMIUM")
	if path == "" {
		path = chromiumPath
	}
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("no chromium at %s (install it with: apt-get update && apt-get install -y chromium; or set KEYGATE_CHROMIUM): %v", path, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root
		chromedp.UserDataDir(t.TempDir()),
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.WindowSize(width, height),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Do starts the browser; its life is bound to ctx, so the
	// time limit goes on a child.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	tctx, tcancel := context.WithTimeout(ctx, browserLimit)
	t.Cleanup(tcancel)
	return tctx
}

// browserSignIn makes every request of the tab carry the console's basic auth
// credentials, as a browser does once the user typed them in its prompt.
func browserSignIn(t *testing.T, ctx context.Context) {
	t.Helper()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(consoleUser+":"+consolePassword))
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}}); err != nil {
		t.Fatal(err)
	}
}

// browserDo runs browser steps, failing the test at the first error.
func browserDo(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// browserJS evaluates a JavaScript expression in the page.
func browserJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// browserWait waits until a JavaScript expression is true in the page. A poll
// cut short by a navigation (a filter submits its form) starts again in
// the new page.
func browserWait(t *testing.T, ctx context.Context, expr string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(time.Until(deadline))))
		if err == nil {
			return
		}
		if time.Now().Before(deadline) && ctx.Err() == nil && (strings.Contains(err.Error(), "navigated or closed") || strings.Contains(err.Error(), "context")) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ""`))
		t.Fatalf("waiting for %s: %v\npage text:\n%s", expr, err, text)
	}
}

// browserPressEnter presses Enter as a keyboard does when the key down is handled:
// the browser then sends no character event (KeyEvent sends one, which
// would go on to the element that has focus after the key down).
func browserPressEnter() chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
			_, err := chromedp.Call(ctx, input.DispatchKeyEvent, input.DispatchKeyEventParams{
				Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// jsString makes s a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// browserRowIDs returns the key IDs of the table's rows, in order.
func browserRowIDs(t *testing.T, ctx context.Context) []string {
	t.Helper()
	return browserJS[[]string](t, ctx, `Array.from(document.querySelectorAll("tr[data-key-id]"), tr => tr.dataset.keyId)`)
}

// browserCreateKey creates a key through the page's dialogs, copies its secret
// and closes the show-once dialog, returning the secret and the key ID.
func browserCreateKey(t *testing.T, ctx context.Context, name, scope, expiry string) (secret, id string) {
	t.Helper()
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`a[data-dialog="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-dialog[open]`)),
	)
	if got := browserJS[string](t, ctx, `document.activeElement.id`); got != "create-name" {
		t.Errorf("focus in the create dialog is on %q, want the name field", got)
	}
	browserDo(t, ctx,
		chromedp.SendKeys(chromedp.CSS(`#create-name`), name),
		chromedp.Click(chromedp.CSS(`#create-dialog input[name="scope"][value="`+scope+`"]`)),
		chromedp.Click(chromedp.CSS(`label[for="expiry-`+expiry+`"]`)),
	)
	// The date of the chosen expiry is shown, with a warning for never.
	note := browserJS[string](t, ctx, `document.querySelector(".expiry-note-`+expiry+`").innerText`)
	if expiry == "never" && !strings.Contains(note, "works until someone revokes it") {
		t.Errorf("never: note %q lacks the warning", note)
	}
	if expiry != "never" && !strings.HasPrefix(note, "Expires 20") {
		t.Errorf("%s: note %q does not show the date", expiry, note)
	}
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`#create-dialog button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#secret-dialog[open]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#create-dialog`)),
	)
	secret = browserJS[string](t, ctx, `document.getElementById("secret-value").value`)
	id = browserJS[string](t, ctx, `document.querySelector('#secret-dialog [data-field="id"]').textContent`)
	if !strings.HasPrefix(secret, "dk_") || !strings.HasPrefix(id, "key_") {
		t.Fatalf("show-once dialog shows secret %q and ID %q", secret, id)
	}
	for _, want := range []string{"This key will not be shown again.", name} {
		if text := browserJS[string](t, ctx, `document.getElementById("secret-dialog").innerText`); !strings.Contains(text, want) {
			t.Errorf("show-once dialog lacks %q", want)
		}
	}
	// The secret is in the field's value only: not in the markup, the URL
	// or the history.
	if browserJS[bool](t, ctx, `document.documentElement.outerHTML.includes(`+jsString(secret)+`)`) {
		t.Error("the secret is in the page's markup")
	}
	if loc := browserJS[string](t, ctx, `location.href + " " + history.length`); strings.Contains(loc, secret) {
		t.Error("the secret is in the URL")
	}
	// Copy Key copies it, or at least selects it for Ctrl+C.
	browserDo(t, ctx, chromedp.Click(chromedp.CSS(`#secret-dialog [data-copy-target]`)))
	browserWait(t, ctx, `document.querySelector("[data-copy-status]").textContent !== ""`)
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`#secret-dialog button[value="done"]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#secret-dialog`)),
	)
	// The dialog's close event clears the field.
	browserWait(t, ctx, `document.getElementById("secret-value").value === "" && !document.getElementById("secret-value").hasAttribute("value")`)
	browserWait(t, ctx, `document.querySelector('tr[data-key-id="`+id+`"]') !== null`)
	return secret, id
}

func TestBrowserConsoleManagesKeysEndToEnd(t *testing.T) {
	g := startConsoleGateway(t)
	ctx := newBrowser(t, 1280, 800)
	browserSignIn(t, ctx)

	browserDo(t, ctx,
		chromedp.Navigate(g.SiteURL+"/console/"),
		chromedp.WaitVisible(chromedp.CSS(`.empty`)),
	)
	if h1 := browserJS[string](t, ctx, `document.querySelector("h1").textContent`); h1 != "API Keys" {
		t.Errorf("h1 = %q, want API Keys", h1)
	}

	// Bad input: the error is shown under the field, which gets focus.
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`a[data-dialog="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-dialog[open]`)),
		chromedp.Click(chromedp.CSS(`#create-dialog button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-name-error`)),
	)
	if got := browserJS[string](t, ctx, `document.getElementById("create-name-error").textContent`); got != "Name must not be empty." {
		t.Errorf("name error = %q", got)
	}
	if got := browserJS[string](t, ctx, `document.activeElement.id + " " + document.activeElement.getAttribute("aria-invalid")`); got != "create-name true" {
		t.Errorf("after the error, focus and aria-invalid = %q, want the name field, invalid", got)
	}
	// Escape closes the dialog; nothing was created.
	browserDo(t, ctx, chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS(`#create-dialog`)))

	// A key of each scope, used through the gateway at once.
	type made struct{ secret, id, path string }
	keys := map[string]made{}
	for _, k := range []struct{ name, scope, expiry, path string }{
		{"Backend server", "full", "1y", "/api/anything"},
		{"Web widget", "widget", "1mo", "/api/widget/chat"},
		{"Cron routine", "routine", "never", "/api/routines/run"},
	} {
		secret, id := browserCreateKey(t, ctx, k.name, k.scope, k.expiry)
		keys[k.scope] = made{secret, id, k.path}
		if status, code := g.apiCode(k.path, secret); status != http.StatusOK {
			t.Errorf("%s key from the page on %s: %d %s, want 200", k.scope, k.path, status, code)
		}
		if got := g.GetKey(id); got.Scope != k.scope || got.Name != k.name {
			t.Errorf("admin API shows %+v, want %s %s", got, k.name, k.scope)
		}
	}
	if got, want := browserRowIDs(t, ctx), []string{keys["routine"].id, keys["widget"].id, keys["full"].id}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("rows = %v, want newest first %v", got, want)
	}

	// Filters and search, as query parameters.
	browserDo(t, ctx, chromedp.Evaluate[chromedp.Void](`(s => { s.value = "widget"; s.dispatchEvent(new Event("change")); })(document.getElementById("filter-scope"))`))
	browserWait(t, ctx, `location.search.includes("scope=widget") && document.querySelectorAll("tr[data-key-id]").length === 1`)
	if got := browserRowIDs(t, ctx); len(got) != 1 || got[0] != keys["widget"].id {
		t.Errorf("scope filter: rows %v, want the widget key", got)
	}
	browserDo(t, ctx,
		chromedp.Navigate(g.SiteURL+"/console/"),
		chromedp.WaitVisible(chromedp.CSS(`#filter-q`)),
		chromedp.SendKeys(chromedp.CSS(`#filter-q`), "cron"+kb.Enter),
	)
	browserWait(t, ctx, `location.search.includes("q=cron") && document.querySelectorAll("tr[data-key-id]").length === 1`)
	if got := browserRowIDs(t, ctx); len(got) != 1 || got[0] != keys["routine"].id {
		t.Errorf("search: rows %v, want the routine key", got)
	}
	browserDo(t, ctx, chromedp.Navigate(g.SiteURL+"/console/"), chromedp.WaitVisible(chromedp.CSS(`table`)))

	// Revoke the widget key: confirmation first, Cancel focused.
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`a[aria-label="Revoke key Web widget"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#revoke-dialog[open]`)),
	)
	if got := browserJS[string](t, ctx, `document.activeElement.textContent.trim()`); got != "Cancel" {
		t.Errorf("focus in the revoke dialog is on %q, want Cancel", got)
	}
	text := browserJS[string](t, ctx, `document.getElementById("revoke-dialog").innerText`)
	for _, want := range []string{"Web widget", "fail immediately", "cannot be undone"} {
		if !strings.Contains(text, want) {
			t.Errorf("revoke dialog lacks %q: %q", want, text)
		}
	}
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`#revoke-dialog button.danger`)),
		chromedp.WaitNotPresent(chromedp.CSS(`tr[data-key-id="`+keys["widget"].id+`"]`)),
	)
	browserWait(t, ctx, `document.getElementById("announcer").textContent.includes("revoked")`)
	// The one instance confirmed it, and the page says so (issue 14).
	browserWait(t, ctx, `document.getElementById("announcer").textContent.includes("Revoked on 1 of 1 instance.")`)
	if status, code := g.apiCode(keys["widget"].path, keys["widget"].secret); status != http.StatusUnauthorized || code != "api_key_revoked" {
		t.Errorf("revoked key: %d %s, want 401 api_key_revoked", status, code)
	}

	// Rotate the routine key from the row menu, with no grace period.
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`summary[aria-label="More actions for key Cron routine"]`)),
		chromedp.Click(chromedp.CSS(`a.menu-item[data-dialog="rotate"][data-id="`+keys["routine"].id+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#rotate-dialog[open]`)),
		chromedp.Click(chromedp.CSS(`#rotate-dialog input[name="grace"][value="0s"]`)),
		chromedp.Click(chromedp.CSS(`#rotate-dialog button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#secret-dialog[open]`)),
	)
	rotated := browserJS[string](t, ctx, `document.getElementById("secret-value").value`)
	if rotated == "" || rotated == keys["routine"].secret {
		t.Fatalf("rotation showed secret %q", rotated)
	}
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`#secret-dialog button[value="done"]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#secret-dialog`)),
	)
	if status, code := g.apiCode("/api/routines/run", keys["routine"].secret); status != http.StatusUnauthorized || code != "api_key_expired" {
		t.Errorf("rotated-out key: %d %s, want 401 api_key_expired", status, code)
	}
	if status, code := g.apiCode("/api/routines/run", rotated); status != http.StatusOK {
		t.Errorf("rotated key: %d %s, want 200", status, code)
	}

	// Keyboard: Enter on the focused create button opens the dialog, with
	// the name field focused; Enter there submits the form (the default
	// button is Create, not Cancel); Escape closes it.
	browserDo(t, ctx,
		chromedp.Focus(chromedp.CSS(`a[data-dialog="create"]`)),
		browserPressEnter(),
		chromedp.WaitVisible(chromedp.CSS(`#create-dialog[open]`)),
	)
	if got := browserJS[string](t, ctx, `document.activeElement.id`); got != "create-name" {
		t.Errorf("focus after opening with the keyboard is on %q, want the name field", got)
	}
	browserDo(t, ctx, chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.CSS(`#create-name-error`)))
	browserDo(t, ctx,
		chromedp.KeyEvent(kb.Escape),
		chromedp.WaitNotVisible(chromedp.CSS(`#create-dialog`)),
	)

	// The script never broke the CSP: a violation would be reported here.
	if n := browserJS[int](t, ctx, `performance.getEntriesByType("resource").filter(e => e.name.includes("/static/")).length`); n != 2 {
		t.Errorf("%d static files loaded, want the stylesheet and the script", n)
	}
}

func TestBrowserConsoleRefusesACrossOriginForm(t *testing.T) {
	g := startConsoleGateway(t)
	c := g.consoleCreate("Victim", "full", "never")
	// An attacker's page on another site (localhost, not 127.0.0.1) posts
	// a revocation to the console as soon as it loads; the browser sends
	// the user's credentials along.
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/console/">
<input name="op" value="revoke"><input name="id" value="%s"></form>
<script>document.getElementById("f").submit()</script>`, g.SiteURL, c.APIKey.ID)
	}))
	t.Cleanup(attacker.Close)
	attackerURL := strings.Replace(attacker.URL, "127.0.0.1", "localhost", 1)

	ctx := newBrowser(t, 1280, 800)
	browserSignIn(t, ctx)
	browserDo(t, ctx, chromedp.Navigate(attackerURL))
	browserWait(t, ctx, `document.title.startsWith("Cross-origin request refused")`)
	if k := g.GetKey(c.APIKey.ID); k.Status != "active" {
		t.Errorf("after the attacker's form the key is %s, want active", k.Status)
	}
	if status, code := g.apiCode("/api/anything", c.Secret); status != http.StatusOK {
		t.Errorf("key after the attack: %d %s, want 200", status, code)
	}

	// Without an authentication handler before it, the console refuses.
	browserDo(t, ctx, chromedp.Navigate(g.SiteURL+"/open/"))
	browserWait(t, ctx, `document.title.startsWith("Sign-in required")`)
}

// TestBrowserConsoleLayouts renders the list and the dialogs at desktop
// and phone sizes and checks that nothing overflows sideways. With
// KEYGATE_SCREENSHOTS=1 it also writes the screenshots in docs/.
func TestBrowserConsoleLayouts(t *testing.T) {
	g := startConsoleGateway(t)
	// Keys as a team would have them.
	prod, _ := g.CreateKey("Production Backend", "full", "1y")
	widget, widgetKey := g.CreateKey("Marketing site widget", "widget", "1mo")
	g.CreateKey("Nightly report scheduler", "routine", "never")
	g.CreateKey("CI/CD Pipeline", "full", "1w")
	g.CreateKey("Staging", "full", "1d")
	_, old := g.CreateKey("Old mobile app", "widget", "1y")
	g.Admin(http.MethodDelete, "/apikeys/"+old.ID, nil)
	for _, u := range []struct{ secret, path string }{{prod, "/api/anything"}, {widget, "/api/widget/chat"}} {
		if status, code := g.apiCode(u.path, u.secret); status != http.StatusOK {
			t.Fatalf("using a key: %d %s", status, code)
		}
	}
	// Locked to the site, as the console's create dialog suggests, after
	// its use above (a request without an allowed Origin is refused now).
	if resp, body := g.console(http.MethodPost, "/console/", url.Values{"op": {"update"}, "id": {widgetKey.ID}, "name": {widgetKey.Name}, "metadata": {""},
		"allowed_origins": {"https://www.example.com\nhttps://*.example.com"}}, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("locking the widget key: status %d: %s", resp.StatusCode, body)
	}
	write := os.Getenv("KEYGATE_SCREENSHOTS") == "1"
	shot := func(ctx context.Context, name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if len(png) < 1000 {
			t.Fatalf("%s: screenshot of %d bytes", name, len(png))
		}
		if write {
			if err := os.WriteFile(filepath.Join("..", "docs", name), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	noSideways := func(ctx context.Context, what string) {
		t.Helper()
		if over := browserJS[int](t, ctx, `document.documentElement.scrollWidth - window.innerWidth`); over > 0 {
			t.Errorf("%s: the page is %dpx wider than the window", what, over)
		}
	}

	desktop := newBrowser(t, 1280, 800)
	browserSignIn(t, desktop)
	browserDo(t, desktop,
		chromedp.Navigate(g.SiteURL+"/console/?status=all"),
		chromedp.WaitVisible(chromedp.CSS(`table`)),
	)
	if n := len(browserRowIDs(t, desktop)); n != 6 {
		t.Errorf("%d rows, want 6", n)
	}
	noSideways(desktop, "desktop list")
	shot(desktop, "console-list.png")

	browserDo(t, desktop,
		chromedp.Click(chromedp.CSS(`summary[aria-label="More actions for key Production Backend"]`)),
		chromedp.Click(chromedp.CSS(`tr:has(summary[aria-label="More actions for key Production Backend"]) a.menu-item[data-dialog="edit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#edit-dialog[open]`)),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("edit-metadata").value = "plan=enterprise\nregion=eu-west-1"`),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("edit-ips").value = "203.0.113.0/24\n2001:db8::/32"`),
	)
	noSideways(desktop, "edit dialog")
	shot(desktop, "console-edit.png")
	browserDo(t, desktop, chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS(`#edit-dialog`)))

	browserDo(t, desktop,
		chromedp.Click(chromedp.CSS(`a[data-dialog="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-dialog[open]`)),
		chromedp.SendKeys(chromedp.CSS(`#create-name`), "Docs site widget"),
		chromedp.Click(chromedp.CSS(`#create-dialog input[name="scope"][value="widget"]`)),
		chromedp.Click(chromedp.CSS(`label[for="expiry-1y"]`)),
		// The top of the dialog: the scope, and the warning for a widget
		// key without allowed origins.
		chromedp.Evaluate[chromedp.Void](`document.querySelectorAll("#create-dialog, #create-dialog *").forEach(el => { el.scrollTop = 0; })`),
	)
	shot(desktop, "console-create.png")
	browserDo(t, desktop,
		chromedp.Click(chromedp.CSS(`#create-dialog button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#secret-dialog[open]`)),
		chromedp.Click(chromedp.CSS(`#secret-dialog [data-copy-target]`)),
	)
	browserWait(t, desktop, `document.querySelector("[data-copy-status]").textContent !== ""`)
	noSideways(desktop, "show-once dialog")
	shot(desktop, "console-secret.png")

	phone := newBrowser(t, 390, 844)
	browserSignIn(t, phone)
	browserDo(t, phone,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(g.SiteURL+"/console/?status=all"),
		chromedp.WaitVisible(chromedp.CSS(`table`)),
	)
	noSideways(phone, "phone list")
	// Cards: the table's rows are laid out as blocks.
	if d := browserJS[string](t, phone, `getComputedStyle(document.querySelector("tr[data-key-id]")).display`); d == "table-row" {
		t.Errorf("phone: rows display as %q, want cards", d)
	}
	shot(phone, "console-phone.png")
	browserDo(t, phone,
		chromedp.Click(chromedp.CSS(`a[data-dialog="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-dialog[open]`)),
	)
	noSideways(phone, "phone create dialog")
}

// widgetPage is a shop's web page with an order-status widget: plain HTML
// whose script calls the gateway's widget route with a widget key, with a
// JSON body, so that the browser sends a CORS preflight first. It shows
// the upstream's JSON, or that the browser refused the answer; data-result
// on the body says which, for the test.
const widgetPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>%[1]s</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
header { background: %[2]s; color: #fff; padding: 14px 24px; font-weight: 600; font-size: 20px; }
main { padding: 24px; }
.widget { background: #fff; border: 1px solid #d5d9e0; border-radius: 8px; padding: 16px 20px; max-width: 560px; }
.widget h2 { margin: 0 0 8px; font-size: 17px; }
.meta { color: #5b6475; font-size: 14px; }
code, pre { font: 14px/1.4 ui-monospace, monospace; }
pre { background: #f0f2f5; padding: 10px 12px; border-radius: 6px; white-space: pre-wrap; }
.ok { color: #16703a; font-weight: 600; }
.refused { color: #b3261e; font-weight: 600; }
</style></head>
<body data-result="pending">
<header>%[1]s</header>
<main><div class="widget">
<h2>Order status (keygate widget)</h2>
<p class="meta">This page's origin: <code id="origin"></code><br>The key's allowed origin: <code>%[6]s</code><br>Calls <code>POST %[3]s/api/widget/orders</code> with <code>Authorization: ApiKey %[5]s</code></p>
<p id="status">Loading…</p>
<pre id="out"></pre>
</div></main>
<script>
document.getElementById("origin").textContent = location.origin;
const status = document.getElementById("status"), out = document.getElementById("out");
fetch(%[3]q + "/api/widget/orders", {
	method: "POST",
	headers: {"Authorization": "ApiKey " + %[4]q, "Content-Type": "application/json"},
	body: JSON.stringify({order: "1042"}),
}).then(async (resp) => {
	const data = await resp.json();
	status.className = "ok";
	status.textContent = "HTTP " + resp.status + ": the API answered";
	out.textContent = JSON.stringify(data, null, 2);
	document.body.dataset.result = resp.ok ? "ok" : "error " + resp.status;
}).catch((err) => {
	status.className = "refused";
	status.textContent = "The browser refused the request: " + err.message;
	out.textContent = "No answer can be read from this origin: the key is locked to another site.";
	document.body.dataset.result = "refused";
});
</script>
</body></html>
`

// TestBrowserWidgetKeyLockedToItsOrigin serves the same widget page from
// the key's allowed origin and from another one (two servers on different
// ports are different origins) and loads both in chromium. From the
// allowed origin the page reads the upstream's JSON, after a preflight the
// gateway answered itself; from the other, the browser refuses the answer
// and the upstream never receives the request. With KEYGATE_SCREENSHOTS=1
// it writes docs/widget-allowed.png and docs/widget-refused.png.
func TestBrowserWidgetKeyLockedToItsOrigin(t *testing.T) {
	var upstreamMu sync.Mutex
	var upstreamSeen []string // method and Origin of each request the upstream received
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamMu.Lock()
		upstreamSeen = append(upstreamSeen, r.Method+" "+r.Header.Get("Origin"))
		upstreamMu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"order": "1042", "status": "shipped", "carrier": "DHL", "eta": "Tuesday"}`)
	}))
	t.Cleanup(upstream.Close)
	seen := func() []string {
		upstreamMu.Lock()
		defer upstreamMu.Unlock()
		return append([]string(nil), upstreamSeen...)
	}
	g := StartGateway(t, Options{Caddyfile: widgetCORSCaddyfile, Extra: map[string]any{"upstream": upstream.Listener.Addr().String()}})

	var allowed string
	page := func(title, color string) (*httptest.Server, *string) {
		var key string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, widgetPage, title, color, g.SiteURL, key, key[:3]+"…", allowed)
		}))
		t.Cleanup(srv.Close)
		return srv, &key
	}
	shop, shopKey := page("Acme Shop — the key's own site", "#2454a6")
	other, otherKey := page("Copycat site — another origin", "#7a3b8f")
	allowed = shop.URL
	secret, _ := g.CreatePolicyKey("Acme shop widget", "widget", []string{shop.URL}, nil)
	*shopKey, *otherKey = secret, secret

	write := os.Getenv("KEYGATE_SCREENSHOTS") == "1"
	shot := func(ctx context.Context, name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if write {
			if err := os.WriteFile(filepath.Join("..", "docs", name), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := newBrowser(t, 900, 660)

	browserDo(t, ctx, chromedp.Navigate(shop.URL+"/"))
	browserWait(t, ctx, `document.body.dataset.result !== "pending"`)
	if got := browserJS[string](t, ctx, `document.body.dataset.result`); got != "ok" {
		t.Fatalf("from the allowed origin: %s: %s", got, browserJS[string](t, ctx, `document.getElementById("status").textContent`))
	}
	if got := browserJS[string](t, ctx, `document.getElementById("out").textContent`); !strings.Contains(got, `"status": "shipped"`) {
		t.Errorf("the page shows %q, not the upstream's JSON", got)
	}
	shot(ctx, "widget-allowed.png")
	if got := seen(); len(got) != 1 || got[0] != "POST "+shop.URL {
		t.Fatalf("the upstream received %q, want the one POST from %s (no preflight)", got, shop.URL)
	}

	browserDo(t, ctx, chromedp.Navigate(other.URL+"/"))
	browserWait(t, ctx, `document.body.dataset.result !== "pending"`)
	if got := browserJS[string](t, ctx, `document.body.dataset.result`); got != "refused" {
		t.Fatalf("from another origin: %s, want refused", got)
	}
	shot(ctx, "widget-refused.png")
	if got := seen(); len(got) != 1 {
		t.Fatalf("the upstream received %q: the request from the other origin reached it", got)
	}

	// Both pages made a preflight and the actual request, all four at the
	// gateway (its access log); the preflights were answered there.
	log := g.Output()
	for _, origin := range []string{shop.URL, other.URL} {
		var preflights, posts int
		for _, line := range strings.Split(log, "\n") {
			if !strings.Contains(line, `"http.log.access`) || !strings.Contains(line, `"Origin":["`+origin+`"]`) {
				continue
			}
			switch {
			case strings.Contains(line, `"method":"OPTIONS"`) && strings.Contains(line, `"status":204`):
				preflights++
			case strings.Contains(line, `"method":"POST"`):
				posts++
			}
		}
		if preflights != 1 || posts != 1 {
			t.Errorf("from %s the gateway logged %d preflights and %d POSTs, want 1 and 1", origin, preflights, posts)
		}
	}
	if !strings.Contains(grepLines(log, other.URL), `"status":403`) {
		t.Errorf("the other origin's POST was not refused with 403:\n%s", grepLines(log, other.URL))
	}
}

// widgetCORSCaddyfile is a gateway with the widget route of
// Caddyfile.example (cors) and the access log on.
const widgetCORSCaddyfile = `{
	admin {{.Admin}}
	persist_config off
}

http://127.0.0.1:{{.Site}} {
	log
	handle /api/widget/* {
		apikey widget {
			cors
		}
		reverse_proxy {{.Extra.upstream}}
	}
}
`

// TestBrowserConsoleLocksWidgetKeysToOrigins creates widget keys through
// the dialog, without allowed origins (warned about before and after) and
// with one, then edits a key's origins.
func TestBrowserConsoleLocksWidgetKeysToOrigins(t *testing.T) {
	g := startConsoleGateway(t)
	ctx := newBrowser(t, 1280, 900)
	browserSignIn(t, ctx)
	browserDo(t, ctx,
		chromedp.Navigate(g.SiteURL+"/console/"),
		chromedp.WaitVisible(chromedp.CSS(`.empty`)),
	)
	warningShown := `getComputedStyle(document.getElementById("create-widget-warning")).display !== "none"`
	secretWarningShown := `!document.querySelector("#secret-dialog [data-origins-warning]").hidden`
	const after = "This widget key works from any website. Add allowed origins so that only your site can use it."

	// Without origins: the note next to the scope shows while widget is
	// chosen, and the show-once dialog says what it means.
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`a[data-dialog="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-dialog[open]`)),
	)
	if browserJS[bool](t, ctx, warningShown) {
		t.Error("the widget warning shows for a full key")
	}
	browserDo(t, ctx,
		chromedp.SendKeys(chromedp.CSS(`#create-name`), "Open widget"),
		chromedp.Click(chromedp.CSS(`#create-dialog input[name="scope"][value="widget"]`)),
	)
	if !browserJS[bool](t, ctx, warningShown) {
		t.Error("no warning for a widget key without origins")
	}
	if text := browserJS[string](t, ctx, `document.getElementById("create-widget-warning").innerText`); !strings.Contains(text, "works from any website") {
		t.Errorf("the warning says %q", text)
	}
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`#create-dialog button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#secret-dialog[open]`)),
	)
	if !browserJS[bool](t, ctx, secretWarningShown) || !strings.Contains(browserJS[string](t, ctx, `document.getElementById("secret-dialog").innerText`), after) {
		t.Error("the show-once dialog does not warn about a widget key without origins")
	}
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`#secret-dialog button[value="done"]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#secret-dialog`)),
	)

	// With an origin: typing it hides the note; no warning after.
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`a[data-dialog="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-dialog[open]`)),
		chromedp.SendKeys(chromedp.CSS(`#create-name`), "Site widget"),
		chromedp.Click(chromedp.CSS(`#create-dialog input[name="scope"][value="widget"]`)),
	)
	if !browserJS[bool](t, ctx, warningShown) {
		t.Error("no warning before an origin is typed")
	}
	browserDo(t, ctx, chromedp.SendKeys(chromedp.CSS(`#create-origins`), "https://WWW.example.com"))
	if browserJS[bool](t, ctx, warningShown) {
		t.Error("the warning still shows with an origin typed")
	}
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`#create-dialog button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#secret-dialog[open]`)),
	)
	if browserJS[bool](t, ctx, secretWarningShown) {
		t.Error("the show-once dialog warns about a widget key with origins")
	}
	id := browserJS[string](t, ctx, `document.querySelector('#secret-dialog [data-field="id"]').textContent`)
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`#secret-dialog button[value="done"]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#secret-dialog`)),
	)
	if k := g.GetKey(id); strings.Join(k.AllowedOrigins, " ") != "https://www.example.com" {
		t.Errorf("admin API shows origins %q", k.AllowedOrigins)
	}
	row := `document.querySelector('tr[data-key-id="` + id + `"]')`
	browserWait(t, ctx, row+` && `+row+`.innerText.includes("Locked to 1 origin")`)

	// Edit: the dialog shows the origin; a bad line is refused under the
	// field; two good ones replace it.
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`summary[aria-label="More actions for key Site widget"]`)),
		chromedp.Click(chromedp.CSS(`a.menu-item[data-dialog="edit"][data-id="`+id+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#edit-dialog[open]`)),
	)
	if got := browserJS[string](t, ctx, `document.getElementById("edit-origins").value`); got != "https://www.example.com" {
		t.Errorf("edit dialog shows origins %q", got)
	}
	browserDo(t, ctx,
		chromedp.Evaluate[chromedp.Void](`document.getElementById("edit-origins").value = "https://www.example.com\nexample.org"`),
		chromedp.Click(chromedp.CSS(`#edit-dialog button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#edit-origins-error`)),
	)
	if got := browserJS[string](t, ctx, `document.getElementById("edit-origins-error").textContent`); !strings.HasPrefix(got, "Allowed origins: line 2: ") {
		t.Errorf("error under the origins: %q", got)
	}
	if got := browserJS[string](t, ctx, `document.activeElement.id + " " + document.activeElement.getAttribute("aria-invalid")`); got != "edit-origins true" {
		t.Errorf("after the error, focus and aria-invalid = %q", got)
	}
	browserDo(t, ctx,
		chromedp.Evaluate[chromedp.Void](`document.getElementById("edit-origins").value = "https://www.example.com\nhttps://*.example.org"`),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("edit-ips").value = "203.0.113.0/24"`),
		chromedp.Click(chromedp.CSS(`#edit-dialog button.primary`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#edit-dialog`)),
	)
	browserWait(t, ctx, row+`.innerText.includes("Locked to 2 origins") && `+row+`.innerText.includes("Locked to 1 IP range")`)
	if k := g.GetKey(id); strings.Join(k.AllowedOrigins, " ") != "https://www.example.com https://*.example.org" || strings.Join(k.AllowedIPs, " ") != "203.0.113.0/24" {
		t.Errorf("after the edit, admin API shows origins %q, IPs %q", k.AllowedOrigins, k.AllowedIPs)
	}
	// The edit link now carries the new lists, for the next edit.
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`summary[aria-label="More actions for key Site widget"]`)),
		chromedp.Click(chromedp.CSS(`a.menu-item[data-dialog="edit"][data-id="`+id+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#edit-dialog[open]`)),
	)
	if got := browserJS[string](t, ctx, `document.getElementById("edit-origins").value + "|" + document.getElementById("edit-ips").value`); got != "https://www.example.com\nhttps://*.example.org|203.0.113.0/24" {
		t.Errorf("edit dialog opened again shows %q", got)
	}
}

// TestBrowserConsoleSetsRateLimits creates a key with rate limits in the
// create dialog, sees a bad one refused under the field of the edit
// dialog, replaces them there, and checks each step through the admin API.
func TestBrowserConsoleSetsRateLimits(t *testing.T) {
	g := startConsoleGateway(t)
	ctx := newBrowser(t, 1280, 900)
	browserSignIn(t, ctx)
	browserDo(t, ctx,
		chromedp.Navigate(g.SiteURL+"/console/"),
		chromedp.WaitVisible(chromedp.CSS(`.empty`)),
		chromedp.Click(chromedp.CSS(`a[data-dialog="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-dialog[open]`)),
		chromedp.SendKeys(chromedp.CSS(`#create-name`), "Partner"),
		chromedp.Click(chromedp.CSS(`#create-dialog input[name="scope"][value="full"]`)),
		chromedp.Click(chromedp.CSS(`label[for="expiry-1y"]`)),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("create-rate-limits").value = "10/1s\n600/60m"`),
		chromedp.Click(chromedp.CSS(`#create-dialog button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#secret-dialog[open]`)),
	)
	id := browserJS[string](t, ctx, `document.querySelector('#secret-dialog [data-field="id"]').textContent`)
	browserDo(t, ctx,
		chromedp.Click(chromedp.CSS(`#secret-dialog button[value="done"]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#secret-dialog`)),
	)
	if k := g.GetKey(id); strings.Join(k.RateLimits, " ") != "10/1s 600/1h" {
		t.Fatalf("admin API shows rate limits %q, want the normalised 10/1s 600/1h", k.RateLimits)
	}
	// The list is redrawn after each change: wait until the key's edit
	// link carries the limits it should (a click on the old list fails).
	openEdit := func(limits string) {
		browserWait(t, ctx, fmt.Sprintf(`document.querySelector('a.menu-item[data-dialog="edit"][data-id="%s"]')?.dataset.rateLimits === %q`, id, limits))
		browserDo(t, ctx,
			chromedp.Click(chromedp.CSS(`summary[aria-label="More actions for key Partner"]`)),
			chromedp.Click(chromedp.CSS(`a.menu-item[data-dialog="edit"][data-id="`+id+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#edit-dialog[open]`)),
		)
	}
	openEdit("10/1s\n600/1h")
	if got := browserJS[string](t, ctx, `document.getElementById("edit-rate-limits").value`); got != "10/1s\n600/1h" {
		t.Errorf("edit dialog shows rate limits %q", got)
	}
	browserDo(t, ctx,
		chromedp.Evaluate[chromedp.Void](`document.getElementById("edit-rate-limits").value = "100/1m\n5/1w"`),
		chromedp.Click(chromedp.CSS(`#edit-dialog button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`#edit-rate-limits-error`)),
	)
	if got := browserJS[string](t, ctx, `document.getElementById("edit-rate-limits-error").textContent`); !strings.HasPrefix(got, "Rate limits: line 2: ") {
		t.Errorf("error under the rate limits: %q", got)
	}
	browserDo(t, ctx,
		chromedp.Evaluate[chromedp.Void](`document.getElementById("edit-rate-limits").value = "100/1m"`),
		chromedp.Click(chromedp.CSS(`#edit-dialog button.primary`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#edit-dialog`)),
	)
	if k := g.GetKey(id); strings.Join(k.RateLimits, " ") != "100/1m" {
		t.Errorf("after the edit, admin API shows rate limits %q", k.RateLimits)
	}
	openEdit("100/1m")
	if got := browserJS[string](t, ctx, `document.getElementById("edit-rate-limits").value`); got != "100/1m" {
		t.Errorf("edit dialog opened again shows %q", got)
	}
}
