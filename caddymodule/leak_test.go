package caddymodule

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/leakreport/leaktest"
)

func TestLeakReportUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    LeakReport
		wantErr string
	}{
		{name: "no block", input: `apikey_leak_report`, want: LeakReport{}},
		{name: "every subdirective", input: "apikey_leak_report {\npublic_keys_url https://keys.example/ss\naction report\n}",
			want: LeakReport{PublicKeysURL: "https://keys.example/ss", Action: "report"}},
		{name: "http to loopback", input: "apikey_leak_report {\npublic_keys_url http://127.0.0.1:9000/keys\n}", want: LeakReport{PublicKeysURL: "http://127.0.0.1:9000/keys"}},
		{name: "placeholder", input: "apikey_leak_report {\npublic_keys_url {env.KEYS_URL}\n}", want: LeakReport{PublicKeysURL: "{env.KEYS_URL}"}},
		{name: "argument", input: `apikey_leak_report github`, wantErr: "wrong argument count"},
		{name: "http elsewhere", input: "apikey_leak_report {\npublic_keys_url http://keys.example/ss\n}", wantErr: "http is allowed only to a loopback host"},
		{name: "url missing", input: "apikey_leak_report {\npublic_keys_url\n}", wantErr: "wrong argument count"},
		{name: "url repeated", input: "apikey_leak_report {\npublic_keys_url https://a.example\npublic_keys_url https://b.example\n}", wantErr: "public_keys_url is given more than once"},
		{name: "unknown action", input: "apikey_leak_report {\naction notify\n}", wantErr: `unknown action "notify"`},
		{name: "two actions", input: "apikey_leak_report {\naction revoke report\n}", wantErr: "wrong argument count"},
		{name: "unknown subdirective", input: "apikey_leak_report {\ntoken x\n}", wantErr: `unrecognized subdirective "token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got LeakReport
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "Testfile:") {
					t.Errorf("error %q does not name the file and line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.PublicKeysURL != tt.want.PublicKeysURL || got.Action != tt.want.Action {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLeakReportProvisionRefusesBadJSONConfig(t *testing.T) {
	ctx := newTestContext(t)
	a := &App{Store: &StoreConfig{Path: filepath.Join(t.TempDir(), "keys.db")}}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Cleanup() })
	for _, tt := range []struct {
		l       LeakReport
		wantErr string
	}{
		{LeakReport{Action: "delete"}, `unknown action "delete"`},
		{LeakReport{PublicKeysURL: "http://keys.example/"}, "http is allowed only to a loopback host"},
		{LeakReport{PublicKeysURL: "{env.KEYGATE_TEST_UNSET_LEAK_URL}"}, "KEYGATE_TEST_UNSET_LEAK_URL"},
	} {
		if err := tt.l.provision(a, zap.NewNop()); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("provision(%+v) = %v, want an error containing %q", tt.l, err, tt.wantErr)
		}
	}
	if err := (&LeakReport{}).provision(&App{}, zap.NewNop()); err == nil {
		t.Error("provision without a provisioned app: no error")
	}
}

// TestLeakReportUsesTheAppsKeyPrefix checks that the handler tells keys
// from garbage by the app's configured prefix: a key of prefix acme is a
// true positive, and a well-formed key of the default prefix dk is not
// one of this gateway's.
func TestLeakReportUsesTheAppsKeyPrefix(t *testing.T) {
	signer := leaktest.NewSigner(t)
	keys := leaktest.NewKeyServer(t, signer)
	t.Setenv("KEYGATE_TEST_LEAK_KEYS_URL", keys.URL())
	ctx := newTestContext(t)
	a := &App{KeyPrefix: "acme", Store: &StoreConfig{Path: filepath.Join(t.TempDir(), "keys.db")}}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Cleanup() })
	l := &LeakReport{PublicKeysURL: "{env.KEYGATE_TEST_LEAK_KEYS_URL}"}
	if err := l.provision(a, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	secret, k, err := a.service().Create(context.Background(), adminKey("ci", "full", "1d"))
	if err != nil {
		t.Fatal(err)
	}
	dk, _ := apikey.NewFormat("dk")
	other, _ := dk.Generate()
	body := leaktest.Body(leaktest.Report{Token: secret, Type: "acme_api_key"}, leaktest.Report{Token: other, Type: "acme_api_key"})
	req := httptest.NewRequest(http.MethodPost, "/leaks/github", bytes.NewReader(body))
	req.Header = signer.Headers(body)
	w := httptest.NewRecorder()
	if err := l.ServeHTTP(w, req, nil); err != nil {
		t.Fatal(err)
	}
	want := `[{"token_hash":"` + leaktest.TokenHash(secret) + `","token_type":"acme_api_key","label":"true_positive"},` +
		`{"token_hash":"` + leaktest.TokenHash(other) + `","token_type":"acme_api_key","label":"false_positive"}]`
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != want {
		t.Fatalf("answer %d %s\nwant 200 %s", w.Code, w.Body, want)
	}
	got, err := a.service().Get(context.Background(), k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.RevokedAt.IsZero() {
		t.Error("the reported key is not revoked (default action revoke)")
	}
}
