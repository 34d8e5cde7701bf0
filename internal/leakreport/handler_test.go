package leakreport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore/sqlite"
	"github.com/docana/keygate/internal/leakreport"
	"github.com/docana/keygate/internal/leakreport/leaktest"
)

// fixture is a key service over a real SQLite store, GitHub's side
// (a signer and its key server) and a handler between them.
type fixture struct {
	store  *sqlite.Store
	path   string // of the store
	svc    *keyservice.Service
	format *apikey.Format
	signer *leaktest.Signer
	keys   *leaktest.KeyServer
	labels *prometheus.CounterVec
	logs   *observer.ObservedLogs
	// secrets of the keys made, by name
	secrets map[string]string
	ids     map[string]string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.db")
	store, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	format, err := apikey.NewFormat("dk")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		store: store, path: path, format: format, svc: keyservice.New(store, format, nil, nil, nil),
		signer: leaktest.NewSigner(t), secrets: map[string]string{}, ids: map[string]string{},
	}
	f.keys = leaktest.NewKeyServer(t, f.signer)
	for _, k := range []struct {
		name, scope string
		origins     []string
	}{
		{"backend", "full", nil},
		{"shop widget", "widget", []string{"https://shop.example"}},
		{"open widget", "widget", nil},
		{"cron", "routine", nil},
		{"old", "full", nil},
	} {
		secret, key, err := f.svc.Create(context.Background(), keyservice.NewKey{
			Name: k.name, Scope: k.scope, ExpiresIn: "1d", AllowedOrigins: k.origins,
			CreatedBy: apikey.Actor{Type: apikey.ActorAdmin, ID: "test"},
		})
		if err != nil {
			t.Fatal(err)
		}
		f.secrets[k.name], f.ids[k.name] = secret, key.ID
	}
	if _, err := f.svc.Revoke(context.Background(), f.ids["old"]); err != nil {
		t.Fatal(err)
	}
	return f
}

// handler returns a handler with action revoke or report.
func (f *fixture) handler(t *testing.T, revoke bool) http.Handler {
	t.Helper()
	ks, err := leakreport.NewKeySet(leakreport.KeySetConfig{URL: f.keys.URL()})
	if err != nil {
		t.Fatal(err)
	}
	f.labels = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leak_reports_total", Help: "test"}, []string{"label"})
	core, logs := observer.New(zapcore.DebugLevel)
	f.logs = logs
	h, err := leakreport.New(leakreport.Config{
		Keys: ks, Format: f.format, Service: f.svc, Revoke: revoke, Labels: f.labels, Logger: zap.New(core),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// post sends body signed by the fixture's signer, with extra headers
// overriding.
func post(h http.Handler, f *fixture, body []byte, hdr http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/leaks/github", bytes.NewReader(body))
	for k, v := range f.signer.Headers(body) {
		req.Header[k] = v
	}
	for k, v := range hdr {
		if v == nil {
			delete(req.Header, k)
			continue
		}
		req.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func (f *fixture) status(t *testing.T, name string) apikey.Status {
	t.Helper()
	k, err := f.store.Get(context.Background(), f.ids[name])
	if err != nil {
		t.Fatal(err)
	}
	return k.Status(time.Now())
}

// noSecretLogged fails if any log entry holds one of the secrets.
func (f *fixture) noSecretLogged(t *testing.T, extra ...string) {
	t.Helper()
	secrets := extra
	for _, s := range f.secrets {
		secrets = append(secrets, s)
	}
	for _, e := range f.logs.All() {
		text, _ := json.Marshal(e.ContextMap())
		for _, s := range secrets {
			if strings.Contains(e.Message, s) || strings.Contains(string(text), s) {
				t.Errorf("log entry %q %s holds a token", e.Message, text)
			}
		}
	}
}

func TestReportRevokesKnownKeysKeepsPublicWidgetKeysAndLabelsEveryToken(t *testing.T) {
	f := newFixture(t)
	h := f.handler(t, true)
	unknown, err := f.format.Generate()
	if err != nil {
		t.Fatal(err)
	}
	badChecksum := f.secrets["cron"][:len(f.secrets["cron"])-1] + flip(f.secrets["cron"][len(f.secrets["cron"])-1])
	tokens := []leaktest.Report{
		{Token: f.secrets["backend"], Type: "keygate_api_key", URL: "https://github.com/o/r/blob/1/.env", Source: "content"},
		{Token: "dk_abc", Type: "keygate_api_key", Source: "commit"},
		{Token: f.secrets["shop widget"], Type: "keygate_api_key", Source: "content"},
		{Token: unknown, Type: "keygate_api_key", Source: "content"},
		{Token: f.secrets["open widget"], Type: "keygate_api_key", Source: "issue_comment"},
		{Token: badChecksum, Type: "keygate_api_key", Source: "content"},
		{Token: f.secrets["old"], Type: "keygate_api_key", Source: "content"},
		{Token: f.secrets["backend"], Type: "other_type", Source: "content"}, // again
	}
	w := post(h, f, leaktest.Body(tokens...), nil)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q, want 200 JSON: %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	var got []leakreport.Result
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("answer %s: %v", w.Body, err)
	}
	labels := []string{"true_positive", "false_positive", "true_positive", "false_positive", "true_positive", "false_positive", "true_positive", "true_positive"}
	if len(got) != len(tokens) {
		t.Fatalf("%d results for %d tokens: %s", len(got), len(tokens), w.Body)
	}
	for i, r := range got {
		want := leakreport.Result{TokenHash: leaktest.TokenHash(tokens[i].Token), TokenType: tokens[i].Type, Label: labels[i]}
		if r != want {
			t.Errorf("result %d = %+v, want %+v", i, r, want)
		}
	}
	if strings.Contains(w.Body.String(), f.secrets["backend"]) {
		t.Errorf("the answer holds a token: %s", w.Body)
	}

	for name, want := range map[string]apikey.Status{
		"backend":     apikey.StatusRevoked, // revoked
		"shop widget": apikey.StatusActive,  // public by design, locked to its origins
		"open widget": apikey.StatusRevoked, // a widget key without origins is usable anywhere
		"cron":        apikey.StatusActive,  // only a near miss of it was reported
		"old":         apikey.StatusRevoked,
	} {
		if got := f.status(t, name); got != want {
			t.Errorf("key %q is %s, want %s", name, got, want)
		}
	}
	if tp, fp := testutil.ToFloat64(f.labels.WithLabelValues("true_positive")), testutil.ToFloat64(f.labels.WithLabelValues("false_positive")); tp != 5 || fp != 3 {
		t.Errorf("leak_reports_total: true_positive %v, false_positive %v; want 5 and 3", tp, fp)
	}
	f.noSecretLogged(t, unknown, badChecksum)
	if n := f.logs.FilterMessage("leaked key reported").FilterField(zap.String("key_id", f.ids["backend"])).Len(); n != 1 {
		t.Errorf("%d log entries for the backend key, want 1 (reported once though sent twice)", n)
	}
}

func TestReportWithActionReportChangesNoKey(t *testing.T) {
	f := newFixture(t)
	h := f.handler(t, false)
	w := post(h, f, leaktest.Body(leaktest.Report{Token: f.secrets["backend"], Type: "t"}, leaktest.Report{Token: f.secrets["open widget"], Type: "t"}), nil)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if !strings.Contains(w.Body.String(), `"label":"true_positive"`) || strings.Contains(w.Body.String(), "false_positive") {
		t.Errorf("answer %s, want both true_positive", w.Body)
	}
	for _, name := range []string{"backend", "open widget"} {
		if got := f.status(t, name); got != apikey.StatusActive {
			t.Errorf("key %q is %s after a report with action report, want active", name, got)
		}
	}
}

func TestReportEmptyAnswersEmpty(t *testing.T) {
	f := newFixture(t)
	w := post(f.handler(t, true), f, []byte(`[]`), nil)
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != "[]" {
		t.Fatalf("status %d body %q, want 200 []", w.Code, w.Body)
	}
}

func TestBadReportsAnswerAClearErrorAndChangeNothing(t *testing.T) {
	f := newFixture(t)
	h := f.handler(t, true)
	other := leaktest.NewSigner(t)
	leak := leaktest.Body(leaktest.Report{Token: f.secrets["backend"], Type: "t", Source: "content"})
	many := make([]leaktest.Report, leakreport.MaxTokens+1)
	for i := range many {
		many[i] = leaktest.Report{Token: f.secrets["backend"], Type: "t"}
	}
	huge := append(leaktest.Body(many...)[:0:0], '[')
	huge = append(huge, bytes.Repeat([]byte(`{"token":"`+f.secrets["backend"]+`"},`), leakreport.MaxBodySize/50)...)
	huge = append(huge, []byte(`{"token":"x"}]`)...)

	tests := []struct {
		name   string
		method string
		body   []byte
		hdr    http.Header
		status int
		code   string
	}{
		{"GET", http.MethodGet, nil, nil, http.StatusMethodNotAllowed, "method_not_allowed"},
		{"PUT", http.MethodPut, leak, nil, http.StatusMethodNotAllowed, "method_not_allowed"},
		{"form body", "", leak, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, http.StatusUnsupportedMediaType, "unsupported_media_type"},
		{"no content type", "", leak, http.Header{"Content-Type": nil}, http.StatusUnsupportedMediaType, "unsupported_media_type"},
		{"over 1 MiB", "", huge, nil, http.StatusRequestEntityTooLarge, "report_too_large"},
		{"no signature", "", leak, http.Header{"Github-Public-Key-Signature": nil}, http.StatusBadRequest, "missing_signature"},
		{"no identifier", "", leak, http.Header{"Github-Public-Key-Identifier": nil}, http.StatusBadRequest, "missing_signature"},
		{"two signatures", "", leak, http.Header{"Github-Public-Key-Signature": {f.signer.Sign(leak), f.signer.Sign(leak)}}, http.StatusBadRequest, "malformed_signature"},
		{"signature not base64", "", leak, http.Header{"Github-Public-Key-Signature": {"%%%"}}, http.StatusBadRequest, "malformed_signature"},
		{"signed by an unpublished key", "", leak, http.Header{"Github-Public-Key-Signature": {other.Sign(leak)}}, http.StatusForbidden, "invalid_signature"},
		{"signature of another body", "", leak, http.Header{"Github-Public-Key-Signature": {f.signer.Sign([]byte(`[]`))}}, http.StatusForbidden, "invalid_signature"},
		{"unknown identifier", "", leak, http.Header{"Github-Public-Key-Identifier": {other.ID}, "Github-Public-Key-Signature": {other.Sign(leak)}}, http.StatusForbidden, "unknown_key_identifier"},
		{"malformed JSON", "", append(leak[:len(leak)-1:len(leak)-1], ','), nil, http.StatusBadRequest, "malformed_report"},
		{"an object", "", []byte(`{"token":"` + f.secrets["backend"] + `"}`), nil, http.StatusBadRequest, "malformed_report"},
		{"too many tokens", "", leaktest.Body(many...), nil, http.StatusRequestEntityTooLarge, "too_many_tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "/leaks/github", bytes.NewReader(tt.body))
			for k, v := range f.signer.Headers(tt.body) {
				req.Header[k] = v
			}
			for k, v := range tt.hdr {
				if v == nil {
					delete(req.Header, k)
				} else {
					req.Header[k] = v
				}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("answer %q (%s) is not a JSON error: %v", w.Body, w.Header().Get("Content-Type"), err)
			}
			if w.Code != tt.status || e.Error.Code != tt.code || e.Error.Message == "" {
				t.Fatalf("status %d code %q message %q, want %d %q with a message", w.Code, e.Error.Code, e.Error.Message, tt.status, tt.code)
			}
			if tt.status == http.StatusMethodNotAllowed && w.Header().Get("Allow") != "POST" {
				t.Errorf("Allow = %q, want POST", w.Header().Get("Allow"))
			}
			if strings.Contains(w.Body.String(), f.secrets["backend"][4:20]) {
				t.Errorf("the error repeats the token: %s", w.Body)
			}
			if got := f.status(t, "backend"); got != apikey.StatusActive {
				t.Fatalf("the reported key is %s after a refused report, want active", got)
			}
		})
	}
	if n := testutil.CollectAndCount(f.labels); n != 2 {
		t.Errorf("%d label series, want 2", n)
	}
	if tp := testutil.ToFloat64(f.labels.WithLabelValues("true_positive")); tp != 0 {
		t.Errorf("true_positive = %v after refused reports only, want 0", tp)
	}
	f.noSecretLogged(t)
}

func TestReportWhileTheStoreFailsAnswers503AndASecondReportFinishesTheJob(t *testing.T) {
	f := newFixture(t)
	h := f.handler(t, true)
	body := leaktest.Body(leaktest.Report{Token: f.secrets["backend"], Type: "t"})
	f.store.Close()
	w := post(h, f, body, nil)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "key_store_unavailable") || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d %s (Retry-After %q), want 503 key_store_unavailable with Retry-After", w.Code, w.Body, w.Header().Get("Retry-After"))
	}
	if testutil.ToFloat64(f.labels.WithLabelValues("true_positive"))+testutil.ToFloat64(f.labels.WithLabelValues("false_positive")) != 0 {
		t.Error("a failed report counted tokens")
	}
	// The store comes back (reopened): GitHub's retry revokes the key.
	store, err := sqlite.Open(context.Background(), f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	f.store, f.svc = store, keyservice.New(store, f.format, nil, nil, nil)
	w = post(f.handler(t, true), f, body, nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "true_positive") {
		t.Fatalf("retry: status %d %s", w.Code, w.Body)
	}
	if got := f.status(t, "backend"); got != apikey.StatusRevoked {
		t.Errorf("key is %s after the retry, want revoked", got)
	}
}

func TestKeysUnavailableAnswers503(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	ks, err := leakreport.NewKeySet(leakreport.KeySetConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	h, err := leakreport.New(leakreport.Config{Keys: ks, Format: f.format, Service: f.svc, Revoke: true})
	if err != nil {
		t.Fatal(err)
	}
	body := leaktest.Body(leaktest.Report{Token: f.secrets["backend"], Type: "t"})
	w := post(h, f, body, nil)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "public_keys_unavailable") {
		t.Fatalf("status %d %s, want 503 public_keys_unavailable", w.Code, w.Body)
	}
	if strings.Contains(w.Body.String(), strings.TrimPrefix(srv.URL, "http://")) {
		t.Errorf("the answer names public_keys_url, which is the operator's: %s", w.Body)
	}
	if got := f.status(t, "backend"); got != apikey.StatusActive {
		t.Errorf("key is %s, want active", got)
	}
}

// flip returns another base62 character than c.
func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}
