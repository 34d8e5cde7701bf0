package leakreport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/docana/keygate/internal/leakreport/leaktest"
)

func TestCheckPublicKeysURL(t *testing.T) {
	tests := []struct {
		name, url, wantErr string
	}{
		{"github", DefaultPublicKeysURL, ""},
		{"https anywhere", "https://mirror.example/keys.json", ""},
		{"http to 127.0.0.1", "http://127.0.0.1:8080/keys", ""},
		{"http to another loopback address", "http://127.3.2.1/keys", ""},
		{"http to ::1", "http://[::1]:9000/keys", ""},
		{"http to localhost", "http://LOCALHOST/keys", ""},
		{"http elsewhere", "http://mirror.example/keys", "http is allowed only to a loopback host"},
		{"http to a private address", "http://10.0.0.5/keys", "http is allowed only to a loopback host"},
		{"another scheme", "ftp://mirror.example/keys", "must be https"},
		{"relative", "/keys", "absolute"},
		{"user information", "https://user:pass@mirror.example/keys", "without user information"},
		{"not a URL", "https://[::1", "is not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CheckPublicKeysURL(tt.url)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CheckPublicKeysURL(%q) = %v, want no error", tt.url, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("CheckPublicKeysURL(%q) = %v, want an error containing %q", tt.url, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "pass@") {
				t.Errorf("the error repeats the URL's password: %v", err)
			}
		})
	}
}

// clock is a time the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newKeySet(t *testing.T, url string, c *clock) *KeySet {
	t.Helper()
	ks, err := NewKeySet(KeySetConfig{URL: url, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestKeySetVerifiesWhatTheSignerSigned(t *testing.T) {
	a, b := leaktest.NewSigner(t), leaktest.NewSigner(t)
	srv := leaktest.NewKeyServer(t, a, b)
	ks := newKeySet(t, srv.URL(), &clock{t: time.Now()})
	body := []byte(`[{"token":"dk_x","type":"keygate_api_key","url":"","source":"content"}]`)
	ctx := context.Background()

	for _, s := range []*leaktest.Signer{a, b} { // b is not current: still trusted
		if err := ks.Verify(ctx, body, s.ID, s.Sign(body)); err != nil {
			t.Errorf("Verify with key %s: %v", s.ID[:8], err)
		}
	}
	tests := []struct {
		name    string
		body    []byte
		id, sig string
		want    error
	}{
		{"another body", []byte(`[]`), a.ID, a.Sign(body), ErrBadSignature},
		{"one byte appended", append(append([]byte{}, body...), '\n'), a.ID, a.Sign(body), ErrBadSignature},
		{"signed by the other key", body, a.ID, b.Sign(body), ErrBadSignature},
		{"not DER", body, a.ID, "aGVsbG8=", ErrBadSignature},
		{"not base64", body, a.ID, "!!!", ErrMalformedSignature},
		{"no signature", body, a.ID, "", ErrMissingSignature},
		{"no identifier", body, "", a.Sign(body), ErrMissingSignature},
		{"identifier too long", body, strings.Repeat("a", MaxKeyIdentifierLength+1), a.Sign(body), ErrMalformedSignature},
		{"unknown identifier", body, "f00d", a.Sign(body), ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ks.Verify(ctx, tt.body, tt.id, tt.sig)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error too long: %v", err)
			}
		})
	}
}

func TestKeySetFetchesAgainForAnUnknownIdentifierAtMostOnceAMinute(t *testing.T) {
	old, rotated := leaktest.NewSigner(t), leaktest.NewSigner(t)
	srv := leaktest.NewKeyServer(t, old)
	c := &clock{t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
	ks := newKeySet(t, srv.URL(), c)
	ctx := context.Background()
	body := []byte(`[]`)

	if err := ks.Verify(ctx, body, old.ID, old.Sign(body)); err != nil {
		t.Fatal(err)
	}
	if n, _ := srv.Fetches(); n != 1 {
		t.Fatalf("fetches after the first report = %d, want 1", n)
	}
	// Known keys are served from the cache.
	for range 5 {
		if err := ks.Verify(ctx, body, old.ID, old.Sign(body)); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := srv.Fetches(); n != 1 {
		t.Fatalf("fetches after 6 reports by a cached key = %d, want 1", n)
	}

	// GitHub rotates its key: the first report signed with it within a
	// minute of the last fetch is refused without a fetch...
	srv.Publish(leaktest.Document(rotated, old))
	c.add(30 * time.Second)
	if err := ks.Verify(ctx, body, rotated.ID, rotated.Sign(body)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Verify by the new key 30s after a fetch = %v, want ErrUnknownKey", err)
	}
	if n, _ := srv.Fetches(); n != 1 {
		t.Fatalf("fetches = %d, want still 1 within the minute", n)
	}
	// ...and a minute after the last fetch it is fetched once.
	c.add(30 * time.Second)
	if err := ks.Verify(ctx, body, rotated.ID, rotated.Sign(body)); err != nil {
		t.Fatalf("Verify by the new key a minute after a fetch = %v", err)
	}
	// Forged identifiers make at most one fetch a minute: 15 of them,
	// 5s apart from the fetch at 1m, make one more fetch, at 2m.
	for i := range 15 {
		c.add(5 * time.Second)
		if err := ks.Verify(ctx, body, "forged"+string(rune('a'+i)), old.Sign(body)); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("Verify by a forged identifier = %v, want ErrUnknownKey", err)
		}
	}
	if n, _ := srv.Fetches(); n != 3 {
		t.Fatalf("fetches after 15 forged identifiers over 75s = %d, want 3", n)
	}
}

func TestKeySetRefreshesAnOldDocumentConditionallyAndKeepsItWhenTheFetchFails(t *testing.T) {
	a := leaktest.NewSigner(t)
	srv := leaktest.NewKeyServer(t, a)
	c := &clock{t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
	ks := newKeySet(t, srv.URL(), c)
	ctx := context.Background()
	body := []byte(`[]`)
	if err := ks.Verify(ctx, body, a.ID, a.Sign(body)); err != nil {
		t.Fatal(err)
	}
	c.add(MaxDocumentAge)
	if err := ks.Verify(ctx, body, a.ID, a.Sign(body)); err != nil {
		t.Fatal(err)
	}
	if all, notModified := srv.Fetches(); all != 2 || notModified != 1 {
		t.Fatalf("fetches = %d (%d not modified), want 2 (1): the old document is fetched again with its ETag", all, notModified)
	}

	// GitHub withdraws the key: after MaxDocumentAge it is no longer trusted.
	b := leaktest.NewSigner(t)
	srv.Publish(leaktest.Document(b))
	c.add(MaxDocumentAge)
	if err := ks.Verify(ctx, body, a.ID, a.Sign(body)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Verify by a withdrawn key = %v, want ErrUnknownKey", err)
	}

	// The server breaks: the document held is kept.
	srv.Publish([]byte(`not json`))
	c.add(MaxDocumentAge)
	if err := ks.Verify(ctx, body, b.ID, b.Sign(body)); err != nil {
		t.Fatalf("Verify while the key server serves garbage = %v, want the held document used", err)
	}
}

func TestKeySetRefusesBadDocuments(t *testing.T) {
	a := leaktest.NewSigner(t)
	big := `{"public_keys":[{"key_identifier":"x","key":"` + strings.Repeat("A", MaxDocumentSize) + `"}]}`
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"not found", http.StatusNotFound, `{"message":"Not Found"}`},
		{"not JSON", http.StatusOK, `<html>`},
		{"no keys", http.StatusOK, `{"public_keys":[]}`},
		{"not PEM", http.StatusOK, `{"public_keys":[{"key_identifier":"x","key":"abc"}]}`},
		{"RSA", http.StatusOK, `{"public_keys":[{"key_identifier":"x","key":` + quote(pemOf(t, &rsaKey.PublicKey)) + `}]}`},
		{"ECDSA P-384", http.StatusOK, `{"public_keys":[{"key_identifier":"x","key":` + quote(pemOf(t, &p384.PublicKey)) + `}]}`},
		{"too large", http.StatusOK, big},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			ks := newKeySet(t, srv.URL, &clock{t: time.Now()})
			err := ks.Verify(context.Background(), []byte(`[]`), "x", a.Sign([]byte(`[]`)))
			if !errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("Verify = %v, want ErrKeysUnavailable", err)
			}
		})
	}
}

func TestParseDocumentSkipsUnusableEntries(t *testing.T) {
	a := leaktest.NewSigner(t)
	doc := `{"public_keys":[{"key_identifier":"","key":` + quote(a.PEM()) + `},{"key_identifier":"bad","key":"nope"},{"key_identifier":"good","key":` + quote(a.PEM()) + `,"is_current":false}]}`
	keys, skipped, err := ParseDocument([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys["good"] == nil {
		t.Errorf("keys = %v, want only \"good\"", keys)
	}
	if len(skipped) != 2 {
		t.Errorf("skipped = %q, want 2 reasons", skipped)
	}
}

func TestKeySetConcurrentFirstReportsShareOneFetch(t *testing.T) {
	a := leaktest.NewSigner(t)
	srv := leaktest.NewKeyServer(t, a)
	ks := newKeySet(t, srv.URL(), &clock{t: time.Now()})
	body := []byte(`[]`)
	sig := a.Sign(body)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() { errs <- ks.Verify(context.Background(), body, a.ID, sig) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Verify = %v", err)
		}
	}
	if n, _ := srv.Fetches(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
}

func pemOf(t *testing.T, pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func quote(s string) string {
	return `"` + strings.NewReplacer("\n", `\n`, `"`, `\"`).Replace(s) + `"`
}

// TestVerifyAcceptsSignaturesMadeWithOpenSSL follows docs/SECRET_SCANNING.md's
// "Trying it without GitHub": a P-256 key made with openssl, its public half
// in a keys document, a report signed with `openssl dgst -sha256 -sign`.
func TestVerifyAcceptsSignaturesMadeWithOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		msg := "openssl is not installed (apt-get install openssl): the documented shell recipe cannot be checked here"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "github-test.pem")
	run("ec", "-in", "github-test.pem", "-pubout", "-out", "github-test.pub")
	pub, err := os.ReadFile(filepath.Join(dir, "github-test.pub"))
	if err != nil {
		t.Fatal(err)
	}
	report := []byte(`[{"token":"dk_x","type":"keygate_api_key","url":"","source":"content"}]`)
	if err := os.WriteFile(filepath.Join(dir, "report.json"), report, 0o600); err != nil {
		t.Fatal(err)
	}
	sig := base64.StdEncoding.EncodeToString(run("dgst", "-sha256", "-sign", "github-test.pem", "report.json"))

	doc := `{"public_keys":[{"key_identifier":"test","key":` + quote(string(pub)) + `,"is_current":true}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(doc)) }))
	defer srv.Close()
	ks := newKeySet(t, srv.URL+"/keys.json", &clock{t: time.Now()})
	if err := ks.Verify(context.Background(), report, "test", sig); err != nil {
		t.Fatalf("Verify of an openssl signature: %v", err)
	}
	if err := ks.Verify(context.Background(), append(report, ' '), "test", sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify of the openssl signature over another body = %v, want ErrBadSignature", err)
	}
}

// TestVerifyAcceptsGitHubsPublishedExample verifies the example that
// GitHub's partner program documentation gave (github/docs, the Python
// validation sample): a payload, its signature and the public key of
// identifier 90a42116…, a key GitHub signed reports with. It shows that
// Verify reads GitHub's own signatures, not only the test's.
func TestVerifyAcceptsGitHubsPublishedExample(t *testing.T) {
	const (
		id      = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"
		payload = `[{"token":"some_token","type":"some_type","url":"some_url"}]`
		sig     = "MEUCIQDKZokqnCjrRtw0tni+2Ltvl/uiMJ1EGumEsp1BsNr32AIgQY1YXD2nlj+XNfGK4rBfkMJ1JDOQcYXxa2sY8FNkrKc="
		pub     = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq\nkCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==\n-----END PUBLIC KEY-----\n"
	)
	doc := `{"public_keys":[{"key_identifier":"` + id + `","key":` + quote(pub) + `,"is_current":true}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(doc)) }))
	defer srv.Close()
	ks := newKeySet(t, srv.URL, &clock{t: time.Now()})
	if err := ks.Verify(context.Background(), []byte(payload), id, sig); err != nil {
		t.Fatalf("Verify of GitHub's example: %v", err)
	}
	if err := ks.Verify(context.Background(), []byte(payload+"\n"), id, sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify of GitHub's example with a newline added = %v, want ErrBadSignature", err)
	}
}

func TestKeySetFollowsRedirectsOnlyToURLsItWouldAccept(t *testing.T) {
	a := leaktest.NewSigner(t)
	keys := leaktest.NewKeyServer(t, a)
	body := []byte(`[]`)
	for _, tt := range []struct {
		name, location string
		want           error
		wantLog        string
	}{
		{"to the loopback key server", keys.URL(), nil, ""},
		// .invalid never resolves: were the check missing, nothing would
		// leave the machine either.
		{"to plain http elsewhere", "http://keys.invalid/secret_scanning", ErrKeysUnavailable, "http is allowed only to a loopback host"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.RedirectHandler(tt.location, http.StatusFound))
			defer srv.Close()
			core, logs := observer.New(zapcore.WarnLevel)
			ks, err := NewKeySet(KeySetConfig{URL: srv.URL, Logger: zap.New(core)})
			if err != nil {
				t.Fatal(err)
			}
			if err := ks.Verify(context.Background(), body, a.ID, a.Sign(body)); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if tt.wantLog != "" {
				entries := logs.All()
				if len(entries) != 1 || !strings.Contains(fmt.Sprint(entries[0].ContextMap()["error"]), tt.wantLog) {
					t.Fatalf("logged %v, want the fetch's error saying %q", entries, tt.wantLog)
				}
			}
		})
	}
}
