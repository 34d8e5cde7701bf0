package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// apiChecker sends admin requests to a real gateway and checks each
// request and answer against docs/openapi.yaml, recording which operation
// answered which status.
type apiChecker struct {
	t      *testing.T
	g      *Gateway
	router routers.Router
	seen   map[string]map[int]bool // "GET /apikeys/{id}" → statuses
}

func newAPIChecker(t *testing.T, g *Gateway) *apiChecker {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(filepath.Join("..", "docs", "openapi.yaml"))
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("docs/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: "http://" + g.Ports.Admin}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	c := &apiChecker{t: t, g: g, router: router, seen: map[string]map[int]bool{}}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			c.seen[method+" "+path] = map[int]bool{}
		}
	}
	return c
}

// do sends the request and checks it and its answer against the
// description. A request that is meant to be bad (badInput) is not checked
// itself: only its answer is. It returns the status and the body.
func (c *apiChecker) do(method, path string, body any, badInput bool) (int, []byte) {
	c.t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			c.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, "http://"+c.g.Ports.Admin+path, bytes.NewReader(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Keygate-Actor", "openapi-test")
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.t.Fatalf("%s %s: not in docs/openapi.yaml: %v", method, path, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true},
	}
	if !badInput {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			c.t.Errorf("%s %s: the request breaks the description: %v", method, path, err)
		}
		req.Body = io.NopCloser(bytes.NewReader(raw))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: in.Options,
	}
	out.SetBodyBytes(answer)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		c.t.Errorf("%s %s: answer %d breaks the description: %v\n%s", method, path, resp.StatusCode, err, answer)
	}
	c.seen[method+" "+route.Path][resp.StatusCode] = true
	return resp.StatusCode, answer
}

// want checks the status of a call.
func (c *apiChecker) want(status int, got int, body []byte, what string) {
	c.t.Helper()
	if got != status {
		c.t.Fatalf("%s: status %d, want %d: %s", what, got, status, body)
	}
}

// everyOperationAnswered fails for an operation that did not answer both
// a success and an error during the test.
func (c *apiChecker) everyOperationAnswered() {
	c.t.Helper()
	var ops []string
	for op := range c.seen {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		var ok, bad bool
		for status := range c.seen[op] {
			ok = ok || status < 300
			bad = bad || status >= 400
		}
		if !ok || !bad {
			c.t.Errorf("%s answered only %v during the test: want a success and an error checked", op, c.seen[op])
		}
	}
}

func TestAdminAPIAnswersMatchTheOpenAPIDescriptionOnEveryRoute(t *testing.T) {
	t.Parallel()
	g := StartGateway(t, Options{})
	c := newAPIChecker(t, g)

	var created struct {
		Secret string `json:"secret"`
		APIKey struct {
			ID string `json:"id"`
		} `json:"api_key"`
	}
	status, body := c.do(http.MethodPost, "/apikeys", map[string]any{
		"name": "openapi", "scope": "widget", "expires_in": "1y", "owner": "acme",
		"metadata": map[string]string{"plan": "pro"}, "allowed_origins": []string{"https://app.example.com"},
		"allowed_ips": []string{"10.0.0.0/8"}, "rate_limits": []string{"100/1m"},
	}, false)
	c.want(http.StatusCreated, status, body, "create")
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	id := created.APIKey.ID
	status, body = c.do(http.MethodPost, "/apikeys", map[string]any{"name": "x", "scope": "admin", "expires_in": "1d"}, true)
	c.want(http.StatusBadRequest, status, body, "create with an unknown scope")

	// Traffic, so that usage has counts.
	for _, h := range []http.Header{WithKey(created.Secret), WithKey(created.Secret), {}} {
		g.Request(http.MethodGet, "/", h)
	}

	for _, call := range []struct {
		method, path string
		body         any
		bad          bool
		status       int
	}{
		{http.MethodGet, "/apikeys", nil, false, 200},
		{http.MethodGet, "/apikeys?status=active&owner=acme&q=open&limit=10", nil, false, 200},
		{http.MethodGet, "/apikeys?limit=5000", nil, true, 400},
		{http.MethodGet, "/apikeys/" + id, nil, false, 200},
		{http.MethodGet, "/apikeys/key_0000000000000000000000", nil, false, 404},
		{http.MethodGet, "/apikeys/not-an-id", nil, false, 400},
		{http.MethodPatch, "/apikeys/" + id, map[string]any{"name": "openapi renamed", "rate_limits": []string{"10/1s", "1000/1h"}}, false, 200},
		{http.MethodPatch, "/apikeys/" + id, map[string]any{"scope": "full"}, true, 400},
		{http.MethodGet, "/apikeys/" + id + "/usage", nil, false, 200},
		{http.MethodGet, "/apikeys/" + id + "/usage?since=2h&step=1m", nil, false, 200},
		{http.MethodGet, "/apikeys/" + id + "/usage?step=2m", nil, true, 400},
		{http.MethodGet, "/apikeys/key_0000000000000000000000/usage", nil, false, 404},
		{http.MethodGet, "/apikeys/usage?owner=acme&since=1d", nil, false, 200},
		{http.MethodGet, "/apikeys/usage?since=yesterday", nil, false, 400},
		{http.MethodGet, "/apikeys/audit?key_id=" + id + "&action=key.updated&limit=5", nil, false, 200},
		{http.MethodGet, "/apikeys/audit?action=key.deleted", nil, true, 400},
		{http.MethodGet, "/apikeys/instances", nil, false, 200},
		{http.MethodGet, "/apikeys/instances?all=1", nil, true, 400},
		{http.MethodGet, "/apikeys/backup", nil, false, 200},
		{http.MethodGet, "/apikeys/backup?file=x", nil, true, 400},
	} {
		status, body := c.do(call.method, call.path, call.body, call.bad)
		c.want(call.status, status, body, call.method+" "+call.path)
	}

	// Rotation, then the old key's conflicts.
	status, body = c.do(http.MethodPost, "/apikeys/"+id+"/rotate", map[string]string{"grace": "1h"}, false)
	c.want(http.StatusCreated, status, body, "rotate")
	status, body = c.do(http.MethodPost, "/apikeys/"+id+"/rotate", nil, false)
	c.want(http.StatusConflict, status, body, "rotating a replaced key")
	status, body = c.do(http.MethodDelete, "/apikeys/"+id, nil, false)
	c.want(http.StatusOK, status, body, "revoke")
	status, body = c.do(http.MethodPatch, "/apikeys/"+id, map[string]any{"name": "too late"}, false)
	c.want(http.StatusConflict, status, body, "changing a revoked key")
	status, body = c.do(http.MethodDelete, "/apikeys/key_0000000000000000000000", nil, false)
	c.want(http.StatusNotFound, status, body, "revoking an unknown key")

	// A page with a cursor.
	for i := range 3 {
		g.CreateKey(fmt.Sprintf("page %d", i), "full", "1d")
	}
	status, body = c.do(http.MethodGet, "/apikeys?limit=2", nil, false)
	c.want(http.StatusOK, status, body, "first page")
	var page struct {
		NextCursor *string `json:"next_cursor"`
	}
	if err := json.Unmarshal(body, &page); err != nil || page.NextCursor == nil {
		t.Fatalf("first page of 2 of 5 keys has no next_cursor: %s", body)
	}
	status, body = c.do(http.MethodGet, "/apikeys?limit=2&cursor="+url.QueryEscape(*page.NextCursor), nil, false)
	c.want(http.StatusOK, status, body, "second page")
	status, body = c.do(http.MethodGet, "/apikeys/audit?limit=2", nil, false)
	c.want(http.StatusOK, status, body, "audit page")

	// A method a resource does not have: 405 with Allow, in the error shape.
	resp, body := g.Admin(http.MethodPut, "/apikeys/instances", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" || !strings.Contains(string(body), `"error"`) {
		t.Errorf("PUT /apikeys/instances: %d Allow=%q %s, want 405 with Allow and an error body", resp.StatusCode, resp.Header.Get("Allow"), body)
	}

	c.everyOperationAnswered()
}
