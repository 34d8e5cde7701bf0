package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/policy"
)

func TestCreateWithAllowedOriginsAndIPs(t *testing.T) {
	e := newEnv(t, envOptions{})
	resp, body := e.postJSON(url.Values{"op": {"create"}, "name": {"Site widget"}, "scope": {"widget"}, "expires_in": {"1y"},
		"allowed_origins": {" https://App.Example.com:443 \n\nhttp://localhost:8080\r\nhttps://app.example.com\n"},
		"allowed_ips":     {"203.0.113.7\n2001:db8::/32\n"}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d, want 201: %v", resp.StatusCode, body)
	}
	wantOrigins := []string{"https://app.example.com", "http://localhost:8080"}
	wantIPs := []string{"203.0.113.7", "2001:db8::/32"}
	id := body["api_key"].(map[string]any)["id"].(string)
	got := e.key(id)
	if !slices.Equal(got.AllowedOrigins, wantOrigins) || !slices.Equal(got.AllowedIPs, wantIPs) {
		t.Errorf("stored origins %q, IPs %q; want %q, %q", got.AllowedOrigins, got.AllowedIPs, wantOrigins, wantIPs)
	}
	if o := body["api_key"].(map[string]any)["allowed_origins"].([]any); len(o) != 2 || o[0] != wantOrigins[0] {
		t.Errorf("answer's allowed_origins = %v", o)
	}
	if w := body["display"].(map[string]any)["origins_warning"]; w != "" {
		t.Errorf("a widget key with origins is warned about: %q", w)
	}

	// The list shows the restrictions; the edit link carries them.
	_, page := e.get("/")
	row := rowHTML(t, page, id)
	for _, want := range []string{
		`title="Allowed origins: https://app.example.com, http://localhost:8080"`,
		"Locked to 2 origins",
		"Locked to 2 IP ranges",
		"data-origins=\"https://app.example.com\nhttp://localhost:8080\"",
		"data-ips=\"203.0.113.7\n2001:db8::/32\"",
	} {
		if !strings.Contains(row, want) {
			t.Errorf("row lacks %q: %s", want, row)
		}
	}
	_, plain := e.create("Plain", "full", "1y")
	_, page = e.get("/")
	if row := rowHTML(t, page, plain.ID); strings.Contains(row, "Locked to") {
		t.Error("a key without restrictions shows a lock")
	}
}

func TestWidgetKeyWithoutOriginsIsWarnedAbout(t *testing.T) {
	tests := []struct {
		name, scope, origins string
		want                 bool
	}{
		{"widget without origins", "widget", "", true},
		{"widget with blank origins", "widget", " \n ", true},
		{"widget with an origin", "widget", "https://www.example.com", false},
		{"full without origins", "full", "", false},
		{"routine without origins", "routine", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			form := url.Values{"op": {"create"}, "name": {"K"}, "scope": {tt.scope}, "expires_in": {"1y"}, "allowed_origins": {tt.origins}}
			wantText := ""
			if tt.want {
				wantText = widgetOriginsWarning
			}
			resp, body := e.postJSON(form)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d: %v", resp.StatusCode, body)
			}
			if got := body["display"].(map[string]any)["origins_warning"]; got != wantText {
				t.Errorf("with script: origins_warning = %q, want %q", got, wantText)
			}
			// Without script, the show-once dialog says it.
			resp, page := e.do(http.MethodPost, "/", form, formHeader)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("form: status %d", resp.StatusCode)
			}
			shown := strings.Contains(page, `<p class="callout warning" data-origins-warning>`) && strings.Contains(page, widgetOriginsWarning)
			if shown != tt.want {
				t.Errorf("without script: warning shown = %v, want %v", shown, tt.want)
			}
			if !tt.want && strings.Contains(page, widgetOriginsWarning) {
				t.Error("the warning's text is in the page")
			}
		})
	}
	if widgetOriginsWarning != "This widget key works from any website. Add allowed origins so that only your site can use it." {
		t.Error("the warning's text changed: update docs/DESIGN.md and this test")
	}
}

// TestCreateDialogWarnsAboutWidgetKeysWithoutOrigins checks the note the
// dialog shows before submitting: in the page, next to the scope, shown
// by the style sheet alone (no script) while widget is chosen and the
// origins are empty.
func TestCreateDialogWarnsAboutWidgetKeysWithoutOrigins(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, page := e.get("/?dialog=create")
	scope := page[strings.Index(page, "<legend>Scope</legend>"):strings.Index(page, `id="create-scope-error"`)]
	if !strings.Contains(scope, `id="create-widget-warning" class="scope-warning"`) || !strings.Contains(scope, "Without allowed origins it works from any website") {
		t.Errorf("no warning next to the scope: %s", scope)
	}
	for _, want := range []string{`name="allowed_origins"`, `id="create-origins"`, `placeholder="https://www.example.com"`, `name="allowed_ips"`} {
		if !strings.Contains(page, want) {
			t.Errorf("create dialog lacks %q", want)
		}
	}
	_, css := e.get("/" + e.h.assets.CSS)
	rule := `form:has(input[name="scope"][value="widget"]:checked):has(#create-origins:placeholder-shown) .scope-warning { display: flex; }`
	if !strings.Contains(css, rule) || !strings.Contains(css, ".scope-warning {\n  display: none;") {
		t.Error("the style sheet does not show the warning for widget keys without origins only")
	}
}

func TestBadOriginsAndIPsAnswer400UnderTheFieldNamingTheLine(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.create("Widget", "widget", "1y")
	secret, _ := e.create("Other", "full", "1y")
	tests := []struct {
		name, field, text string
		wantMessage       string
	}{
		{"origin without scheme", "allowed_origins", "https://ok.example\nexample.com", "Allowed origins: line 2: "},
		{"origin with a path", "allowed_origins", "https://example.com/app", "Allowed origins: line 1: "},
		{"ftp origin", "allowed_origins", "\n\nftp://example.com", "Allowed origins: line 3: "},
		{"a pasted secret", "allowed_origins", secret, "Allowed origins: line 1: "},
		{"bad address", "allowed_ips", "203.0.113.7\n203.0.113.300", "Allowed IPs: line 2: "},
		{"bad prefix", "allowed_ips", "10.0.0.0/33", "Allowed IPs: line 1: "},
		{"a pasted secret as IP", "allowed_ips", secret, "Allowed IPs: line 1: "},
		{"33 origins", "allowed_origins", manyLines(33, "https://h%d.example.com"), "Allowed origins: line 33 is one entry too many: at most 32."},
		{"33 IPs", "allowed_ips", manyLines(33, "10.0.0.%d"), "Allowed IPs: line 33 is one entry too many: at most 32."},
	}
	for _, tt := range tests {
		for _, op := range []string{"create", "update"} {
			form := url.Values{"op": {op}, "name": {"Widget"}, "scope": {"widget"}, "expires_in": {"1y"}, "metadata": {""}, tt.field: {tt.text}}
			if op == "update" {
				form.Set("id", k.ID)
			}
			t.Run(tt.name+" "+op, func(t *testing.T) {
				resp, body := e.postJSON(form)
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("status %d, want 400: %v", resp.StatusCode, body)
				}
				errObj := body["error"].(map[string]any)
				msg := errObj["message"].(string)
				if errObj["field"] != tt.field || !strings.HasPrefix(msg, tt.wantMessage) {
					t.Errorf("error %v, want field %s, message starting %q", errObj, tt.field, tt.wantMessage)
				}
				if strings.Contains(msg, secret[:apikey.MaxEcho+1]) {
					t.Errorf("message echoes more than 12 bytes of the input: %q", msg)
				}
				// Without the script, the dialog comes back with the
				// error under the field and what was typed.
				dialog, id := "create", map[string]string{"allowed_origins": "create-origins", "allowed_ips": "create-ips"}[tt.field]
				if op == "update" {
					dialog, id = "edit", strings.Replace(id, "create-", "edit-", 1)
				}
				resp, page := e.do(http.MethodPost, "/", form, formHeader)
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, `id="`+dialog+`-dialog" class="dialog"`) ||
					!strings.Contains(page, `id="`+id+`-error" class="field-error" data-error-for="`+tt.field+`">`+htmlText(msg)+`</p>`) {
					t.Errorf("form post: status %d, want 400 with the dialog and the error under %s", resp.StatusCode, id)
				}
				// What was typed is the form's own state, given back in
				// its field only (as a name or metadata is), never in
				// the message or the log.
				if !strings.Contains(page, `aria-invalid="true">`+htmlText(tt.text)+`</textarea>`) {
					t.Error("form post: the dialog lost what was typed")
				}
				if strings.Count(page, secret) > strings.Count(tt.text, secret) || strings.Contains(e.logText(), secret[:apikey.MaxEcho+1]) {
					t.Error("a pasted secret came back outside its field, or in the log")
				}
			})
		}
	}
	if n := len(e.all()); n != 2 {
		t.Errorf("%d keys, want the 2 made by the test", n)
	}
	if got := e.key(k.ID); got.AllowedOrigins != nil || got.AllowedIPs != nil {
		t.Errorf("a refused update changed the key: %q %q", got.AllowedOrigins, got.AllowedIPs)
	}
}

func htmlText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

func manyLines(n int, format string) string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf(format, i+1)
	}
	return strings.Join(lines, "\n")
}

func TestEditSetsAndClearsOriginsAndIPs(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.create("Widget", "widget", "1y")
	origins, ips := []string{"https://www.example.com", "https://*.example.org"}, []string{"198.51.100.0/24"}
	if _, err := e.svc.Update(t.Context(), k.ID, keyservice.KeyUpdate{AllowedOrigins: &origins, AllowedIPs: &ips}); err != nil {
		t.Fatal(err)
	}

	// The dialog, from a link, shows the current lists, one per line.
	_, page := e.get("/?dialog=edit&id=" + k.ID)
	for _, want := range []string{
		`name="allowed_origins" rows="2" data-field="allowed_origins"`,
		">https://www.example.com\nhttps://*.example.org</textarea>",
		">198.51.100.0/24</textarea>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("edit dialog lacks %q", want)
		}
	}

	// With the script: JSON, the lists replaced whole.
	resp, body := e.postJSON(url.Values{"op": {"update"}, "id": {k.ID}, "name": {"Widget"}, "metadata": {""},
		"allowed_origins": {"https://shop.example.com"}, "allowed_ips": {"2001:db8::1\n192.0.2.0/24"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("update: status %d: %v", resp.StatusCode, body)
	}
	got := e.key(k.ID)
	if !slices.Equal(got.AllowedOrigins, []string{"https://shop.example.com"}) || !slices.Equal(got.AllowedIPs, []string{"2001:db8::1", "192.0.2.0/24"}) {
		t.Errorf("after update: %q %q", got.AllowedOrigins, got.AllowedIPs)
	}
	if o := body["api_key"].(map[string]any)["allowed_origins"].([]any); len(o) != 1 || o[0] != "https://shop.example.com" {
		t.Errorf("answer's allowed_origins = %v", o)
	}

	// A form without the fields leaves them as they are.
	if resp, body := e.postJSON(url.Values{"op": {"update"}, "id": {k.ID}, "name": {"Renamed"}, "metadata": {""}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("update without lists: status %d: %v", resp.StatusCode, body)
	}
	if got := e.key(k.ID); got.Name != "Renamed" || len(got.AllowedOrigins) != 1 || len(got.AllowedIPs) != 2 {
		t.Errorf("an update without the lists changed them: %q %q", got.AllowedOrigins, got.AllowedIPs)
	}

	// Without the script, empty text clears them.
	resp, page = e.do(http.MethodPost, "/", url.Values{"op": {"update"}, "id": {k.ID}, "name": {"Renamed"}, "metadata": {""},
		"allowed_origins": {""}, "allowed_ips": {"\r\n"}}, formHeader)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Key &#34;Renamed&#34; updated.") {
		t.Errorf("form update: status %d, want 200 with a notice", resp.StatusCode)
	}
	if got := e.key(k.ID); got.AllowedOrigins != nil || got.AllowedIPs != nil {
		t.Errorf("after clearing: %q %q, want none", got.AllowedOrigins, got.AllowedIPs)
	}
	if strings.Contains(rowHTML(t, page, k.ID), "Locked to") {
		t.Error("the row still shows a lock")
	}
}

func TestOwnerConsoleCannotChangeAnotherOwnersOrigins(t *testing.T) {
	e := newOwnersEnv(t)
	origins := []string{"https://globex.example"}
	if _, err := e.svc.Update(t.Context(), e.globex.ID, keyservice.KeyUpdate{AllowedOrigins: &origins}); err != nil {
		t.Fatal(err)
	}
	for _, form := range []url.Values{
		{"op": {"update"}, "id": {e.globex.ID}, "name": {e.globex.Name}, "metadata": {""}, "allowed_origins": {"https://evil.example"}, "allowed_ips": {""}},
		{"op": {"update"}, "id": {e.globex.ID}, "name": {e.globex.Name}, "metadata": {""}, "allowed_origins": {""}},
	} {
		resp, body := e.postJSON(form)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d, want 404: %v", resp.StatusCode, body)
		}
		if resp, _ := e.do(http.MethodPost, "/", form, formHeader); resp.StatusCode != http.StatusNotFound {
			t.Errorf("form post: status %d, want 404", resp.StatusCode)
		}
	}
	if got := e.key(e.globex.ID); !slices.Equal(got.AllowedOrigins, origins) {
		t.Errorf("globex's origins are now %q", got.AllowedOrigins)
	}
	// Its own key it can lock.
	resp, body := e.postJSON(url.Values{"op": {"update"}, "id": {e.acme.ID}, "name": {e.acme.Name}, "metadata": {""}, "allowed_origins": {"https://acme.example"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("own key: status %d: %v", resp.StatusCode, body)
	}
	if got := e.key(e.acme.ID); !slices.Equal(got.AllowedOrigins, []string{"https://acme.example"}) || got.Owner != "acme" {
		t.Errorf("acme's key: origins %q, owner %q", got.AllowedOrigins, got.Owner)
	}
}

func TestParseLines(t *testing.T) {
	tests := []struct {
		name, field, text string
		want              []string
		wantErr           string
	}{
		{"empty", "allowed_origins", "", []string{}, ""},
		{"blank lines", "allowed_ips", "\n \r\n", []string{}, ""},
		{"origins normalised, duplicates kept once", "allowed_origins", "HTTPS://Example.COM:443\r\nhttp://example.com:80\nhttps://example.com\nhttp://x.test:*", []string{"https://example.com", "http://example.com", "http://x.test:*"}, ""},
		{"ips normalised", "allowed_ips", "10.0.0.0/8\n192.0.2.1/32\n2001:DB8::1", []string{"10.0.0.0/8", "192.0.2.1", "2001:db8::1"}, ""},
		{"prefix with host bits", "allowed_ips", "10.1.2.3/8", nil, "line 1: "},
		{"ipv6 origin and punycode", "allowed_origins", "https://[2001:DB8::1]:8443\nhttps://bücher.example", []string{"https://[2001:db8::1]:8443", "https://xn--bcher-kva.example"}, ""},
		{"origin with userinfo", "allowed_origins", "https://u@example.com", nil, "line 1: "},
		{"ip with zone", "allowed_ips", "\nfe80::1%eth0", nil, "line 2: "},
		{"long entry is cut", "allowed_ips", strings.Repeat("9", 40), nil, `"999999999999"…`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := policy.NormalizeOrigin
			if tt.field == "allowed_ips" {
				check = policy.NormalizeIP
			}
			got, err := parseLines(tt.text, tt.field, check)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				if ie, ok := err.(*keyservice.InputError); !ok || ie.Field != tt.field {
					t.Errorf("error %#v is not an input error of %s", err, tt.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || !slices.Equal(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
			if again, _ := parseLines(formatLines(got), tt.field, check); !slices.Equal(again, got) {
				t.Errorf("formatted and parsed again: %q, want %q", again, got)
			}
		})
	}
}
