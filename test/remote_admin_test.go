package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// remoteAdminCaddyfile is the part of the remote-admin config a Caddyfile
// can say; the test adapts it to JSON and adds admin.identity and
// admin.remote, which the Caddyfile's admin option does not have.
// skip_install_trust keeps Caddy's local CA out of the system's trust
// store.
const remoteAdminCaddyfile = `{
	admin unix/{{.Extra.Socket}}|0660
	persist_config off
	skip_install_trust
}

http://127.0.0.1:{{.Site}} {
	apikey
	respond "ok"
}
`

// clientCert is a self-signed client certificate made by the test.
type clientCert struct {
	tls tls.Certificate
	// der64 is the certificate as admin.remote.access_control's
	// public_keys want it: base64 DER.
	der64 string
}

func newClientCert(t *testing.T, name string) clientCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return clientCert{
		tls:   tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		der64: base64.StdEncoding.EncodeToString(der),
	}
}

// TestRemoteAdminWithClientCertificates runs Caddy's remote admin (mutual
// TLS on its own port, the server's certificate from Caddy's local CA
// through admin.identity) with two client certificates: a reader allowed
// GET under /apikeys only, and an operator allowed every key method under
// /apikeys. The reader lists keys but cannot create one or POST /load;
// the operator creates a key that works at the site but cannot read the
// config; a client without a certificate, or with an unknown one, does
// not get through the TLS handshake.
func TestRemoteAdminWithClientCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	ports := Ports{Site: freePort(t), Dir: dir, Extra: map[string]any{"Socket": sock}}
	remote := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	reader, operator, stranger := newClientCert(t, "reader"), newClientCert(t, "operator"), newClientCert(t, "stranger")

	g := &Gateway{t: t, Ports: ports}
	caddyfile := filepath.Join(dir, "Caddyfile.remote")
	if err := os.WriteFile(caddyfile, []byte(g.Render(remoteAdminCaddyfile)), 0o600); err != nil {
		t.Fatal(err)
	}
	adapted, err := exec.Command(keygateBin, "adapt", "--config", caddyfile, "--adapter", "caddyfile").Output()
	if err != nil {
		t.Fatalf("keygate adapt: %v", err)
	}
	var config map[string]any
	if err := json.Unmarshal(adapted, &config); err != nil {
		t.Fatalf("adapted config: %v: %s", err, adapted)
	}
	admin := config["admin"].(map[string]any)
	admin["identity"] = map[string]any{
		"identifiers": []string{"127.0.0.1"},
		"issuers":     []any{map[string]any{"module": "internal"}},
	}
	admin["remote"] = map[string]any{
		"listen": remote,
		"access_control": []any{
			map[string]any{
				"public_keys": []string{reader.der64},
				"permissions": []any{map[string]any{"paths": []string{"/apikeys"}, "methods": []string{"GET"}}},
			},
			map[string]any{
				"public_keys": []string{operator.der64},
				"permissions": []any{map[string]any{"paths": []string{"/apikeys"}, "methods": []string{"GET", "POST", "PATCH", "DELETE"}}},
			},
		},
	}
	full, err := json.MarshalIndent(config, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, dir, "keygate.json", string(full), ports, func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})

	// The server's certificate is issued by Caddy's local CA, whose root
	// is in the data directory once made; the identity certificate is
	// obtained in the background, so wait for a handshake to succeed.
	rootPath := filepath.Join(dir, "data", "caddy", "pki", "authorities", "local", "root.crt")
	client := func(c *clientCert) *http.Client {
		roots := x509.NewCertPool()
		if pem, err := os.ReadFile(rootPath); err == nil {
			roots.AppendCertsFromPEM(pem)
		}
		cfg := &tls.Config{RootCAs: roots}
		if c != nil {
			cfg.Certificates = []tls.Certificate{c.tls}
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	do := func(c *http.Client, method, path, body string) (int, string, error) {
		req, err := http.NewRequest(method, "https://"+remote+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	deadline := time.Now().Add(waitLimit)
	for {
		_, _, err := do(client(&reader), http.MethodGet, "/apikeys", "")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remote admin not answering after %v: %v\n%s", waitLimit, err, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The operator creates a key, which works at the site.
	status, body, err := do(client(&operator), http.MethodPost, "/apikeys", `{"name":"made remotely","scope":"full","expires_in":"1d"}`)
	if err != nil || status != http.StatusCreated {
		t.Fatalf("operator POST /apikeys: %d %s %v", status, body, err)
	}
	var created struct {
		Secret string `json:"secret"`
		APIKey APIKey `json:"api_key"`
	}
	if err := json.Unmarshal([]byte(body), &created); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", ports.Site), nil)
	req.Header = WithKey(created.Secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the key made remotely at the site: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	for _, c := range []struct {
		who          string
		client       *http.Client
		method, path string
		body         string
		want         int
	}{
		{"reader", client(&reader), http.MethodGet, "/apikeys", "", http.StatusOK},
		{"reader", client(&reader), http.MethodGet, "/apikeys/" + created.APIKey.ID, "", http.StatusOK},
		// /apikeys covers every path under it, the backup included.
		{"reader", client(&reader), http.MethodGet, "/apikeys/backup", "", http.StatusOK},
		{"reader", client(&reader), http.MethodPost, "/apikeys", `{"name":"x","scope":"full","expires_in":"1d"}`, http.StatusForbidden},
		{"reader", client(&reader), http.MethodDelete, "/apikeys/" + created.APIKey.ID, "", http.StatusForbidden},
		{"reader", client(&reader), http.MethodPost, "/load", `{}`, http.StatusForbidden},
		{"reader", client(&reader), http.MethodGet, "/config/", "", http.StatusForbidden},
		{"operator", client(&operator), http.MethodGet, "/config/", "", http.StatusForbidden},
		{"operator", client(&operator), http.MethodPost, "/load", `{}`, http.StatusForbidden},
		{"operator", client(&operator), http.MethodPost, "/stop", "", http.StatusForbidden},
	} {
		status, body, err := do(c.client, c.method, c.path, c.body)
		if err != nil || status != c.want {
			t.Errorf("%s %s %s: %d %s %v, want %d", c.who, c.method, c.path, status, strings.TrimSpace(body), err, c.want)
		} else if status == http.StatusForbidden {
			t.Logf("%s %s %s: %d %s", c.who, c.method, c.path, status, strings.TrimSpace(body))
		}
	}
	// The key is still active: the reader's DELETE did nothing.
	status, body, _ = do(client(&operator), http.MethodGet, "/apikeys/"+created.APIKey.ID, "")
	if status != http.StatusOK || !strings.Contains(body, `"status":"active"`) {
		t.Errorf("after the reader's DELETE: %d %s", status, body)
	}
	for name, c := range map[string]*http.Client{"no certificate": client(nil), "unknown certificate": client(&stranger)} {
		status, body, err := do(c, http.MethodGet, "/apikeys", "")
		if err == nil {
			t.Errorf("%s: GET /apikeys answered %d %s, want a failed handshake", name, status, body)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
