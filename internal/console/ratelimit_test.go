package console

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestCreateAndEditRateLimits(t *testing.T) {
	e := newEnv(t, envOptions{})
	resp, body := e.postJSON(url.Values{"op": {"create"}, "name": {"Limited"}, "scope": {"routine"}, "expires_in": {"1y"},
		"rate_limits": {" 10/1s \n\n600/60m\r\n"}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d, want 201: %v", resp.StatusCode, body)
	}
	id := body["api_key"].(map[string]any)["id"].(string)
	if got, want := e.key(id).RateLimits, []string{"10/1s", "600/1h"}; !slices.Equal(got, want) {
		t.Fatalf("stored rate limits %q, want %q (normalised)", got, want)
	}
	// The edit link carries them; the edit dialog without the script
	// shows them in its field.
	_, page := e.get("/")
	if row := rowHTML(t, page, id); !strings.Contains(row, "data-rate-limits=\"10/1s\n600/1h\"") {
		t.Errorf("row lacks the limits: %s", row)
	}
	_, page = e.get("/?dialog=edit&id=" + id)
	if !strings.Contains(page, `name="rate_limits"`) || !strings.Contains(page, ">10/1s\n600/1h</textarea>") {
		t.Errorf("edit dialog lacks the limits field with the key's limits")
	}
	_, page = e.get("/?dialog=create")
	if !strings.Contains(page, `id="create-rate-limits" name="rate_limits"`) {
		t.Errorf("create dialog lacks the rate limits field")
	}

	// Edit: replaced whole, then cleared.
	form := url.Values{"op": {"update"}, "id": {id}, "name": {"Limited"}, "metadata": {""}, "rate_limits": {"5/1m"}}
	if resp, body := e.postJSON(form); resp.StatusCode != http.StatusOK {
		t.Fatalf("update: %d %v", resp.StatusCode, body)
	}
	if got := e.key(id).RateLimits; !slices.Equal(got, []string{"5/1m"}) {
		t.Errorf("after update: %q", got)
	}
	form.Set("rate_limits", "")
	e.postJSON(form)
	if got := e.key(id).RateLimits; got != nil {
		t.Errorf("after clearing: %q, want none", got)
	}
}

func TestRateLimitsFieldRefusesBadLimits(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.create("Target", "full", "1y")
	for _, tt := range []struct{ name, text, want string }{
		{"no window count", "10/m", "Rate limits: line 1: "},
		{"second line bad", "10/1s\n0/1m", "Rate limits: line 2: "},
		{"window too long", "1/31d", "Rate limits: line 1: "},
		{"five limits", "1/1s\n1/2s\n1/3s\n1/4s\n1/5s", "Rate limits must hold at most 4 limits"},
		{"same window twice", "1/1m\n2/60s", "Rate limits: limit 2: "},
	} {
		for _, op := range []string{"create", "update"} {
			t.Run(tt.name+" "+op, func(t *testing.T) {
				form := url.Values{"op": {op}, "name": {"X"}, "scope": {"full"}, "expires_in": {"1y"}, "metadata": {""}, "rate_limits": {tt.text}}
				if op == "update" {
					form.Set("id", k.ID)
				}
				resp, body := e.postJSON(form)
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("status %d, want 400: %v", resp.StatusCode, body)
				}
				errObj := body["error"].(map[string]any)
				if errObj["field"] != "rate_limits" || !strings.HasPrefix(errObj["message"].(string), tt.want) {
					t.Errorf("error %v, want field rate_limits, message starting %q", errObj, tt.want)
				}
			})
		}
	}
	if got := e.key(k.ID).RateLimits; got != nil {
		t.Errorf("a refused update changed the key: %q", got)
	}
}
