package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/sqlite"
)

const validID = "key_0123456789ABCDEFabcdef"

// noService is a lookup for requests that must be answered before the key
// service is needed.
func noService(t *testing.T) func() (keyManager, error) {
	return func() (keyManager, error) {
		t.Helper()
		t.Error("the request reached the key service")
		return nil, errors.New("no service in this test")
	}
}

// untouchable is a key service that fails the test when used: the request
// had to be refused before.
type untouchable struct{ t *testing.T }

func (u untouchable) fail() error {
	u.t.Helper()
	u.t.Error("the request reached the key service")
	return errors.New("untouchable")
}
func (u untouchable) Create(context.Context, keyservice.NewKey) (string, apikey.Key, error) {
	return "", apikey.Key{}, u.fail()
}
func (u untouchable) List(context.Context, keyservice.ListOptions) (keyservice.Page, error) {
	return keyservice.Page{}, u.fail()
}
func (u untouchable) Get(context.Context, string) (apikey.Key, error) { return apikey.Key{}, u.fail() }
func (u untouchable) Revoke(context.Context, string) (apikey.Key, error) {
	return apikey.Key{}, u.fail()
}
func (u untouchable) Rotate(context.Context, string, string) (string, apikey.Key, apikey.Key, error) {
	return "", apikey.Key{}, apikey.Key{}, u.fail()
}
func (u untouchable) Update(context.Context, string, keyservice.KeyUpdate) (apikey.Key, error) {
	return apikey.Key{}, u.fail()
}
func (u untouchable) KeyUsage(context.Context, string, string, string) (keyservice.UsageSeries, error) {
	return keyservice.UsageSeries{}, u.fail()
}
func (u untouchable) Usage(context.Context, string, string) ([]keyservice.KeyUsageJSON, error) {
	return nil, u.fail()
}
func (u untouchable) Audit(context.Context, keyservice.AuditOptions) (keyservice.AuditPage, error) {
	return keyservice.AuditPage{}, u.fail()
}
func (u untouchable) Now() time.Time { return time.Time{} }
func (u untouchable) Confirm(context.Context) (keyservice.Propagation, error) {
	return keyservice.Propagation{}, u.fail()
}
func (u untouchable) Instances(context.Context) (keyservice.InstancesJSON, error) {
	return keyservice.InstancesJSON{}, u.fail()
}

func TestServeAPIKeysRejectsBadRequestsBeforeTheService(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantAllow  string
		wantErr    string
	}{
		{"put on the collection", http.MethodPut, "/apikeys", 405, "GET, POST", "method"},
		{"delete on the collection", http.MethodDelete, "/apikeys/", 405, "GET, POST", "method"},
		{"post on a key", http.MethodPost, "/apikeys/" + validID, 405, "GET, PATCH, DELETE", "method"},
		{"put on a key", http.MethodPut, "/apikeys/" + validID, 405, "GET, PATCH, DELETE", "method"},
		{"get on rotate", http.MethodGet, "/apikeys/" + validID + "/rotate", 405, "POST", "method"},
		{"unknown action", http.MethodPost, "/apikeys/" + validID + "/revoke", 404, "", "resource not found"},
		{"trailing slash after the ID", http.MethodGet, "/apikeys/" + validID + "/", 404, "", "resource not found"},
		{"deeper path", http.MethodPost, "/apikeys/" + validID + "/rotate/x", 404, "", "resource not found"},
		{"malformed ID", http.MethodGet, "/apikeys/key_short", 400, "", "malformed key ID"},
		{"empty ID before rotate", http.MethodPost, "/apikeys//rotate", 400, "", "malformed key ID"},
		{"a secret in place of the ID", http.MethodDelete, "/apikeys/dk_0123456789abcdefghijABCDEFGHIJ01abcdef", 400, "", "malformed key ID"},
		{"ID with a bad character", http.MethodGet, "/apikeys/key_0123456789ABCDEFabcde-", 400, "", "malformed key ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(tt.method, tt.path, nil)
			err := serveAPIKeys(w, r, noService(t))
			apiErr, ok := errors.AsType[caddy.APIError](err)
			if !ok {
				t.Fatalf("got error %v (%T), want a caddy.APIError", err, err)
			}
			if apiErr.HTTPStatus != tt.wantStatus {
				t.Errorf("got status %d, want %d (%v)", apiErr.HTTPStatus, tt.wantStatus, err)
			}
			if got := w.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("got Allow %q, want %q", got, tt.wantAllow)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %q, want it to hold %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "dk_") {
				t.Errorf("error %q echoes the path", err)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("got Cache-Control %q, want no-store", got)
			}
		})
	}
}

func TestServeAPIKeysRejectsBadListQueries(t *testing.T) {
	tests := []struct {
		name    string
		query   string
		wantErr string
	}{
		{"unknown status", "?status=gone", `status: unknown status "gone"`},
		{"status twice", "?status=active&status=revoked", "status: give it once"},
		{"unknown parameter", "?state=active", `unknown query parameter "state"`},
		{"long unknown status is cut", "?status=dk_0123456789abcdefghij", `"dk_012345678"…`},
		{"limit zero", "?limit=0", "limit: must be a whole number from 1 to 1000"},
		{"negative limit", "?limit=-5", "limit: must be a whole number from 1 to 1000"},
		{"limit above 1000", "?limit=1001", "limit: must be a whole number from 1 to 1000"},
		{"limit not a number", "?limit=ten", `limit: must be a whole number from 1 to 1000, not "ten"`},
		{"empty limit", "?limit=", "limit: must be a whole number"},
		{"huge limit", "?limit=99999999999999999999999", "limit: must be a whole number"},
		{"limit twice", "?limit=1&limit=2", "limit: give it once"},
		{"cursor twice", "?cursor=a&cursor=b", "cursor: give it once"},
		{"q twice", "?q=a&q=b", "q: give it once"},
		{"empty cursor", "?cursor=", "cursor: is empty"},
		{"empty owner", "?owner=", "owner: is empty: leave it out"},
		{"owner twice", "?owner=a&owner=b", "owner: give it once"},
		{"owner with a space", "?owner=org+a", "owner: must hold only A-Z a-z 0-9 . _ : @ -"},
		{"owner of 129 characters", "?owner=" + strings.Repeat("o", 129), "owner: must be at most 128 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, "/apikeys"+tt.query, nil)
			err := withService(w, r, func() (keyManager, error) { return untouchable{t}, nil }, listKeys)
			apiErr, ok := errors.AsType[caddy.APIError](err)
			if !ok || apiErr.HTTPStatus != http.StatusBadRequest {
				t.Fatalf("got %v, want a 400 APIError", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %q, want it to hold %q", err, tt.wantErr)
			}
		})
	}
}

// newListService returns a key service over a fresh SQLite store.
func newListService(t *testing.T) *keyservice.Service {
	t.Helper()
	store, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	format, err := apikey.NewFormat("dk")
	if err != nil {
		t.Fatal(err)
	}
	return keyservice.New(store, format, nil, nil, nil)
}

// getList serves GET /apikeys with query through listKeys.
func getList(t *testing.T, svc keyManager, query string) (listResponse, error) {
	t.Helper()
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/apikeys"+query, nil)
	err := withService(w, r, func() (keyManager, error) { return svc, nil }, listKeys)
	var resp listResponse
	if err == nil {
		if w.Code != http.StatusOK {
			t.Fatalf("GET /apikeys%s: status %d", query, w.Code)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatalf("GET /apikeys%s: %v: %s", query, err, w.Body)
		}
		if !strings.Contains(w.Body.String(), `"next_cursor":`) {
			t.Errorf("GET /apikeys%s: no next_cursor member in %s", query, w.Body)
		}
	}
	return resp, err
}

func TestListKeysPagesWithLimitAndCursor(t *testing.T) {
	svc := newListService(t)
	var want []string
	for i := range 7 {
		_, k, err := svc.Create(t.Context(), keyservice.NewKey{Name: fmt.Sprintf("Key %d", i), Scope: "full", ExpiresIn: "never", CreatedBy: apikey.Actor{Type: apikey.ActorAdmin}})
		if err != nil {
			t.Fatal(err)
		}
		want = append([]string{k.ID}, want...)
	}
	var got []string
	query := "?limit=3"
	for pages := 1; ; pages++ {
		resp, err := getList(t, svc, query)
		if err != nil {
			t.Fatalf("GET /apikeys%s = %v", query, err)
		}
		if len(resp.APIKeys) > 3 {
			t.Fatalf("GET /apikeys%s returned %d keys", query, len(resp.APIKeys))
		}
		for _, k := range resp.APIKeys {
			got = append(got, k.ID)
		}
		if resp.NextCursor == nil {
			if pages != 3 {
				t.Errorf("%d pages, want 3", pages)
			}
			break
		}
		query = "?limit=3&cursor=" + url.QueryEscape(*resp.NextCursor)
	}
	// Keys made within a microsecond tie on created_at: compare as sets,
	// the store's order is checked by its conformance suite.
	if len(got) != len(want) || !sameSet(got, want) {
		t.Errorf("pages = %v, want every key once: %v", got, want)
	}
	resp, err := getList(t, svc, "")
	if err != nil || len(resp.APIKeys) != 7 || resp.NextCursor != nil {
		t.Errorf("without a limit: %d keys, next %v, %v; want 7, null", len(resp.APIKeys), resp.NextCursor, err)
	}
	resp, err = getList(t, svc, "?q="+want[2])
	if err != nil || len(resp.APIKeys) != 1 || resp.APIKeys[0].ID != want[2] {
		t.Errorf("q=<an ID> = %v, %v; want that key", resp.APIKeys, err)
	}
	resp, err = getList(t, svc, "?q=KEY+4&status=active&limit=1000")
	if err != nil || len(resp.APIKeys) != 1 || resp.APIKeys[0].Name != "Key 4" {
		t.Errorf("q=KEY 4 = %v, %v; want key 4", resp.APIKeys, err)
	}
}

func TestListKeysRefusesBadCursorAndQueryFromTheService(t *testing.T) {
	svc := newListService(t)
	secret := "dk_0123456789abcdefghijABCDEFGHIJ01abcdef"
	for _, tt := range []struct{ name, query, wantErr string }{
		{"a secret as cursor", "?cursor=" + secret, "cursor: is not a cursor from a previous page"},
		{"a short cursor", "?cursor=abc", "cursor: is not a cursor from a previous page"},
		{"q of 201 characters", "?q=" + strings.Repeat("x", 201), "q: must be at most 200 characters"},
		{"q with NUL", "?q=a%00b", "q: must not hold control characters"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := getList(t, svc, tt.query)
			apiErr, ok := errors.AsType[caddy.APIError](err)
			if !ok || apiErr.HTTPStatus != http.StatusBadRequest {
				t.Fatalf("got %v, want a 400 APIError", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %q, want it to hold %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secret[:13]) {
				t.Errorf("error %q echoes more than 12 bytes of the cursor", err)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestDecodeObject(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		optional bool
		want     createRequest
		wantSet  bool // whether owner was set
		wantCode int
		wantErr  string
	}{
		{name: "all fields", body: `{"name":"CI","scope":"full","expires_in":"1d","owner":"org_a","metadata":{"plan":"pro"}}`,
			want: createRequest{Name: "CI", Scope: "full", ExpiresIn: "1d", Owner: "org_a", Metadata: map[string]string{"plan": "pro"}}, wantSet: true},
		{name: "arrays of strings", body: `{"allowed_origins":["https://a.example","b"],"allowed_ips":[]}`,
			want: createRequest{AllowedOrigins: []string{"https://a.example", "b"}, AllowedIPs: []string{}}},
		{name: "null array is absent", body: `{"allowed_origins":null}`},
		{name: "string for an array", body: `{"allowed_origins":"https://a.example"}`, wantCode: 400,
			wantErr: `allowed_origins: must be a JSON array of strings, such as ["a", "b"]`},
		{name: "object for an array", body: `{"allowed_ips":{"a":"b"}}`, wantCode: 400, wantErr: "allowed_ips: must be a JSON array of strings"},
		{name: "number in an array names its index", body: `{"allowed_ips":["10.0.0.1",7]}`, wantCode: 400, wantErr: "allowed_ips[1]: must be a string"},
		{name: "null in an array names its index", body: `{"allowed_ips":[null]}`, wantCode: 400, wantErr: "allowed_ips[0]: must be a string"},
		{name: "array in an array", body: `{"allowed_origins":["a",["b"]]}`, wantCode: 400, wantErr: "allowed_origins[1]: must be a string"},
		{name: "surrounding white space", body: " \n{\"name\":\"CI\"}\n", want: createRequest{Name: "CI"}},
		{name: "null member is absent", body: `{"name":null,"scope":"widget","owner":null,"metadata":null}`, want: createRequest{Scope: "widget"}},
		{name: "empty owner is set", body: `{"owner":""}`, wantSet: true},
		{name: "empty metadata", body: `{"metadata":{}}`, want: createRequest{Metadata: map[string]string{}}},
		{name: "empty body", body: "", wantCode: 400, wantErr: "request body is empty: send a JSON object with name, scope, expires_in, owner, metadata, allowed_origins and allowed_ips"},
		{name: "empty optional body", body: " ", optional: true},
		{name: "unknown field", body: `{"name":"CI","rate_limits":["10/1s"]}`, wantCode: 400, wantErr: `unknown field "rate_limits": the fields are name, scope, expires_in, owner, metadata, allowed_origins and allowed_ips`},
		{name: "several unknown fields name the first in order", body: `{"zz":1,"aa":2,"mm":3}`, wantCode: 400, wantErr: `unknown field "aa"`},
		{name: "refused field", body: `{"name":"CI","grace":"1h"}`, wantCode: 400, wantErr: `grace: cannot be given here`},
		{name: "field in another case", body: `{"Name":"CI"}`, wantCode: 400, wantErr: `unknown field "Name"`},
		{name: "long unknown field is cut", body: `{"dk_0123456789abcdefghijABCDEFGHIJ":"x"}`, wantCode: 400, wantErr: `unknown field "dk_012345678"…`},
		{name: "number for a string", body: `{"name":42}`, wantCode: 400, wantErr: "name: must be a string"},
		{name: "string for metadata", body: `{"metadata":"plan=pro"}`, wantCode: 400, wantErr: "metadata: must be a JSON object of strings"},
		{name: "array for metadata", body: `{"metadata":["pro"]}`, wantCode: 400, wantErr: "metadata: must be a JSON object of strings"},
		{name: "number in metadata", body: `{"metadata":{"seats":5}}`, wantCode: 400, wantErr: `metadata: the value of "seats" must be a string`},
		{name: "null in metadata", body: `{"metadata":{"plan":null}}`, wantCode: 400, wantErr: `metadata: the value of "plan" must be a string`},
		{name: "object in metadata", body: `{"metadata":{"plan":{"a":"b"}}}`, wantCode: 400, wantErr: `metadata: the value of "plan" must be a string`},
		{name: "long metadata name is cut", body: `{"metadata":{"dk_0123456789abcdefghijABCDEFGHIJ":1}}`, wantCode: 400, wantErr: `the value of "dk_012345678"… must be a string`},
		{name: "array body", body: `["CI"]`, wantCode: 400, wantErr: "request body must be a JSON object with name, scope, expires_in, owner, metadata, allowed_origins and allowed_ips"},
		{name: "string body", body: `"CI"`, wantCode: 400, wantErr: "request body must be a JSON object"},
		{name: "two objects", body: `{"name":"a"}{"name":"b"}`, wantCode: 400, wantErr: "one JSON object and nothing after it"},
		{name: "trailing garbage", body: `{"name":"a"} x`, wantCode: 400, wantErr: "one JSON object and nothing after it"},
		{name: "cut short", body: `{"name":"a"`, wantCode: 400, wantErr: "not valid JSON: it ends too early"},
		{name: "syntax error", body: `{"name":'a'}`, wantCode: 400, wantErr: "not valid JSON at byte"},
		{name: "too large", body: `{"name":"` + strings.Repeat("a", maxAdminBody) + `"}`, wantCode: 413, wantErr: fmt.Sprintf("larger than %d bytes", maxAdminBody)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/apikeys", strings.NewReader(tt.body))
			var (
				got      createRequest
				ownerSet bool
			)
			err := decodeObject(w, r, tt.optional, []bodyField{
				{name: "name", dst: &got.Name},
				{name: "scope", dst: &got.Scope},
				{name: "expires_in", dst: &got.ExpiresIn},
				{name: "owner", dst: &got.Owner, set: &ownerSet},
				{name: "metadata", dst: &got.Metadata},
				{name: "allowed_origins", dst: &got.AllowedOrigins},
				{name: "allowed_ips", dst: &got.AllowedIPs},
				{name: "grace", refused: "cannot be given here"},
			})
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if !reflect.DeepEqual(got, tt.want) || ownerSet != tt.wantSet {
					t.Errorf("got %+v, owner set %v; want %+v, %v", got, ownerSet, tt.want, tt.wantSet)
				}
				return
			}
			apiErr, ok := errors.AsType[caddy.APIError](err)
			if !ok {
				t.Fatalf("got error %v (%T), want a caddy.APIError", err, err)
			}
			if apiErr.HTTPStatus != tt.wantCode {
				t.Errorf("got status %d, want %d", apiErr.HTTPStatus, tt.wantCode)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %q, want it to hold %q", err, tt.wantErr)
			}
		})
	}
}

// failing is a key service whose every call fails with err.
type failing struct{ err error }

func (f failing) KeyUsage(context.Context, string, string, string) (keyservice.UsageSeries, error) {
	return keyservice.UsageSeries{}, f.err
}
func (f failing) Usage(context.Context, string, string) ([]keyservice.KeyUsageJSON, error) {
	return nil, f.err
}
func (f failing) Audit(context.Context, keyservice.AuditOptions) (keyservice.AuditPage, error) {
	return keyservice.AuditPage{}, f.err
}

func (f failing) Create(context.Context, keyservice.NewKey) (string, apikey.Key, error) {
	return "", apikey.Key{}, f.err
}
func (f failing) Update(context.Context, string, keyservice.KeyUpdate) (apikey.Key, error) {
	return apikey.Key{}, f.err
}
func (f failing) List(context.Context, keyservice.ListOptions) (keyservice.Page, error) {
	return keyservice.Page{}, f.err
}
func (f failing) Get(context.Context, string) (apikey.Key, error)    { return apikey.Key{}, f.err }
func (f failing) Revoke(context.Context, string) (apikey.Key, error) { return apikey.Key{}, f.err }
func (f failing) Rotate(context.Context, string, string) (string, apikey.Key, apikey.Key, error) {
	return "", apikey.Key{}, apikey.Key{}, f.err
}
func (f failing) Now() time.Time { return time.Time{} }
func (f failing) Confirm(context.Context) (keyservice.Propagation, error) {
	return keyservice.Propagation{}, f.err
}
func (f failing) Instances(context.Context) (keyservice.InstancesJSON, error) {
	return keyservice.InstancesJSON{}, f.err
}

func TestServiceErrorStatuses(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantErr    string
		wantRetry  string
	}{
		{"input error names the field", &keyservice.InputError{Field: "name", Message: "must not be empty"}, 400, "name: must not be empty", ""},
		{"wrapped input error", fmt.Errorf("creating: %w", &keyservice.InputError{Field: "grace", Message: "too long"}), 400, "grace: too long", ""},
		{"not found", fmt.Errorf("getting key: %w", keystore.ErrNotFound), 404, "no API key has ID " + validID, ""},
		{"revoked", fmt.Errorf("rotating key: %w", keystore.ErrRevoked), 409, "is revoked: a revoked key cannot be rotated", ""},
		{"replaced", fmt.Errorf("rotating key: %w", keystore.ErrReplaced), 409, "was already replaced by a rotation", ""},
		{"expired", fmt.Errorf("rotating key: %w", keystore.ErrExpired), 409, "is expired: an expired key cannot be rotated", ""},
		{"store down", errors.New("dial tcp 127.0.0.1:5432: connection refused"), 503, "key store unavailable: dial tcp", "1"},
		{"store closed", keystore.ErrClosed, 503, "key store unavailable", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/apikeys/"+validID+"/rotate", nil)
			err := serveAPIKeys(w, r, func() (keyManager, error) { return failing{tt.err}, nil })
			apiErr, ok := errors.AsType[caddy.APIError](err)
			if !ok {
				t.Fatalf("got %T, want a caddy.APIError", err)
			}
			if apiErr.HTTPStatus != tt.wantStatus {
				t.Errorf("got status %d, want %d", apiErr.HTTPStatus, tt.wantStatus)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %q, want it to hold %q", err, tt.wantErr)
			}
			if got := w.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("got Retry-After %q, want %q", got, tt.wantRetry)
			}
		})
	}
}

func TestRunningKeyServiceWithoutKeygateConfigured(t *testing.T) {
	// No config runs in this test binary, so the active context has no
	// apikeys app.
	_, err := runningKeyService()
	apiErr, ok := errors.AsType[caddy.APIError](err)
	if !ok {
		t.Fatalf("got %v, want a caddy.APIError", err)
	}
	if apiErr.HTTPStatus != http.StatusServiceUnavailable {
		t.Errorf("got status %d, want 503", apiErr.HTTPStatus)
	}
	if want := "keygate is not configured in the running config"; !strings.Contains(err.Error(), want) {
		t.Errorf("got error %q, want it to hold %q", err, want)
	}
}

func TestAdminAPIRoutes(t *testing.T) {
	var got []string
	for _, r := range (adminAPI{}).Routes() {
		got = append(got, r.Pattern)
	}
	if want := []string{"/apikeys", "/apikeys/", "/apikeys/backup"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got routes %v, want %v", got, want)
	}
	if id := (adminAPI{}).CaddyModule().ID; id != "admin.api.apikeys" {
		t.Errorf("got module ID %q, want admin.api.apikeys", id)
	}
}

func TestFieldList(t *testing.T) {
	tests := []struct {
		fields []string
		want   string
	}{
		{[]string{"grace"}, "grace"},
		{[]string{"scope", "name"}, "scope and name"},
		{[]string{"name", "scope", "expires_in"}, "name, scope and expires_in"},
		{[]string{"name", "-scope", "metadata"}, "name and metadata"},
	}
	for _, tt := range tests {
		var m []bodyField
		for _, f := range tt.fields {
			if name, refused := strings.CutPrefix(f, "-"); refused {
				m = append(m, bodyField{name: name, refused: "no"})
			} else {
				m = append(m, bodyField{name: f, dst: new(string)})
			}
		}
		if got := fieldList(m); got != tt.want {
			t.Errorf("fieldList(%v) = %q, want %q", tt.fields, got, tt.want)
		}
	}
}

// sqliteService is a key service over a real SQLite store in a temporary
// directory.
func sqliteService(t *testing.T) *keyservice.Service {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	format, err := apikey.NewFormat("dk")
	if err != nil {
		t.Fatal(err)
	}
	return keyservice.New(store, format, nil, nil, nil)
}

func TestAdminNeverEchoesAPastedKeyWhole(t *testing.T) {
	svc := sqliteService(t)
	secret, _, err := svc.Create(context.Background(), adminKey("real", "full", "1h"))
	if err != nil {
		t.Fatal(err)
	}
	lookup := func() (keyManager, error) { return svc, nil }
	tests := []struct {
		name   string
		method string
		target string
		body   string
		field  string
	}{
		{"key as scope", http.MethodPost, "/apikeys", `{"name":"x","scope":"` + secret + `","expires_in":"1h"}`, "scope: "},
		{"key as expires_in", http.MethodPost, "/apikeys", `{"name":"x","scope":"full","expires_in":"` + secret + `"}`, "expires_in: "},
		{"key as status", http.MethodGet, "/apikeys?status=" + secret, "", "status: "},
		{"key as a field name", http.MethodPost, "/apikeys", `{"` + secret + `":"x"}`, "unknown field "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			err := serveAPIKeys(w, r, lookup)
			apiErr, ok := errors.AsType[caddy.APIError](err)
			if !ok || apiErr.HTTPStatus != http.StatusBadRequest {
				t.Fatalf("got %v, want a 400 APIError", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.field) || !strings.Contains(msg, `"dk_`) {
				t.Errorf("got error %q, want it to name %q and quote the start of the value", msg, tt.field)
			}
			if strings.Contains(msg, secret[:apikey.MaxEcho+1]) {
				t.Errorf("got error %q: it echoes more than %d bytes of the key", msg, apikey.MaxEcho)
			}
		})
	}
}

func TestAdmin503AnswersCarryRetryAfter(t *testing.T) {
	tests := []struct {
		name    string
		lookup  func() (keyManager, error)
		wantErr string
	}{
		// No config runs in this test binary.
		{"keygate not configured", runningKeyService, "keygate is not configured"},
		{"store not open", func() (keyManager, error) { return keyServiceOf(&App{}, nil) }, "key store is not open"},
		{"app failed", func() (keyManager, error) { return keyServiceOf(nil, errors.New("boom")) }, "keygate is not running"},
	}
	for _, tt := range tests {
		for _, req := range []struct{ method, target string }{
			{http.MethodGet, "/apikeys"},
			{http.MethodPost, "/apikeys"},
			{http.MethodDelete, "/apikeys/" + validID},
		} {
			t.Run(tt.name+" "+req.method+" "+req.target, func(t *testing.T) {
				w := httptest.NewRecorder()
				err := serveAPIKeys(w, httptest.NewRequest(req.method, req.target, strings.NewReader("{}")), tt.lookup)
				apiErr, ok := errors.AsType[caddy.APIError](err)
				if !ok || apiErr.HTTPStatus != http.StatusServiceUnavailable {
					t.Fatalf("got %v, want a 503 APIError", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got error %q, want it to hold %q", err, tt.wantErr)
				}
				if got := w.Header().Get("Retry-After"); got != "1" {
					t.Errorf("got Retry-After %q, want 1", got)
				}
			})
		}
	}
}
