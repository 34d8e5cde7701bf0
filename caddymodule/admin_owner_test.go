package caddymodule

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
)

// adminCall serves one admin request through serveAPIKeys with svc and
// returns the status and body, or the APIError's status and message.
func adminCall(t *testing.T, svc keyManager, method, path, body string, header http.Header) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	maps.Copy(r.Header, header)
	err := serveAPIKeys(w, r, func() (keyManager, error) { return svc, nil })
	if err != nil {
		apiErr, ok := errors.AsType[caddy.APIError](err)
		if !ok {
			t.Fatalf("%s %s: error %v (%T), want a caddy.APIError", method, path, err, err)
		}
		return apiErr.HTTPStatus, err.Error()
	}
	return w.Code, w.Body.String()
}

func mustDecode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return v
}

func TestAdminCreateRecordsOwnerMetadataAndTheActorHeader(t *testing.T) {
	svc := sqliteService(t)
	status, body := adminCall(t, svc, http.MethodPost, "/apikeys",
		`{"name":"Acme widget","scope":"widget","expires_in":"never","owner":"org_acme","metadata":{"plan":"pro","region":"eu"}}`,
		http.Header{"Keygate-Actor": {"alice@laptop"}})
	if status != http.StatusCreated {
		t.Fatalf("POST = %d %s, want 201", status, body)
	}
	created := mustDecode[secretResponse](t, body)
	k := created.APIKey
	if k.Owner == nil || *k.Owner != "org_acme" || !maps.Equal(k.Metadata, map[string]string{"plan": "pro", "region": "eu"}) ||
		k.CreatedBy != (keyservice.ActorJSON{Type: "admin", ID: "alice@laptop"}) {
		t.Errorf("created key = owner %v, metadata %v, created by %+v; want org_acme, plan/region, admin alice@laptop", k.Owner, k.Metadata, k.CreatedBy)
	}
	if !strings.Contains(body, `"allowed_origins":[],"allowed_ips":[],"rate_limits":[]`) {
		t.Errorf("created key %s: want empty policy lists", body)
	}

	// Without the header, the admin is anonymous; without owner and
	// metadata, the key has none.
	status, body = adminCall(t, svc, http.MethodPost, "/apikeys", `{"name":"Ops","scope":"full","expires_in":"1d"}`, nil)
	if status != http.StatusCreated {
		t.Fatalf("POST = %d %s, want 201", status, body)
	}
	if !strings.Contains(body, `"owner":null,"metadata":{},"created_by":{"type":"admin","id":""}`) {
		t.Errorf("key created without owner or actor: %s", body)
	}

	// GET /apikeys?owner= lists that owner's keys only.
	resp, err := getList(t, svc, "?owner=org_acme")
	if err != nil || len(resp.APIKeys) != 1 || resp.APIKeys[0].ID != k.ID {
		t.Errorf("GET ?owner=org_acme = %d keys, %v; want the Acme key", len(resp.APIKeys), err)
	}
	if resp, err := getList(t, svc, "?owner=org_other"); err != nil || len(resp.APIKeys) != 0 {
		t.Errorf("GET ?owner=org_other = %d keys, %v; want none", len(resp.APIKeys), err)
	}
}

func TestAdminCreateRefusesBadOwnerMetadataAndActorNamingTheField(t *testing.T) {
	svc := sqliteService(t)
	const valid = `"name":"x","scope":"full","expires_in":"1d"`
	for _, tc := range []struct {
		name, body string
		header     http.Header
		wantErr    string
	}{
		{"empty owner", `{` + valid + `,"owner":""}`, nil, "owner: must not be empty (leave it out for no owner)"},
		{"owner with a slash", `{` + valid + `,"owner":"org/a"}`, nil, "owner: must hold only A-Z a-z 0-9 . _ : @ -"},
		{"owner not a string", `{` + valid + `,"owner":7}`, nil, "owner: must be a string"},
		{"metadata not an object", `{` + valid + `,"metadata":"plan=pro"}`, nil, "metadata: must be a JSON object of strings"},
		{"metadata value not a string", `{` + valid + `,"metadata":{"seats":3}}`, nil, `metadata: the value of "seats" must be a string`},
		{"metadata name in upper case", `{` + valid + `,"metadata":{"Plan":"pro"}}`, nil, "metadata: names must match [a-z][a-z0-9_]{0,31}"},
		{"metadata value too long", `{` + valid + `,"metadata":{"plan":"` + strings.Repeat("x", 257) + `"}}`, nil, "metadata: value of plan must be at most 256 bytes"},
		{"rate limit without a window count", `{` + valid + `,"rate_limits":["10/s"]}`, nil, `rate_limits[0]: "10/s" must be N/WINDOW`},
		{"rate limit of 0", `{` + valid + `,"rate_limits":["100/1m","0/1d"]}`, nil, `rate_limits[1]: "0/1d": N must be from 1 to 1000000000`},
		{"rate limit window of 31d", `{` + valid + `,"rate_limits":["1/31d"]}`, nil, `rate_limits[0]: "1/31d": WINDOW must be from 1s to 30d`},
		{"five rate limits", `{` + valid + `,"rate_limits":["1/1s","2/2s","3/3s","4/4s","5/5s"]}`, nil, `rate_limits: must hold at most 4 limits, not 5`},
		{"rate limits not a list", `{` + valid + `,"rate_limits":"10/1s"}`, nil, `rate_limits`},
		{"actor header of 129 bytes", `{` + valid + `}`, http.Header{"Keygate-Actor": {strings.Repeat("a", 129)}}, "Keygate-Actor header: must be at most 128 bytes, not 129"},
		{"actor header with a control", `{` + valid + `}`, http.Header{"Keygate-Actor": {"a\x7fb"}}, "Keygate-Actor header: must not hold control characters (U+007F)"},
		{"actor header of invalid UTF-8", `{` + valid + `}`, http.Header{"Keygate-Actor": {"a\xffb"}}, "Keygate-Actor header: must be valid UTF-8"},
		{"actor header twice", `{` + valid + `}`, http.Header{"Keygate-Actor": {"a", "b"}}, "Keygate-Actor header: give it once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, msg := adminCall(t, svc, http.MethodPost, "/apikeys", tc.body, tc.header)
			if status != http.StatusBadRequest || !strings.Contains(msg, tc.wantErr) {
				t.Errorf("POST = %d %q, want 400 holding %q", status, msg, tc.wantErr)
			}
		})
	}
	if resp, err := getList(t, svc, ""); err != nil || len(resp.APIKeys) != 0 {
		t.Errorf("after only bad requests: %d keys, %v; want none", len(resp.APIKeys), err)
	}
}

func TestAdminPatchChangesNameMetadataAndPolicyListsOnly(t *testing.T) {
	svc := sqliteService(t)
	_, k, err := svc.Create(t.Context(), keyservice.NewKey{Name: "old", Scope: "full", ExpiresIn: "1d", Owner: "org_a",
		Metadata: map[string]string{"a": "1", "b": "2"}, CreatedBy: apikey.Actor{Type: apikey.ActorAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	path := "/apikeys/" + k.ID
	patch := func(body string) keyservice.KeyJSON {
		t.Helper()
		status, got := adminCall(t, svc, http.MethodPatch, path, body, nil)
		if status != http.StatusOK {
			t.Fatalf("PATCH %s = %d %s, want 200", body, status, got)
		}
		return mustDecode[keyservice.KeyJSON](t, got)
	}
	if got := patch(`{"name":"new"}`); got.Name != "new" || !maps.Equal(got.Metadata, map[string]string{"a": "1", "b": "2"}) {
		t.Errorf("after renaming: %q %v; want new, metadata kept", got.Name, got.Metadata)
	}
	if got := patch(`{"metadata":{"c":"3"}}`); got.Name != "new" || !maps.Equal(got.Metadata, map[string]string{"c": "3"}) {
		t.Errorf("after replacing metadata: %q %v; want new, c=3 only", got.Name, got.Metadata)
	}
	if got := patch(`{"metadata":{}}`); len(got.Metadata) != 0 {
		t.Errorf("after clearing metadata: %v, want {}", got.Metadata)
	}
	if got := patch(`{"name":null}`); got.Name != "new" {
		t.Errorf("after a null name: %q, want new (null is absent)", got.Name)
	}
	if got := patch(`{}`); got.Name != "new" || got.Owner == nil || *got.Owner != "org_a" || got.Scope != "full" {
		t.Errorf("after an empty patch: %+v, want it unchanged", got)
	}

	for _, tc := range []struct {
		name, body, wantErr string
	}{
		{"scope", `{"scope":"widget"}`, "scope: cannot be changed: create a new key"},
		{"owner", `{"owner":"org_b"}`, "owner: cannot be changed: create a new key"},
		{"expires_in", `{"expires_in":"1y"}`, "expires_in: cannot be changed: rotate the key"},
		{"expires_at", `{"expires_at":"2030-01-01T00:00:00Z"}`, "expires_at: cannot be changed: rotate the key"},
		{"name with the scope", `{"name":"x","scope":"widget"}`, "scope: cannot be changed"},
		{"bad rate limit", `{"rate_limits":["10/1w"]}`, `rate_limits[0]: "10/1w": the window's unit must be s, m, h or d`},
		{"two rate limits of one window", `{"rate_limits":["10/1h","20/60m"]}`, `rate_limits[1]: "20/60m" has the window of entry 0 (1h)`},
		{"secret", `{"secret":"dk_x"}`, `unknown field "secret"`},
		{"empty name", `{"name":""}`, "name: must not be empty"},
		{"name with a newline", `{"name":"a\nb"}`, "name: must not hold control characters"},
		{"bad metadata name", `{"metadata":{"1a":"x"}}`, "metadata: names must match"},
		{"metadata of the wrong type", `{"metadata":[]}`, "metadata: must be a JSON object of strings"},
		{"empty body", ``, "request body is empty: send a JSON object with name, metadata, allowed_origins, allowed_ips and rate_limits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, msg := adminCall(t, svc, http.MethodPatch, path, tc.body, nil)
			if status != http.StatusBadRequest || !strings.Contains(msg, tc.wantErr) {
				t.Errorf("PATCH %s = %d %q, want 400 holding %q", tc.body, status, msg, tc.wantErr)
			}
		})
	}
	if got, _ := svc.Get(t.Context(), k.ID); got.Name != "new" || got.Scope.String() != "full" || got.Owner != "org_a" {
		t.Errorf("after refused patches: %+v, want it unchanged", got)
	}

	// Unknown and revoked keys.
	if status, msg := adminCall(t, svc, http.MethodPatch, "/apikeys/key_0000000000000000000000", `{"name":"x"}`, nil); status != http.StatusNotFound {
		t.Errorf("PATCH unknown key = %d %q, want 404", status, msg)
	}
	if _, err := svc.Revoke(t.Context(), k.ID); err != nil {
		t.Fatal(err)
	}
	if status, msg := adminCall(t, svc, http.MethodPatch, path, `{"name":"x"}`, nil); status != http.StatusConflict || !strings.Contains(msg, "is revoked") {
		t.Errorf("PATCH revoked key = %d %q, want 409 saying it is revoked", status, msg)
	}
}
