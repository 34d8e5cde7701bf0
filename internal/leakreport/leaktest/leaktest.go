// Package leaktest plays GitHub's side of the secret scanning partner
// program for tests: it makes ECDSA P-256 key pairs, publishes their
// public halves in a public keys document over HTTP, and signs reports the
// way GitHub does (SHA-256 of the raw body, ASN.1 DER signature, base64).
package leaktest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// Signer is one signing key pair, named by its identifier.
type Signer struct {
	// ID is the key identifier, as GitHub's: 64 hex digits.
	ID   string
	priv *ecdsa.PrivateKey
}

// NewSigner makes a fresh P-256 key pair with a random identifier.
func NewSigner(t testing.TB) *Signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var id [32]byte
	_, _ = rand.Read(id[:])
	return &Signer{ID: hex.EncodeToString(id[:]), priv: priv}
}

// PEM returns the public key as GitHub publishes it: a PEM "PUBLIC KEY"
// block (PKIX).
func (s *Signer) PEM() string {
	der, err := x509.MarshalPKIXPublicKey(&s.priv.PublicKey)
	if err != nil {
		panic(err) // a P-256 public key always marshals
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Sign returns the Github-Public-Key-Signature header of body.
func (s *Signer) Sign(body []byte) string {
	digest := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, s.priv, digest[:])
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// Headers returns the two signature headers of body.
func (s *Signer) Headers(body []byte) http.Header {
	return http.Header{
		"Content-Type":                 {"application/json"},
		"Github-Public-Key-Identifier": {s.ID},
		"Github-Public-Key-Signature":  {s.Sign(body)},
	}
}

// Document returns the public keys document listing signers, the first
// one current.
func Document(signers ...*Signer) []byte {
	type key struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
		IsCurrent     bool   `json:"is_current"`
	}
	var doc struct {
		PublicKeys []key `json:"public_keys"`
	}
	doc.PublicKeys = []key{}
	for i, s := range signers {
		doc.PublicKeys = append(doc.PublicKeys, key{s.ID, s.PEM(), i == 0})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

// KeyServer publishes a public keys document over HTTP, as
// api.github.com/meta/public_keys/secret_scanning does, with an ETag
// answered by 304 to a conditional request.
type KeyServer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	body     []byte
	etag     string
	fetches  atomic.Int64
	notModif atomic.Int64
}

// NewKeyServer starts a server publishing signers, closed when the test
// ends.
func NewKeyServer(t testing.TB, signers ...*Signer) *KeyServer {
	ks := new(KeyServer)
	ks.Publish(Document(signers...))
	ks.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.fetches.Add(1)
		ks.mu.Lock()
		body, etag := ks.body, ks.etag
		ks.mu.Unlock()
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			ks.notModif.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(ks.srv.Close)
	return ks
}

// Publish replaces the document served.
func (ks *KeyServer) Publish(doc []byte) {
	sum := sha256.Sum256(doc)
	ks.mu.Lock()
	ks.body, ks.etag = doc, `"`+hex.EncodeToString(sum[:8])+`"`
	ks.mu.Unlock()
}

// URL is the document's URL (http on 127.0.0.1).
func (ks *KeyServer) URL() string { return ks.srv.URL + "/meta/public_keys/secret_scanning" }

// Fetches returns how many requests the server answered, and how many of
// them with 304 Not Modified.
func (ks *KeyServer) Fetches() (all, notModified int64) {
	return ks.fetches.Load(), ks.notModif.Load()
}

// Report is one token of a report, as GitHub sends it.
type Report struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// Body returns the JSON array GitHub would send for tokens.
func Body(tokens ...Report) []byte {
	if tokens == nil {
		tokens = []Report{}
	}
	b, err := json.Marshal(tokens)
	if err != nil {
		panic(err)
	}
	return b
}

// TokenHash returns the token_hash of token: its SHA-256 in hex.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
