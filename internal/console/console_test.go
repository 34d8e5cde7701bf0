package console

import (
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
)

func TestPageListsKeysNewestFirstWithTheirDetails(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, older := e.create("Production Backend", "full", "never")
	e.clock.Add(time.Hour)
	_, newer := e.create("Marketing <widget>", "widget", "1d")
	e.clock.Add(2 * time.Hour)

	resp, page := e.get("/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: status %d, want 200: %s", resp.StatusCode, page)
	}
	if got, want := rowIDs(page), []string{newer.ID, older.ID}; !slices.Equal(got, want) {
		t.Errorf("rows = %v, want newest first %v", got, want)
	}
	for _, want := range []string{
		"<h1>API Keys</h1>",
		"Create API Key",
		"Production Backend",
		"Marketing &lt;widget&gt;", // names are escaped
		html.EscapeString(newer.Hint),
		`<code class="key-id">` + newer.ID + `</code>`,
		`<span class="badge scope-widget">Widget</span>`,
		`<span class="badge scope-full">Full</span>`,
		`<span>Active</span>`,
		`<span>Expires soon</span>`, // the 1d key expires within 7 days
		`title="2026-03-14 10:26 UTC">2 hours ago</time>`,
		`<span class="muted">Never</span>`, // last used, and the never-expiring key
		`title="2026-03-15 10:26 UTC">in 22 hours</time>`,
		"Signed in as <strong>alice</strong>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Count(page, "Expires soon</span>") != 1 {
		t.Errorf("want exactly one key flagged as expiring soon")
	}
}

func TestPageWithoutKeysShowsTheEmptyState(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, page := e.get("/")
	for _, want := range []string{"No API keys yet", `href="./?dialog=create" data-dialog="create"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<table") {
		t.Error("empty page has a table")
	}
}

func TestFiltersAndSearch(t *testing.T) {
	e := newEnv(t, envOptions{})
	// A minute apart, so that newest first is one order.
	create := func(name, scope, expiresIn string) apikey.Key {
		_, k := e.create(name, scope, expiresIn)
		e.clock.Add(time.Minute)
		return k
	}
	prod := create("Production Backend", "full", "1y")
	widget := create("Website widget", "widget", "1mo")
	routine := create("Nightly routine", "routine", "never")
	expired := create("Short test", "full", "1h")
	revoked := create("Old backend", "full", "never")
	if _, err := e.svc.Revoke(context.Background(), revoked.ID); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(2 * time.Hour)

	tests := []struct {
		name  string
		query string
		want  []*apikey.Key
	}{
		{"active by default", "", []*apikey.Key{&routine, &widget, &prod}},
		{"status active", "?status=active", []*apikey.Key{&routine, &widget, &prod}},
		{"status expired", "?status=expired", []*apikey.Key{&expired}},
		{"status revoked", "?status=revoked", []*apikey.Key{&revoked}},
		{"status all", "?status=all", []*apikey.Key{&revoked, &expired, &routine, &widget, &prod}},
		{"unknown status falls back to active", "?status=bogus", []*apikey.Key{&routine, &widget, &prod}},
		{"scope widget", "?scope=widget", []*apikey.Key{&widget}},
		{"scope full across statuses", "?status=all&scope=full", []*apikey.Key{&revoked, &expired, &prod}},
		{"search name case-insensitive", "?status=all&q=BACKEND", []*apikey.Key{&revoked, &prod}},
		{"search by ID", "?q=" + widget.ID, []*apikey.Key{&widget}},
		{"part of an ID finds nothing: IDs match whole", "?status=all&q=" + routine.ID[4:14], nil},
		{"search and scope", "?status=all&scope=full&q=old", []*apikey.Key{&revoked}},
		{"nothing matches", "?q=nothing+like+this", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, page := e.get("/" + tt.query)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			var want []string
			for _, k := range tt.want {
				want = append(want, k.ID)
			}
			if got := rowIDs(page); !slices.Equal(got, want) {
				t.Errorf("rows = %v, want %v", got, want)
			}
			if tt.want == nil && !strings.Contains(page, "No keys match") {
				t.Error("no rows, but no \"No keys match\" message")
			}
		})
	}

	t.Run("filters are kept in the form and the links", func(t *testing.T) {
		_, page := e.get("/?status=all&scope=full&q=old")
		for _, want := range []string{
			`<option value="all" selected>All statuses</option>`,
			`<option value="full" selected>Full</option>`,
			`name="q" value="old"`,
			`action="./?q=old&amp;scope=full&amp;status=all"`,
		} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
	})
}

func TestCreateWithBadInputAnswers400NamingTheField(t *testing.T) {
	tests := []struct {
		name      string
		form      url.Values
		wantField string
		wantText  string
	}{
		{"empty name", url.Values{"name": {""}, "scope": {"full"}, "expires_in": {"1d"}}, "name", "Name must not be empty."},
		{"blank name", url.Values{"name": {"   "}, "scope": {"full"}, "expires_in": {"1d"}}, "name", "Name must not be empty."},
		{"name too long", url.Values{"name": {strings.Repeat("é", 101)}, "scope": {"full"}, "expires_in": {"1d"}}, "name", "Name must be at most 100 characters, not 101."},
		{"name with a control character", url.Values{"name": {"a\x07b"}, "scope": {"full"}, "expires_in": {"1d"}}, "name", "Name must not hold control characters (U+0007)."},
		{"name with a C1 control", url.Values{"name": {"a\u0085b"}, "scope": {"full"}, "expires_in": {"1d"}}, "name", "Name must not hold control characters (U+0085)."},
		{"name with a bidi override", url.Values{"name": {"abc\u202etxt"}, "scope": {"full"}, "expires_in": {"1d"}}, "name", "Name must not hold format characters (U+202E)."},
		{"name of ideographic spaces", url.Values{"name": {"\u3000\u3000"}, "scope": {"full"}, "expires_in": {"1d"}}, "name", "Name must not be empty."},
		{"no scope", url.Values{"name": {"ok"}, "expires_in": {"1d"}}, "scope", `Scope: unknown scope "": want one of full, widget, routine.`},
		{"unknown scope", url.Values{"name": {"ok"}, "scope": {"admin"}, "expires_in": {"1d"}}, "scope", `Scope: unknown scope "admin"`},
		{"unknown expiry", url.Values{"name": {"ok"}, "scope": {"full"}, "expires_in": {"2d"}}, "expires_in", `Expiration: unknown expiry "2d"`},
	}
	for _, tt := range tests {
		t.Run(tt.name+" (script)", func(t *testing.T) {
			e := newEnv(t, envOptions{})
			form := url.Values{"op": {"create"}}
			for k, v := range tt.form {
				form[k] = v
			}
			resp, body := e.postJSON(form)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %v", resp.StatusCode, body)
			}
			got, _ := body["error"].(map[string]any)
			if got["field"] != tt.wantField {
				t.Errorf("field = %v, want %q", got["field"], tt.wantField)
			}
			if msg, _ := got["message"].(string); !strings.Contains(msg, tt.wantText) {
				t.Errorf("message = %q, want it to contain %q", msg, tt.wantText)
			}
			if n := len(e.all()); n != 0 {
				t.Errorf("%d keys stored, want none", n)
			}
		})
		t.Run(tt.name+" (form)", func(t *testing.T) {
			e := newEnv(t, envOptions{})
			form := url.Values{"op": {"create"}}
			for k, v := range tt.form {
				form[k] = v
			}
			resp, page := e.do(http.MethodPost, "/", form, formHeader)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			// The dialog is open again, with the error under its field
			// and what was typed kept.
			for _, want := range []string{
				`id="create-dialog" class="dialog" aria-labelledby="create-title" open`,
				// html/template also escapes "+" (as in "U+0007").
				`data-error-for="` + tt.wantField + `">` + strings.ReplaceAll(html.EscapeString(tt.wantText), "+", "&#43;"),
			} {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			if tt.wantField == "name" && !strings.Contains(page, `aria-invalid="true"`) {
				t.Error("the name field is not marked invalid")
			}
		})
	}
}

var secretPattern = regexp.MustCompile(`dk_[0-9A-Za-z]{38}`)

func TestCreateWithScriptAnswersTheSecretOnceAsJSON(t *testing.T) {
	e := newEnv(t, envOptions{})
	resp, body := e.postJSON(url.Values{"op": {"create"}, "name": {"CI/CD Pipeline"}, "scope": {"routine"}, "expires_in": {"1w"}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d, want 201: %v", resp.StatusCode, body)
	}
	secret, _ := body["secret"].(string)
	if err := e.format.Check(secret); err != nil {
		t.Fatalf("secret %q is not a key: %v", secret, err)
	}
	key, _ := body["api_key"].(map[string]any)
	id, _ := key["id"].(string)
	stored := e.key(id)
	if stored.Digest != apikey.DigestOf(secret) {
		t.Error("the stored key is not the one whose secret was answered")
	}
	for field, want := range map[string]any{"name": "CI/CD Pipeline", "scope": "routine", "status": "active", "expires_at": "2026-03-21T09:26:53Z"} {
		if key[field] != want {
			t.Errorf("api_key.%s = %v, want %v", field, key[field], want)
		}
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	// The page lists the key afterwards, and never shows its secret.
	_, page := e.get("/")
	if !slices.Equal(rowIDs(page), []string{id}) {
		t.Errorf("rows = %v, want [%s]", rowIDs(page), id)
	}
	if strings.Contains(page, secret) {
		t.Error("the page shows the secret after its creation")
	}
}

func TestCreateWithoutScriptRendersTheShowOnceDialog(t *testing.T) {
	e := newEnv(t, envOptions{})
	resp, page := e.do(http.MethodPost, "/?status=all", url.Values{"op": {"create"}, "name": {"Backend"}, "scope": {"full"}, "expires_in": {"never"}}, formHeader)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	secret := secretPattern.FindString(page)
	if secret == "" {
		t.Fatal("no secret in the page")
	}
	keys := e.all()
	if len(keys) != 1 || keys[0].Digest != apikey.DigestOf(secret) {
		t.Fatalf("stored keys %v do not match the secret shown", keys)
	}
	for _, want := range []string{
		`id="secret-dialog" class="dialog" aria-labelledby="secret-title" aria-describedby="secret-warning" open`,
		`readonly value="` + secret + `"`,
		"This key will not be shown again.",
		"Copy Key",
		`Key &#34;Backend&#34; created.`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if strings.Count(page, secret) != 1 {
		t.Errorf("the secret appears %d times, want once (in the read-only field)", strings.Count(page, secret))
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.create("Backend", "full", "never")
	_, other := e.create("Other", "widget", "never")

	resp, body := e.postJSON(url.Values{"op": {"revoke"}, "id": {k.ID}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: status %d, want 200: %v", resp.StatusCode, body)
	}
	if got := body["api_key"].(map[string]any)["status"]; got != "revoked" {
		t.Errorf("answered status %v, want revoked", got)
	}
	if got := e.key(k.ID); got.RevokedAt.IsZero() {
		t.Error("the key is not revoked in the store")
	}
	if got := e.key(other.ID); !got.RevokedAt.IsZero() {
		t.Error("another key was revoked too")
	}

	// Revoking again changes nothing and succeeds; a plain form post gets
	// the page with a notice.
	first := e.key(k.ID).RevokedAt
	e.clock.Add(time.Hour)
	resp, page := e.do(http.MethodPost, "/", url.Values{"op": {"revoke"}, "id": {k.ID}}, formHeader)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("second revoke: status %d, want 200", resp.StatusCode)
	}
	if !strings.Contains(page, "Key &#34;Backend&#34; revoked. Requests with it now fail.") {
		t.Error("page lacks the revocation notice")
	}
	if got := e.key(k.ID).RevokedAt; !got.Equal(first) {
		t.Errorf("revoked_at moved from %v to %v", first, got)
	}
	if slices.Contains(rowIDs(page), k.ID) {
		t.Error("the revoked key is still listed among the active ones")
	}

	tests := []struct {
		name       string
		id         string
		wantStatus int
	}{
		{"unknown key", "key_0000000000000000000000", http.StatusNotFound},
		{"not an ID", "../../etc/passwd", http.StatusBadRequest},
		{"no ID", "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.postJSON(url.Values{"op": {"revoke"}, "id": {tt.id}})
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d: %v", resp.StatusCode, tt.wantStatus, body)
			}
			resp, _ = e.do(http.MethodPost, "/", url.Values{"op": {"revoke"}, "id": {tt.id}}, formHeader)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("form post: status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
		})
	}
}

func TestRotate(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, old := e.create("Backend", "widget", "1mo")
	e.clock.Add(time.Hour)

	resp, body := e.postJSON(url.Values{"op": {"rotate"}, "id": {old.ID}, "grace": {"1h"}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("rotate: status %d, want 201: %v", resp.StatusCode, body)
	}
	secret, _ := body["secret"].(string)
	next := body["api_key"].(map[string]any)
	prev := body["previous"].(map[string]any)
	stored := e.key(next["id"].(string))
	if stored.Digest != apikey.DigestOf(secret) || stored.Name != "Backend" || stored.Scope != apikey.ScopeWidget {
		t.Errorf("new key %+v does not match the rotated one or the secret", stored)
	}
	if got, want := prev["expires_at"], "2026-03-14T11:26:53Z"; got != want {
		t.Errorf("previous expires_at = %v, want %v (now + 1h grace)", got, want)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}

	// Without script: the page with the new secret and when the old key stops.
	resp, page := e.do(http.MethodPost, "/", url.Values{"op": {"rotate"}, "id": {stored.ID}, "grace": {"0s"}}, formHeader)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("form rotate: status %d, want 200", resp.StatusCode)
	}
	for _, want := range []string{"Your rotated API key", "The previous key keeps working until <span data-field=\"previous_expires\">2026-03-14 10:26 UTC</span>"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if secretPattern.FindString(page) == "" {
		t.Error("no secret in the page")
	}

	revokedID := old.ID
	if _, err := e.svc.Revoke(context.Background(), revokedID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		form       url.Values
		wantStatus int
	}{
		{"revoked key", url.Values{"id": {revokedID}, "grace": {"24h"}}, http.StatusConflict},
		{"unknown key", url.Values{"id": {"key_0000000000000000000000"}}, http.StatusNotFound},
		{"grace too long", url.Values{"id": {stored.ID}, "grace": {"169h"}}, http.StatusBadRequest},
		{"grace not a duration", url.Values{"id": {stored.ID}, "grace": {"soon"}}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.all())
			tt.form.Set("op", "rotate")
			resp, body := e.postJSON(tt.form)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d: %v", resp.StatusCode, tt.wantStatus, body)
			}
			if after := len(e.all()); after != before {
				t.Errorf("%d keys after a refused rotation, want %d", after, before)
			}
		})
	}
}

func TestReplacedAndExpiredKeysCannotBeRotatedAndShowTheirSuccessor(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, replaced := e.create("Replaced", "full", "1d")
	_, next, _, err := e.svc.Rotate(context.Background(), replaced.ID, "24h")
	if err != nil {
		t.Fatal(err)
	}
	_, expired := e.create("Hourly", "full", "1h")
	e.clock.Add(2 * time.Hour)

	_, page := e.get("/?status=all")
	rows := map[string]string{}
	for _, id := range []string{replaced.ID, next.ID, expired.ID} {
		rows[id] = rowHTML(t, page, id)
	}
	if want := `Replaced by <code class="key-id">` + next.ID + `</code>`; !strings.Contains(rows[replaced.ID], want) {
		t.Errorf("the replaced key's row lacks %q:\n%s", want, rows[replaced.ID])
	}
	for id, wantRotate := range map[string]bool{replaced.ID: false, expired.ID: false, next.ID: true} {
		if got := strings.Contains(rows[id], `data-dialog="rotate"`); got != wantRotate {
			t.Errorf("row of %s offers Rotate: %v, want %v", id, got, wantRotate)
		}
	}
	if strings.Contains(rows[next.ID], "Replaced by") {
		t.Error("the new key's row says it was replaced")
	}

	for _, tt := range []struct {
		name, id, wantMessage, wantNotice string
	}{
		{"replaced key", replaced.ID, "API key " + replaced.ID + " was already replaced by a rotation: rotate the key that replaced it.", "was already replaced by " + next.ID + ": rotate that key instead."},
		{"expired key", expired.ID, "API key " + expired.ID + " is expired: an expired key cannot be rotated.", "has expired: it cannot be rotated. Create a new key instead."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.all())
			resp, body := e.postJSON(url.Values{"op": {"rotate"}, "id": {tt.id}, "grace": {"1h"}})
			if resp.StatusCode != http.StatusConflict {
				t.Errorf("rotate: status %d, want 409: %v", resp.StatusCode, body)
			}
			if got := body["error"].(map[string]any)["message"]; got != tt.wantMessage {
				t.Errorf("rotate: message %q, want %q", got, tt.wantMessage)
			}
			resp, page := e.do(http.MethodPost, "/", url.Values{"op": {"rotate"}, "id": {tt.id}}, formHeader)
			if resp.StatusCode != http.StatusConflict || !strings.Contains(page, tt.wantMessage) {
				t.Errorf("form rotate: status %d, want 409 and %q in the page", resp.StatusCode, tt.wantMessage)
			}
			if after := len(e.all()); after != before {
				t.Errorf("%d keys after refused rotations, want %d", after, before)
			}
			_, page = e.get("/?status=all&dialog=rotate&id=" + tt.id)
			if strings.Contains(page, `id="rotate-dialog" class="dialog narrow" aria-labelledby="rotate-title" aria-describedby="rotate-desc" open`) {
				t.Error("the rotate dialog opens for a key that cannot be rotated")
			}
			if !strings.Contains(page, tt.wantNotice) {
				t.Errorf("dialog link: page lacks %q", tt.wantNotice)
			}
		})
	}
}

// rowHTML returns the table row of key id in page.
func rowHTML(t *testing.T, page, id string) string {
	t.Helper()
	start := strings.Index(page, `<tr data-key-id="`+id+`"`)
	if start < 0 {
		t.Fatalf("no row for %s in the page", id)
	}
	end := strings.Index(page[start:], "</tr>")
	if end < 0 {
		t.Fatalf("the row of %s does not end", id)
	}
	return page[start : start+end]
}

func TestUnknownOperationIsRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, op := range []string{"", "delete", "CREATE"} {
		resp, body := e.postJSON(url.Values{"op": {op}, "name": {"x"}, "scope": {"full"}, "expires_in": {"1d"}})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("op %q: status %d, want 400: %v", op, resp.StatusCode, body)
		}
	}
	// The operation is read from the body only, never from the query.
	resp, _ := e.do(http.MethodPost, "/?op=create&name=x&scope=full&expires_in=1d", url.Values{}, jsonHeader)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("op in the query: status %d, want 400", resp.StatusCode)
	}
	if n := len(e.all()); n != 0 {
		t.Errorf("%d keys created, want none", n)
	}
}

func TestGetNeverChangesAKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.create("Backend", "full", "never")
	for _, target := range []string{
		"/?op=create&name=x&scope=full&expires_in=1d",
		"/?op=revoke&id=" + k.ID,
		"/?op=rotate&id=" + k.ID + "&grace=0s",
		"/?dialog=revoke&id=" + k.ID,
		"/?dialog=rotate&id=" + k.ID,
		"/?dialog=create&name=x&scope=full&expires_in=1d",
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, _ := e.do(method, target, nil, formHeader)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s %s: status %d, want 200", method, target, resp.StatusCode)
			}
		}
	}
	keys := e.all()
	if len(keys) != 1 || !keys[0].RevokedAt.IsZero() || !keys[0].ExpiresAt.IsZero() {
		t.Errorf("keys after GETs = %+v, want the one key unchanged", keys)
	}
}

func TestDialogLinksOpenTheDialogWithoutChangingAnything(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.create("Backend <prod>", "full", "never")
	tests := []struct {
		query string
		want  []string
	}{
		{"?dialog=create", []string{`id="create-dialog" class="dialog" aria-labelledby="create-title" open`}},
		{"?dialog=revoke&id=" + k.ID, []string{
			`id="revoke-dialog" class="dialog narrow" role="alertdialog" aria-labelledby="revoke-title" aria-describedby="revoke-desc" open`,
			`Revoke “<span data-field="name">Backend &lt;prod&gt;</span>”?`,
			"Requests with this key will fail immediately, on every gateway. This cannot be undone.",
			`<input type="hidden" name="id" value="` + k.ID + `"`,
			`data-close autofocus>Cancel</a>`,
		}},
		{"?dialog=rotate&id=" + k.ID, []string{
			`id="rotate-dialog" class="dialog narrow" aria-labelledby="rotate-title" aria-describedby="rotate-desc" open`,
			`name="grace" value="24h" checked`,
		}},
		{"?dialog=revoke&id=key_0000000000000000000000", []string{"There is no key with that ID."}},
	}
	for _, tt := range tests {
		_, page := e.get("/" + tt.query)
		for _, want := range tt.want {
			if !strings.Contains(page, want) {
				t.Errorf("%s: page lacks %q", tt.query, want)
			}
		}
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, page := e.get("/")
	css := regexp.MustCompile(`href="(static/console\.[0-9a-f]{10}\.css)"`).FindStringSubmatch(page)
	if css == nil {
		t.Fatal("no hashed stylesheet link in the page")
	}
	anon := newEnv(t, envOptions{anonymous: true})

	tests := []struct {
		name       string
		env        *env
		method     string
		target     string
		form       url.Values
		header     http.Header
		wantStatus int
	}{
		{"page", e, http.MethodGet, "/", nil, nil, http.StatusOK},
		{"create dialog", e, http.MethodGet, "/?dialog=create", nil, nil, http.StatusOK},
		{"change", e, http.MethodPost, "/", url.Values{"op": {"create"}, "name": {"x"}, "scope": {"full"}, "expires_in": {"1d"}}, jsonHeader, http.StatusCreated},
		{"bad change", e, http.MethodPost, "/", url.Values{"op": {"create"}}, formHeader, http.StatusBadRequest},
		{"cross-origin change", e, http.MethodPost, "/", url.Values{"op": {"create"}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"no user", anon, http.MethodGet, "/", nil, nil, http.StatusForbidden},
		{"unknown path", e, http.MethodGet, "/admin", nil, nil, http.StatusNotFound},
		{"method", e, http.MethodPut, "/", nil, nil, http.StatusMethodNotAllowed},
		{"stylesheet", e, http.MethodGet, "/" + css[1], nil, nil, http.StatusOK},
		{"unknown asset", e, http.MethodGet, "/static/console.css", nil, nil, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := tt.env.do(tt.method, tt.target, tt.form, tt.header)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, tt.wantStatus, body)
			}
			for name, want := range map[string]string{
				"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
				"X-Frame-Options":         "DENY",
			} {
				if got := resp.Header.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if got := resp.Header.Get("Set-Cookie"); got != "" {
				t.Errorf("Set-Cookie = %q, want none", got)
			}
			if tt.name != "stylesheet" && resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", resp.Header.Get("Cache-Control"))
			}
		})
	}
}

// inlineCode finds what the CSP forbids: inline scripts and styles, style
// attributes and event handler attributes.
var inlineCode = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]|<script(?:[^>]*[^>]*)?>[^<]|<style|\sstyle\s*=|\son[a-z]+\s*=|javascript:`)

func TestPagesHoldNoInlineScriptOrStyle(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.create("Backend", "full", "1d")
	e.create("Widget", "widget", "never")
	anon := newEnv(t, envOptions{anonymous: true})
	pages := map[string]string{}
	for _, q := range []string{"/", "/?status=all", "/?dialog=create", "/?dialog=revoke&id=" + k.ID, "/?dialog=rotate&id=" + k.ID, "/?q=nothing"} {
		_, pages[q] = e.get(q)
	}
	_, pages["created"] = e.do(http.MethodPost, "/", url.Values{"op": {"create"}, "name": {"x"}, "scope": {"full"}, "expires_in": {"1d"}}, formHeader)
	_, pages["bad input"] = e.do(http.MethodPost, "/", url.Values{"op": {"create"}}, formHeader)
	_, pages["403"] = anon.get("/")
	_, pages["404"] = e.get("/nope")
	for name, page := range pages {
		if m := inlineCode.FindString(page); m != "" {
			t.Errorf("%s: inline code %q", name, m)
		}
		if scripts := regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1); len(scripts) > 1 {
			t.Errorf("%s: %d script elements, want at most one", name, len(scripts))
		}
	}
}

func TestCrossOriginChangesAreRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.create("Backend", "full", "never")
	host := strings.TrimPrefix(e.srv.URL, "http://")
	tests := []struct {
		name       string
		header     http.Header
		wantStatus int
	}{
		{"cross-site fetch metadata", http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"same-site but another origin", http.Header{"Sec-Fetch-Site": {"same-site"}}, http.StatusForbidden},
		{"foreign Origin without fetch metadata", http.Header{"Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"cross-site asking for JSON", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Accept": {"application/json"}}, http.StatusForbidden},
		{"same origin", http.Header{"Sec-Fetch-Site": {"same-origin"}}, http.StatusOK},
		{"matching Origin", http.Header{"Origin": {"http://" + host}}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := e.do(http.MethodPost, "/", url.Values{"op": {"revoke"}, "id": {k.ID}}, tt.header)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			revoked := !e.key(k.ID).RevokedAt.IsZero()
			if tt.wantStatus == http.StatusForbidden && revoked {
				t.Fatal("a refused request revoked the key")
			}
		})
	}
	if e.key(k.ID).RevokedAt.IsZero() {
		t.Error("the same-origin revocation did not happen")
	}
}

func TestSecretNeverInAURLHeaderOrLog(t *testing.T) {
	e := newEnv(t, envOptions{})
	var secrets []string
	var headers []http.Header

	resp, body := e.postJSON(url.Values{"op": {"create"}, "name": {"Script"}, "scope": {"full"}, "expires_in": {"1d"}})
	secrets = append(secrets, body["secret"].(string))
	headers = append(headers, resp.Header)
	id := body["api_key"].(map[string]any)["id"].(string)

	resp, page := e.do(http.MethodPost, "/", url.Values{"op": {"create"}, "name": {"Form"}, "scope": {"widget"}, "expires_in": {"never"}}, formHeader)
	secrets = append(secrets, secretPattern.FindString(page))
	headers = append(headers, resp.Header)

	resp, body = e.postJSON(url.Values{"op": {"rotate"}, "id": {id}, "grace": {"1h"}})
	secrets = append(secrets, body["secret"].(string))
	headers = append(headers, resp.Header)

	resp, page = e.do(http.MethodPost, "/", url.Values{"op": {"rotate"}, "id": {body["api_key"].(map[string]any)["id"].(string)}}, formHeader)
	secrets = append(secrets, secretPattern.FindString(page))
	headers = append(headers, resp.Header)

	logs := e.logText()
	_, listPage := e.get("/?status=all")
	for i, secret := range secrets {
		if secret == "" {
			t.Fatalf("change %d: no secret answered", i)
		}
		for name, vs := range headers[i] {
			for _, v := range vs {
				if strings.Contains(v, secret) || strings.Contains(v, secret[len(secret)-10:]) {
					t.Errorf("change %d: header %s carries the secret", i, name)
				}
			}
		}
		for _, name := range []string{"Location", "Set-Cookie", "Refresh"} {
			if v := headers[i].Get(name); v != "" {
				t.Errorf("change %d: %s = %q, want none", i, name, v)
			}
		}
		if strings.Contains(logs, secret) || strings.Contains(logs, secret[3:20]) {
			t.Errorf("change %d: the log holds the secret", i)
		}
		if strings.Contains(listPage, secret) {
			t.Errorf("change %d: the list page holds the secret", i)
		}
	}
	if !strings.Contains(listPage, "<table") {
		t.Fatal("the list page has no table")
	}
}

func TestChangesAreLoggedWithUserActionAndKeyID(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, body := e.postJSON(url.Values{"op": {"create"}, "name": {"Backend"}, "scope": {"full"}, "expires_in": {"1d"}})
	id := body["api_key"].(map[string]any)["id"].(string)
	_, body = e.postJSON(url.Values{"op": {"rotate"}, "id": {id}, "grace": {"0s"}})
	next := body["api_key"].(map[string]any)["id"].(string)
	e.postJSON(url.Values{"op": {"revoke"}, "id": {next}})

	want := []map[string]any{
		{"msg": "api key created", "user": "alice", "action": "create", "key_id": id},
		{"msg": "api key rotated", "user": "alice", "action": "rotate", "key_id": next, "previous_key_id": id},
		{"msg": "api key revoked", "user": "alice", "action": "revoke", "key_id": next},
	}
	entries := e.logs.FilterLevelExact(0).All() // info
	if len(entries) != len(want) {
		t.Fatalf("%d info entries, want %d:\n%s", len(entries), len(want), e.logText())
	}
	for i, entry := range entries {
		fields := entry.ContextMap()
		if entry.Message != want[i]["msg"] {
			t.Errorf("entry %d: message %q, want %q", i, entry.Message, want[i]["msg"])
		}
		for k, v := range want[i] {
			if k != "msg" && fields[k] != v {
				t.Errorf("entry %d (%s): %s = %v, want %v", i, entry.Message, k, fields[k], v)
			}
		}
	}
}

func TestWithoutAUserTheConsoleAnswers403(t *testing.T) {
	tests := []struct {
		name       string
		opts       envOptions
		remoteAddr string
		user       string
		wantStatus int
		wantInPage string
	}{
		{"no authentication handler", envOptions{anonymous: true}, "192.0.2.7:5000", "", http.StatusForbidden, "has no login of its own"},
		{"no authentication handler, even from loopback", envOptions{anonymous: true}, "127.0.0.1:5000", "", http.StatusForbidden, "basic_auth"},
		{"authenticated", envOptions{}, "192.0.2.7:5000", "bob", http.StatusOK, "Signed in as <strong>bob</strong>"},
		{"allow_unauthenticated from IPv4 loopback", envOptions{anonymous: true, allowUnauthenticated: true}, "127.0.0.1:5000", "", http.StatusOK, "Local access"},
		{"allow_unauthenticated from IPv6 loopback", envOptions{anonymous: true, allowUnauthenticated: true}, "[::1]:5000", "", http.StatusOK, "Local access"},
		{"allow_unauthenticated from elsewhere", envOptions{anonymous: true, allowUnauthenticated: true}, "192.0.2.7:5000", "", http.StatusForbidden, "only requests from a loopback address"},
		{"allow_unauthenticated with a user from elsewhere", envOptions{anonymous: true, allowUnauthenticated: true}, "192.0.2.7:5000", "bob", http.StatusOK, "Signed in as <strong>bob</strong>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				var body *strings.Reader
				if method == http.MethodPost {
					body = strings.NewReader("op=create&name=x&scope=full&expires_in=1d")
				} else {
					body = strings.NewReader("")
				}
				req := httptest.NewRequest(method, "/", body)
				req.RemoteAddr = tt.remoteAddr
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if tt.user != "" {
					req.Header.Set("X-Test-User", tt.user)
				}
				rec := httptest.NewRecorder()
				e.h.ServeHTTP(rec, req)
				want := tt.wantStatus // a POST that passes gets the page with the new secret
				if rec.Code != want {
					t.Fatalf("%s: status %d, want %d: %.300s", method, rec.Code, want, rec.Body)
				}
				if method == http.MethodGet && !strings.Contains(rec.Body.String(), tt.wantInPage) {
					t.Errorf("page lacks %q", tt.wantInPage)
				}
			}
			wantKeys := 0
			if tt.wantStatus == http.StatusOK {
				wantKeys = 1
			}
			if n := len(e.all()); n != wantKeys {
				t.Errorf("%d keys, want %d", n, wantKeys)
			}
		})
	}
}

func TestStaticAssetsAreHashedAndCachedForLong(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, page := e.get("/")
	tests := []struct {
		pattern     string
		contentType string
		inFile      string
	}{
		{`<link rel="stylesheet" href="(static/console\.[0-9a-f]{10}\.css)">`, "text/css; charset=utf-8", ".key-table"},
		{`<script src="(static/console\.[0-9a-f]{10}\.js)" defer></script>`, "text/javascript; charset=utf-8", "showModal"},
	}
	for _, tt := range tests {
		m := regexp.MustCompile(tt.pattern).FindStringSubmatch(page)
		if m == nil {
			t.Errorf("page lacks %s", tt.pattern)
			continue
		}
		// Assets hold no data: they are served without a user, so that
		// the 403 page has its style.
		anon := &env{t: t, srv: e.srv}
		resp, body := anon.get("/" + m[1])
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", m[1], resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Type"); got != tt.contentType {
			t.Errorf("%s: Content-Type %q, want %q", m[1], got, tt.contentType)
		}
		if got := resp.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Errorf("%s: Cache-Control %q", m[1], got)
		}
		if !strings.Contains(body, tt.inFile) {
			t.Errorf("%s: body lacks %q", m[1], tt.inFile)
		}
		resp, _ = e.do(http.MethodPost, "/"+m[1], url.Values{}, formHeader)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: status %d, want 405", m[1], resp.StatusCode)
		}
	}
}

func TestPageWithoutTrailingSlashIsRedirectedRelatively(t *testing.T) {
	e := newEnv(t, envOptions{})
	h, err := New(Config{
		Service:     e.svc,
		User:        func(*http.Request) string { return "alice" },
		RequestPath: func(*http.Request) string { return "/tools/console" }, // the browser's path before handle_path stripped it
	})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/?status=all", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusMovedPermanently {
		t.Fatalf("status %d, want 301", rec.Code)
	}
	if got, want := rec.Header().Get("Location"), "console/?status=all"; got != want {
		t.Errorf("Location = %q, want %q (relative, so it keeps any prefix)", got, want)
	}
}

func TestNewRequiresAService(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a service succeeded")
	}
}

func TestChangesNeverEchoAPastedKeyWhole(t *testing.T) {
	e := newEnv(t, envOptions{})
	secret, _ := e.create("real", "full", "1d")
	tests := []struct {
		name string
		form url.Values
	}{
		{"key as scope", url.Values{"op": {"create"}, "name": {"x"}, "scope": {secret}, "expires_in": {"1d"}}},
		{"key as expiry", url.Values{"op": {"create"}, "name": {"x"}, "scope": {"full"}, "expires_in": {secret}}},
		{"key as operation", url.Values{"op": {secret}}},
	}
	for _, tt := range tests {
		for _, mode := range []struct {
			name   string
			header http.Header
		}{{"script", jsonHeader}, {"form", formHeader}} {
			t.Run(tt.name+" ("+mode.name+")", func(t *testing.T) {
				resp, body := e.do(http.MethodPost, "/", tt.form, mode.header)
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("status %d, want 400", resp.StatusCode)
				}
				// The page escapes quotes, the JSON answer does not.
				if !strings.Contains(html.UnescapeString(body), `"dk_`) {
					t.Errorf("the answer does not quote the start of the value: %.400s", body)
				}
				if strings.Contains(body, secret[:apikey.MaxEcho+1]) {
					t.Errorf("the answer echoes more than %d bytes of the key", apikey.MaxEcho)
				}
				if strings.Contains(e.logText(), secret[:apikey.MaxEcho+1]) {
					t.Errorf("the log holds more than %d bytes of the key:\n%s", apikey.MaxEcho, e.logText())
				}
			})
		}
	}
}
