package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
)

// oneKeyStore is the store behind the fuzzed key service: it accepts every
// new key and holds one active key, validID, so that the service's own
// validation runs and valid requests succeed, without disk I/O per input.
// The service calls only the methods it defines.
type oneKeyStore struct{ keystore.Store }

func (oneKeyStore) Create(context.Context, apikey.Key, keystore.Audit) error { return nil }

func (oneKeyStore) Get(_ context.Context, id string) (apikey.Key, error) {
	if id != validID {
		return apikey.Key{}, keystore.ErrNotFound
	}
	return apikey.Key{ID: validID, Name: "fuzzed", Scope: apikey.ScopeFull, Expiry: apikey.ExpiryDay}, nil
}

func (s oneKeyStore) Update(ctx context.Context, id string, p keystore.Patch, _ keystore.Audit) (apikey.Key, error) {
	if err := keystore.CheckPatch(p); err != nil {
		return apikey.Key{}, err
	}
	k, err := s.Get(ctx, id)
	return p.Apply(k), err
}

func (s oneKeyStore) Rotate(ctx context.Context, id string, _ apikey.Key, oldExpiresAt time.Time, _ keystore.Audit) (apikey.Key, error) {
	k, err := s.Get(ctx, id)
	k.ExpiresAt = oldExpiresAt
	return k, err
}

// fuzzTarget is a request whose body is fuzzed.
type fuzzTarget struct{ method, path string }

// String is how a failure names the target.
func (t fuzzTarget) String() string { return t.method + " " + t.path }

// fuzzTargets are the requests whose bodies are fuzzed, chosen by the
// input's first argument: create, rotate and update.
var fuzzTargets = []fuzzTarget{
	{http.MethodPost, "/apikeys"},
	{http.MethodPost, "/apikeys/" + validID + "/rotate"},
	{http.MethodPatch, "/apikeys/" + validID},
}

// serveFuzzed answers body sent to target with the fuzzed service: the
// status and the error message ("" on success).
func serveFuzzed(t testing.TB, svc keyManager, target fuzzTarget, body []byte) (int, string) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(target.method, target.path, bytes.NewReader(body))
	err := serveAPIKeys(w, r, func() (keyManager, error) { return svc, nil })
	if err == nil {
		return w.Code, ""
	}
	apiErr, ok := errors.AsType[caddy.APIError](err)
	if !ok {
		t.Fatalf("%s %q: error %v (%T), want a caddy.APIError", target, body, err, err)
	}
	return apiErr.HTTPStatus, err.Error()
}

// jsonStrings returns every string in body, member names included, as far
// as body is JSON.
func jsonStrings(body []byte) []string {
	var out []string
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		if s, ok := tok.(string); ok {
			out = append(out, s)
		}
	}
}

// FuzzAdminBody sends arbitrary bodies to the create, rotate and update
// endpoints.
// The admin API must never panic, never answer 5xx to a body (the store
// here never fails), and never repeat more than apikey.MaxEcho bytes of a
// string the body holds: Caddy logs every admin error, and a key pasted
// into a field must not land in the log.
func FuzzAdminBody(f *testing.F) {
	format, err := apikey.NewFormat("dk")
	if err != nil {
		f.Fatal(err)
	}
	svc := keyservice.New(oneKeyStore{}, format, nil, nil, nil)
	secret := "dk_0123456789abcdefghijABCDEFGHIJ4G66jy"

	// The fixed text of the API's messages: a window of an input string
	// found there is the message's own words, not an echo.
	var vocabulary strings.Builder
	for _, body := range []string{
		``, `[]`, `{"x":1}`, `{"name":1}`, `{"name":"` + secret + `"`, `{"name":"a"} x`, `{"name":'a'}`,
		`{"name":""}`, `{"name":"a\u0001"}`, `{"name":"` + strings.Repeat("a", 101) + `"}`,
		`{"name":"a","scope":"x"}`, `{"name":"a","scope":"full","expires_in":"x"}`,
		`{"grace":"x"}`, `{"grace":"-1h"}`, `{"grace":"169h"}`,
		`{"owner":""}`, `{"owner":"a b"}`, `{"owner":"` + strings.Repeat("o", 129) + `"}`, `{"metadata":1}`, `{"metadata":{"a":1}}`,
		`{"metadata":{"A":"x"}}`, `{"metadata":{"a":"` + strings.Repeat("x", 257) + `"}}`, `{"metadata":{"a":"\u0001"}}`,
		`{"name":"a","scope":"full","expires_in":"1d","owner":"a b"}`, `{"name":"a","scope":"full","expires_in":"1d","metadata":{"A":"x"}}`,
		`{"scope":"x"}`, `{"owner":"x"}`, `{"expires_in":"x"}`, `{"expires_at":"x"}`,
	} {
		for _, target := range fuzzTargets {
			_, msg := serveFuzzed(f, svc, target, []byte(body))
			vocabulary.WriteString(msg + "\n")
		}
	}
	vocab := vocabulary.String()

	for _, seed := range []struct {
		target uint8
		body   string
	}{
		{0, `{"name":"CI","scope":"full","expires_in":"1d"}`},
		{0, `{"name":"x","scope":"` + secret + `","expires_in":"1h"}`},
		{0, `{"name":"x","scope":"full","expires_in":"` + secret + `"}`},
		{0, `{"` + secret + `":"x"}`},
		{0, `{"name":null,"scope":["full"],"expires_in":{"a":1}}`},
		{0, `{"name":"a"}{"name":"b"}`},
		{0, "\xef\xbb\xbf{}"},
		{1, ``},
		{1, `{"grace":"0s"}`},
		{1, `{"grace":"` + secret + `"}`},
		{1, `{"grace":"9223372036854775807ns"}`},
		{0, `{"name":"x","scope":"full","expires_in":"1h","owner":"org_a","metadata":{"plan":"pro"}}`},
		{0, `{"name":"x","scope":"full","expires_in":"1h","owner":"` + secret + `"}`},
		{0, `{"name":"x","scope":"full","expires_in":"1h","metadata":{"` + secret + `":"x"}}`},
		{0, `{"name":"x","scope":"full","expires_in":"1h","metadata":{"plan":"` + secret + "\u0000" + `"}}`},
		{2, `{"name":"y","metadata":{}}`},
		{2, `{"metadata":{"` + secret + `":1}}`},
		{2, `{"scope":"` + secret + `"}`},
		{2, `{"` + secret + `":"x"}`},
	} {
		f.Add(seed.target, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		target := fuzzTargets[int(which)%len(fuzzTargets)]
		status, msg := serveFuzzed(t, svc, target, body)
		if status >= 500 {
			t.Fatalf("%s %q: status %d: %s", target, body, status, msg)
		}
		if msg == "" {
			return
		}
		for _, s := range jsonStrings(body) {
			for i := 0; i+apikey.MaxEcho < len(s); i++ {
				w := s[i : i+apikey.MaxEcho+1]
				if strings.Contains(msg, w) && !strings.Contains(vocab, w) {
					t.Fatalf("%s %q: error %q repeats %q, more than %d bytes of the input", target, body, msg, w, apikey.MaxEcho)
				}
			}
		}
	})
}
