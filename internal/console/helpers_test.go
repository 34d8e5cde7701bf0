package console

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore/sqlite"
)

// t0 is the test clock's start: a fixed instant, so relative times are
// known.
var t0 = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is a console over a real SQLite store in a temporary directory.
type env struct {
	t      *testing.T
	store  *sqlite.Store
	svc    *keyservice.Service
	format *apikey.Format
	clock  *clock
	logs   *observer.ObservedLogs
	h      *Handler
	srv    *httptest.Server
	user   string // the user every request is made as; "" for none
	// owner is the owner every request names, in a console made with
	// envOptions.owned; "" for none.
	owner string
}

type envOptions struct {
	anonymous            bool // no authentication handler ran
	allowUnauthenticated bool
	// owned makes the console an owner's: Config.Owner returns the
	// env's owner.
	owned bool
}

func newEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	format, err := apikey.NewFormat("dk")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: store, format: format, clock: &clock{now: t0}, user: "alice"}
	if opts.anonymous {
		e.user = ""
	}
	e.svc = keyservice.New(store, format, nil, nil, e.clock.Now)
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	e.h, err = New(Config{
		Service: e.svc,
		// Stands in for Caddy's {http.auth.user.id}: the test's user, sent
		// by the client in a header only this test server trusts.
		User:                 func(r *http.Request) string { return r.Header.Get("X-Test-User") },
		AllowUnauthenticated: opts.allowUnauthenticated,
		Logger:               zap.New(core),
		Owner:                ownerFunc(opts.owned),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(e.srv.Close)
	return e
}

// ownerFunc stands in for the resolved owner subdirective: the owner
// sent in a header only this test server trusts. Nil for the operator's
// console.
func ownerFunc(owned bool) func(*http.Request) string {
	if !owned {
		return nil
	}
	return func(r *http.Request) string { return r.Header.Get("X-Test-Owner") }
}

// client never follows redirects, so that a Location is seen.
var client = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

// do sends a request to the console as e.user and returns the response
// with its body.
func (e *env) do(method, target string, form url.Values, header http.Header) (*http.Response, string) {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.srv.URL+target, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if e.user != "" {
		req.Header.Set("X-Test-User", e.user)
	}
	if e.owner != "" {
		req.Header.Set("X-Test-Owner", e.owner)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, string(b)
}

func (e *env) get(target string) (*http.Response, string) {
	e.t.Helper()
	return e.do(http.MethodGet, target, nil, nil)
}

// jsonHeader is what the page's script sends with a change.
var jsonHeader = http.Header{"Accept": {"application/json"}, "Sec-Fetch-Site": {"same-origin"}}

// formHeader is what a browser sends with a plain form post.
var formHeader = http.Header{"Sec-Fetch-Site": {"same-origin"}}

func (e *env) postJSON(form url.Values) (*http.Response, map[string]any) {
	e.t.Helper()
	resp, body := e.do(http.MethodPost, "/", form, jsonHeader)
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		e.t.Fatalf("POST %v: answer is not JSON: %v: %s", form, err, body)
	}
	return resp, out
}

// create makes a key through the service directly, returning it.
func (e *env) create(name, scope, expiresIn string) (string, apikey.Key) {
	e.t.Helper()
	secret, k, err := e.svc.Create(context.Background(), keyservice.NewKey{Name: name, Scope: scope, ExpiresIn: expiresIn, CreatedBy: apikey.Actor{Type: apikey.ActorConsole, ID: "tester"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return secret, k
}

// createFor makes a key of owner ("" for none) through the service
// directly, as created_by says.
func (e *env) createFor(owner, name string, by apikey.Actor) (string, apikey.Key) {
	e.t.Helper()
	secret, k, err := e.svc.Create(context.Background(), keyservice.NewKey{
		Name: name, Scope: "full", ExpiresIn: "never", Owner: owner, CreatedBy: by,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return secret, k
}

func (e *env) key(id string) apikey.Key {
	e.t.Helper()
	k, err := e.svc.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

func (e *env) all() []apikey.Key {
	e.t.Helper()
	page, err := e.svc.List(context.Background(), keyservice.ListOptions{Limit: keyservice.MaxLimit})
	if err != nil {
		e.t.Fatal(err)
	}
	return page.Keys
}

// rowIDs returns the key IDs of the table's rows, in order.
func rowIDs(page string) []string {
	var ids []string
	rest := page
	for {
		i := strings.Index(rest, `<tr data-key-id="`)
		if i < 0 {
			return ids
		}
		rest = rest[i+len(`<tr data-key-id="`):]
		ids = append(ids, rest[:strings.IndexByte(rest, '"')])
	}
}

// logText is every logged message and field, for searching.
func (e *env) logText() string {
	var b strings.Builder
	for _, entry := range e.logs.All() {
		b.WriteString(entry.Message)
		for k, v := range entry.ContextMap() {
			b.WriteString(" " + k + "=")
			data, _ := json.Marshal(v)
			b.Write(data)
		}
		b.WriteString("\n")
	}
	return b.String()
}
