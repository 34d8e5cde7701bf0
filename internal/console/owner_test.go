package console

import (
	"html"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
)

// ownersEnv is an owner's console (acme's, as alice) over a store that
// also holds a key of globex and one of the operator's.
type ownersEnv struct {
	*env
	acme, globex, operators apikey.Key
}

func newOwnersEnv(t *testing.T) *ownersEnv {
	e := newEnv(t, envOptions{owned: true})
	e.owner = "acme"
	o := &ownersEnv{env: e}
	_, o.operators = e.createFor("", "Operator job", apikey.Actor{Type: "admin", ID: "ops@gw1"})
	e.clock.Add(time.Second)
	_, o.globex = e.createFor("globex", "Globex backend", apikey.Actor{Type: "console", ID: "gina"})
	e.clock.Add(time.Second)
	_, o.acme = e.createFor("acme", "Acme backend", apikey.Actor{Type: "console", ID: "alice"})
	return o
}

func TestOwnerConsoleListsOnlyItsOwnersKeys(t *testing.T) {
	e := newOwnersEnv(t)
	tests := []struct {
		name, query string
		want        []string
	}{
		{"the list", "/?status=all", []string{e.acme.ID}},
		{"search by another owner's key ID", "/?status=all&q=" + e.globex.ID, nil},
		{"search by another owner's key name", "/?status=all&q=Globex", nil},
		{"search by an operator's key ID", "/?status=all&q=" + e.operators.ID, nil},
		{"an owner filter naming another owner", "/?status=all&owner=globex", []string{e.acme.ID}},
		{"its own key by ID", "/?q=" + e.acme.ID, []string{e.acme.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, page := e.get(tt.query)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			if got := rowIDs(page); !slices.Equal(got, tt.want) {
				t.Errorf("rows = %v, want %v", got, tt.want)
			}
			// The search text itself is repeated ("No key matches"), but
			// nothing of the keys it names.
			for _, leak := range []string{
				`<code class="key-id">` + e.globex.ID, e.globex.Hint, "Globex backend",
				`<code class="key-id">` + e.operators.ID, e.operators.Hint, "Operator job",
			} {
				if strings.Contains(page, leak) {
					t.Errorf("page shows %q of another owner's key", leak)
				}
			}
		})
	}
	_, page := e.get("/")
	if strings.Contains(page, `<th scope="col">Owner</th>`) || strings.Contains(page, `name="owner"`) {
		t.Error("an owner's console shows an owner column or filter")
	}
	if !strings.Contains(page, `Organisation <strong class="org">acme</strong>`) {
		t.Error("page does not say whose keys it shows")
	}
}

// TestOwnerConsoleAnswersAnotherOwnersKeyAsNotFound tries every way to
// reach a key of another owner, or of none: each is answered exactly as a
// key that does not exist, and the key is left as it was.
func TestOwnerConsoleAnswersAnotherOwnersKeyAsNotFound(t *testing.T) {
	e := newOwnersEnv(t)
	const unknown = "key_0000000000000000000000"
	notFound := func(id string) string { return "No API key has ID " + id + "." }
	for _, target := range []struct {
		name string
		key  apikey.Key
	}{{"another owner's key", e.globex}, {"an operator's key", e.operators}} {
		id := target.key.ID
		changes := []url.Values{
			{"op": {"revoke"}, "id": {id}},
			{"op": {"rotate"}, "id": {id}, "grace": {"0s"}},
			{"op": {"update"}, "id": {id}, "name": {"Pwned"}, "metadata": {"x=1"}},
		}
		for _, form := range changes {
			t.Run(target.name+" "+form.Get("op")+" with script", func(t *testing.T) {
				resp, body := e.postJSON(form)
				unk := maps.Clone(form)
				unk.Set("id", unknown)
				uresp, ubody := e.postJSON(unk)
				if resp.StatusCode != http.StatusNotFound || uresp.StatusCode != http.StatusNotFound {
					t.Fatalf("status %d (unknown key: %d), want 404: %v", resp.StatusCode, uresp.StatusCode, body)
				}
				msg := body["error"].(map[string]any)["message"]
				umsg := ubody["error"].(map[string]any)["message"]
				if msg != notFound(id) || umsg != notFound(unknown) {
					t.Errorf("message %q (unknown key: %q), want them alike", msg, umsg)
				}
			})
			t.Run(target.name+" "+form.Get("op")+" without script", func(t *testing.T) {
				resp, page := e.do(http.MethodPost, "/", form, formHeader)
				if resp.StatusCode != http.StatusNotFound {
					t.Fatalf("status %d, want 404", resp.StatusCode)
				}
				if !strings.Contains(page, html.EscapeString(notFound(id))) || strings.Contains(page, target.key.Name) {
					t.Errorf("page does not answer not found, or names the key: %.300s", page)
				}
			})
		}
		for _, dialog := range []string{"revoke", "rotate", "edit"} {
			t.Run(target.name+" by URL ?dialog="+dialog, func(t *testing.T) {
				resp, page := e.get("/?dialog=" + dialog + "&id=" + id)
				uresp, upage := e.get("/?dialog=" + dialog + "&id=" + unknown)
				if resp.StatusCode != http.StatusNotFound || uresp.StatusCode != http.StatusNotFound {
					t.Errorf("status %d (unknown key: %d), want 404", resp.StatusCode, uresp.StatusCode)
				}
				if page != upage {
					t.Error("the page differs from the one for a key that does not exist")
				}
				if !strings.Contains(page, "There is no key with that ID.") || strings.Contains(page, target.key.Name) {
					t.Error("page does not answer not found, or names the key")
				}
			})
		}
		if got := e.key(id); !got.RevokedAt.IsZero() || got.ReplacedBy != "" || got.Name != target.key.Name || len(got.Metadata) != 0 || !got.ExpiresAt.Equal(target.key.ExpiresAt) {
			t.Errorf("%s changed: %+v", target.name, got)
		}
	}
}

// TestOwnerConsoleTakesTheOwnerFromItsConfigurationOnly posts forged
// owner fields: the key made belongs to the console's owner, and an edit
// cannot move a key to another owner.
func TestOwnerConsoleTakesTheOwnerFromItsConfigurationOnly(t *testing.T) {
	e := newOwnersEnv(t)
	resp, body := e.postJSON(url.Values{
		"op": {"create"}, "name": {"Forged"}, "scope": {"full"}, "expires_in": {"1d"},
		"owner": {"globex"}, "created_by": {"mallory"}, "metadata": {"plan=pro"},
	})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: status %d, want 201: %v", resp.StatusCode, body)
	}
	id := body["api_key"].(map[string]any)["id"].(string)
	k := e.key(id)
	if k.Owner != "acme" || k.CreatedBy != (apikey.Actor{Type: "console", ID: "alice"}) || k.Metadata["plan"] != "pro" {
		t.Errorf("created key has owner %q, created_by %+v, metadata %v; want acme, console alice, plan=pro", k.Owner, k.CreatedBy, k.Metadata)
	}
	if got := body["api_key"].(map[string]any)["owner"]; got != "acme" {
		t.Errorf("answer's owner = %v, want acme", got)
	}

	resp, body = e.postJSON(url.Values{"op": {"update"}, "id": {e.acme.ID}, "name": {"Renamed"}, "metadata": {""}, "owner": {"globex"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("update: status %d, want 200: %v", resp.StatusCode, body)
	}
	if got := e.key(e.acme.ID); got.Owner != "acme" || got.Name != "Renamed" {
		t.Errorf("after an update with owner=globex: owner %q, name %q; want acme, Renamed", got.Owner, got.Name)
	}
}

func TestOwnerConsoleRefusesARequestThatNamesNoOwner(t *testing.T) {
	e := newOwnersEnv(t)
	before := len(e.all())
	for _, owner := range []string{"", "acme corp", strings.Repeat("a", 129), "acme/../globex"} {
		e.owner = owner
		resp, page := e.get("/")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "your session does not name one") {
			t.Errorf("owner %q: GET status %d, want 403 with the no-organisation page", owner, resp.StatusCode)
		}
		if strings.Contains(page, e.acme.ID) || strings.Contains(page, e.globex.ID) {
			t.Errorf("owner %q: the 403 page shows a key", owner)
		}
		resp, body := e.postJSON(url.Values{"op": {"create"}, "name": {"X"}, "scope": {"full"}, "expires_in": {"1d"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("owner %q: create status %d, want 403: %v", owner, resp.StatusCode, body)
		}
		resp, _ = e.postJSON(url.Values{"op": {"revoke"}, "id": {e.acme.ID}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("owner %q: revoke status %d, want 403", owner, resp.StatusCode)
		}
	}
	if got := len(e.all()); got != before {
		t.Errorf("%d keys after the refused requests, want %d", got, before)
	}
	if !e.key(e.acme.ID).RevokedAt.IsZero() {
		t.Error("a refused request revoked a key")
	}
}

func TestOperatorConsoleShowsOwnersAndFiltersByOwner(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, ops := e.createFor("", "Operator job", apikey.Actor{Type: "admin"})
	e.clock.Add(time.Second)
	_, globex := e.createFor("globex", "Globex backend", apikey.Actor{Type: "console", ID: "gina"})
	e.clock.Add(time.Second)
	_, acme := e.createFor("acme", "Acme backend", apikey.Actor{Type: "admin", ID: "ops@gw1"})

	_, page := e.get("/")
	if got, want := rowIDs(page), []string{acme.ID, globex.ID, ops.ID}; !slices.Equal(got, want) {
		t.Errorf("rows = %v, want every key %v", got, want)
	}
	for id, want := range map[string][]string{
		acme.ID:   {`<code class="owner">acme</code>`, `<span title="admin">ops@gw1</span>`},
		globex.ID: {`<code class="owner">globex</code>`, `<span title="console">gina</span>`},
		ops.ID:    {`<span class="muted">None</span>`, `<span title="admin">admin</span>`},
	} {
		row := rowHTML(t, page, id)
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("row of %s lacks %q", id, w)
			}
		}
	}
	for _, want := range []string{`<th scope="col">Owner</th>`, `<th scope="col">Created by</th>`, `name="owner"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	tests := []struct {
		query string
		want  []string
	}{
		{"/?owner=acme", []string{acme.ID}},
		{"/?owner=globex&q=Globex", []string{globex.ID}},
		{"/?owner=acme&q=" + globex.ID, nil},
		{"/?owner=nobody", nil},
		{"/?owner=not+an+owner", []string{acme.ID, globex.ID, ops.ID}}, // dropped: no key could match
	}
	for _, tt := range tests {
		_, page := e.get(tt.query)
		if got := rowIDs(page); !slices.Equal(got, tt.want) {
			t.Errorf("%s: rows = %v, want %v", tt.query, got, tt.want)
		}
	}
	// The filter is kept by the page's links, and a console key records
	// its user.
	_, page = e.get("/?owner=acme")
	if !strings.Contains(page, `href="./?dialog=create&amp;owner=acme"`) {
		t.Error("the create link drops the owner filter")
	}
	_, body := e.postJSON(url.Values{"op": {"create"}, "name": {"Made here"}, "scope": {"full"}, "expires_in": {"1d"}, "owner": {"acme"}})
	k := e.key(body["api_key"].(map[string]any)["id"].(string))
	if k.Owner != "" || k.CreatedBy != (apikey.Actor{Type: "console", ID: "alice"}) {
		t.Errorf("operator's console made a key with owner %q, created_by %+v; want none, console alice", k.Owner, k.CreatedBy)
	}
}

func TestEditChangesNameAndMetadataOnly(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.createFor("", "Backend", apikey.Actor{Type: "admin"})

	// The dialog, from a link, shows the current values.
	if _, err := e.svc.Update(t.Context(), k.ID, updateOf("Backend", map[string]string{"plan": "pro", "region": "eu"})); err != nil {
		t.Fatal(err)
	}
	_, page := e.get("/?dialog=edit&id=" + k.ID)
	for _, want := range []string{
		`id="edit-dialog" class="dialog" aria-labelledby="edit-title" aria-describedby="edit-desc" open`,
		`<input type="hidden" name="op" value="update">`,
		`name="name" type="text" value="Backend"`,
		">plan=pro\nregion=eu</textarea>",
		"rotate the key or create a new key",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("edit dialog lacks %q", want)
		}
	}
	if row := rowHTML(t, page, k.ID); !strings.Contains(row, `data-dialog="edit"`) || !strings.Contains(row, `data-metadata="plan=pro`) {
		t.Error("row has no edit link with the key's metadata")
	}

	// With the script: JSON.
	resp, body := e.postJSON(url.Values{"op": {"update"}, "id": {k.ID}, "name": {"Backend v2"}, "metadata": {" plan = team \n\nnote=a=b\r\n"},
		"scope": {"widget"}, "expires_in": {"1h"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("update: status %d, want 200: %v", resp.StatusCode, body)
	}
	got := e.key(k.ID)
	if got.Name != "Backend v2" || !maps.Equal(got.Metadata, map[string]string{"plan": "team", "note": "a=b"}) {
		t.Errorf("after update: name %q, metadata %v", got.Name, got.Metadata)
	}
	if got.Scope != k.Scope || !got.ExpiresAt.Equal(k.ExpiresAt) {
		t.Error("update changed the scope or the expiry")
	}
	if body["api_key"].(map[string]any)["name"] != "Backend v2" {
		t.Errorf("answer %v", body)
	}

	// Without the script: the page, with a notice; empty metadata clears.
	resp, page = e.do(http.MethodPost, "/", url.Values{"op": {"update"}, "id": {k.ID}, "name": {"Backend v3"}, "metadata": {""}}, formHeader)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Key &#34;Backend v3&#34; updated.") {
		t.Errorf("form update: status %d, want 200 with a notice", resp.StatusCode)
	}
	if got := e.key(k.ID); got.Name != "Backend v3" || len(got.Metadata) != 0 {
		t.Errorf("after form update: name %q, metadata %v", got.Name, got.Metadata)
	}
	if !strings.Contains(e.logText(), "api key updated") {
		t.Error("the update is not logged")
	}
}

func TestEditRefusesBadInputNamingTheField(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.createFor("", "Backend", apikey.Actor{Type: "admin"})
	tests := []struct {
		name, newName, metadata string
		wantField, wantMessage  string
	}{
		{"empty name", "", "", "name", "Name"},
		{"line without =", "Backend", "plan=pro\njust text", "metadata", "Metadata: line 2 is not name=value."},
		{"name given twice", "Backend", "plan=pro\nplan=team", "metadata", `Metadata: line 2 names "plan" again.`},
		{"bad metadata name", "Backend", "Plan=pro", "metadata", "Metadata"},
		{"too many entries", "Backend", manyEntries(17), "metadata", "Metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.postJSON(url.Values{"op": {"update"}, "id": {k.ID}, "name": {tt.newName}, "metadata": {tt.metadata}})
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %v", resp.StatusCode, body)
			}
			errObj := body["error"].(map[string]any)
			if errObj["field"] != tt.wantField || !strings.HasPrefix(errObj["message"].(string), tt.wantMessage) {
				t.Errorf("error %v, want field %s, message starting %q", errObj, tt.wantField, tt.wantMessage)
			}
			// Without the script, the dialog comes back with what was
			// typed and the error under its field.
			resp, page := e.do(http.MethodPost, "/", url.Values{"op": {"update"}, "id": {k.ID}, "name": {tt.newName}, "metadata": {tt.metadata}}, formHeader)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, `id="edit-dialog" class="dialog" aria-labelledby="edit-title" aria-describedby="edit-desc" open`) ||
				!strings.Contains(page, `id="edit-`+tt.wantField+`-error" class="field-error" data-error-for="`+tt.wantField+`">`) {
				t.Errorf("form post: status %d, want 400 with the dialog and the field's error", resp.StatusCode)
			}
		})
	}
	if got := e.key(k.ID); got.Name != "Backend" || len(got.Metadata) != 0 {
		t.Errorf("a refused update changed the key: %+v", got)
	}
}

func TestRevokedKeysCannotBeEdited(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.createFor("", "Backend", apikey.Actor{Type: "admin"})
	if _, err := e.svc.Revoke(t.Context(), k.ID); err != nil {
		t.Fatal(err)
	}
	_, page := e.get("/?status=all")
	if strings.Contains(rowHTML(t, page, k.ID), `data-dialog="edit"`) {
		t.Error("a revoked key's row has an edit link")
	}
	resp, page := e.get("/?dialog=edit&id=" + k.ID)
	if resp.StatusCode != http.StatusOK || strings.Contains(page, `aria-describedby="edit-desc" open`) || !strings.Contains(page, "is revoked: it cannot be changed any more.") {
		t.Errorf("?dialog=edit of a revoked key: status %d, the dialog opened or no notice", resp.StatusCode)
	}
	resp, body := e.postJSON(url.Values{"op": {"update"}, "id": {k.ID}, "name": {"Renamed"}, "metadata": {""}})
	if resp.StatusCode != http.StatusConflict || body["error"].(map[string]any)["message"] != "This key is revoked: a revoked key cannot be changed." {
		t.Errorf("update of a revoked key: status %d, want 409 saying it cannot be changed: %v", resp.StatusCode, body)
	}
	if got := e.key(k.ID); got.Name != "Backend" {
		t.Errorf("a revoked key was renamed to %q", got.Name)
	}
}

func TestParseMetadata(t *testing.T) {
	tests := []struct {
		name, text string
		want       map[string]string
		wantErr    string
	}{
		{"empty", "", map[string]string{}, ""},
		{"blank lines", "\n \r\n", map[string]string{}, ""},
		{"entries", "plan=pro\r\nregion = eu-west \n", map[string]string{"plan": "pro", "region": "eu-west"}, ""},
		{"value with =", "q=a=b", map[string]string{"q": "a=b"}, ""},
		{"empty value", "note=", map[string]string{"note": ""}, ""},
		{"no =", "plan", nil, "line 1 is not name=value"},
		{"twice", "a=1\n\na=2", nil, `line 3 names "a" again`},
		{"long name twice is cut", strings.Repeat("n", 40) + "=1\n" + strings.Repeat("n", 40) + "=2", nil, `names "nnnnnnnnnnnn"… again`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMetadata(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if again, _ := parseMetadata(formatMetadata(sortedMetadata(got))); !maps.Equal(again, got) {
				t.Errorf("formatted and parsed again: %v, want %v", again, got)
			}
		})
	}
}

func manyEntries(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("k" + strings.Repeat("x", i) + "=v\n")
	}
	return b.String()
}

func updateOf(name string, metadata map[string]string) keyservice.KeyUpdate {
	return keyservice.KeyUpdate{Name: &name, Metadata: &metadata}
}
