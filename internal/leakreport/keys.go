// Package leakreport receives leaked-key reports from GitHub's secret
// scanning partner program: it verifies a report's signature against the
// public keys GitHub publishes, parses the report, asks the key service
// what to do with each token, and answers GitHub with a label per token.
// It knows nothing of Caddy: caddymodule's apikey_leak_report handler is a
// thin wrapper around Handler.
package leakreport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
)

// DefaultPublicKeysURL is where GitHub publishes the keys that sign secret
// scanning reports.
const DefaultPublicKeysURL = "https://api.github.com/meta/public_keys/secret_scanning"

// Bounds of the public keys document and its fetch.
const (
	// MaxDocumentSize is the largest public keys document accepted, in
	// bytes. GitHub's holds a few keys in about a kilobyte.
	MaxDocumentSize = 64 << 10
	// FetchTimeout bounds one fetch of the document, redirects included.
	FetchTimeout = 10 * time.Second
	// RefetchInterval is the least time between two fetches: a report
	// signed by an identifier the cached document lacks makes the set
	// fetch the document again, but not more often than this, so that
	// forged identifiers cannot make keygate hammer GitHub (whose API
	// limits unauthenticated clients to a few requests a minute).
	RefetchInterval = time.Minute
	// MaxDocumentAge is how long a fetched document is used before it is
	// fetched again (conditionally, with its ETag) on the next report, so
	// that a key GitHub withdraws stops being trusted. If that fetch
	// fails, the old document is kept.
	MaxDocumentAge = time.Hour
	// MaxKeyIdentifierLength bounds the Github-Public-Key-Identifier
	// header; GitHub's are 64 hex digits.
	MaxKeyIdentifierLength = 256
	// maxRedirects bounds the redirects a fetch follows.
	maxRedirects = 3
)

// Errors of KeySet.Verify, checked with errors.Is.
var (
	// ErrMissingSignature: a signature header is missing or empty.
	ErrMissingSignature = errors.New("missing signature")
	// ErrMalformedSignature: a signature header cannot be read (not
	// base64, an over-long key identifier, a header given twice).
	ErrMalformedSignature = errors.New("malformed signature")
	// ErrUnknownKey: the public keys document has no key of that
	// identifier, even after fetching it again (or it was fetched less
	// than RefetchInterval ago).
	ErrUnknownKey = errors.New("unknown key identifier")
	// ErrBadSignature: the signature does not verify.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrKeysUnavailable: no public keys document could be fetched yet.
	ErrKeysUnavailable = errors.New("public keys unavailable")
)

// CheckPublicKeysURL parses raw, the URL of a public keys document. It must
// be https, or http to a loopback host (localhost, 127.0.0.0/8, ::1): a
// local mirror on the same machine. Any other plain-http URL is refused,
// since whoever sits on the path could then sign reports and revoke keys.
func CheckPublicKeysURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("public_keys_url %s is not a URL", apikey.QuoteInput(raw))
	}
	if u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("public_keys_url %s must be an absolute http(s) URL without user information", apikey.QuoteInput(raw))
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("public_keys_url %s: http is allowed only to a loopback host (localhost, 127.0.0.1, [::1]); use https", apikey.QuoteInput(raw))
		}
	default:
		return nil, fmt.Errorf("public_keys_url %s must be https (or http to a loopback host)", apikey.QuoteInput(raw))
	}
	return u, nil
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// KeySetConfig configures a KeySet.
type KeySetConfig struct {
	// URL is the public keys document's; CheckPublicKeysURL must accept
	// it. Default: DefaultPublicKeysURL.
	URL string
	// Client fetches the document. Default: a client that follows at most
	// 3 redirects, each to a URL CheckPublicKeysURL accepts.
	Client *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger logs fetches; default none.
	Logger *zap.Logger
}

// KeySet holds the public keys of a document such as GitHub's
// {"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]},
// fetched on first use and kept. Its methods are safe for concurrent use;
// concurrent callers that need a fetch share one.
type KeySet struct {
	url    string
	client *http.Client
	now    func() time.Time
	logger *zap.Logger

	mu        sync.Mutex
	inflight  chan struct{}               // closed when the running fetch ends; nil when none runs
	keys      map[string]*ecdsa.PublicKey // nil until a document was fetched
	etag      string
	fetchedAt time.Time // of the document in keys (a 304 renews it)
	triedAt   time.Time // when the last fetch started
}

// NewKeySet returns a key set over cfg.URL. It fetches nothing yet.
func NewKeySet(cfg KeySetConfig) (*KeySet, error) {
	if cfg.URL == "" {
		cfg.URL = DefaultPublicKeysURL
	}
	u, err := CheckPublicKeysURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Timeout: FetchTimeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) > maxRedirects {
					return fmt.Errorf("more than %d redirects", maxRedirects)
				}
				_, err := CheckPublicKeysURL(req.URL.String())
				return err
			},
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &KeySet{url: u.String(), client: cfg.Client, now: cfg.Now, logger: cfg.Logger}, nil
}

// Verify checks that sig, the base64 ASN.1 (DER) ECDSA signature of the
// Github-Public-Key-Signature header, signs the SHA-256 of body with the
// key that id, the Github-Public-Key-Identifier header, names. The
// headers are checked before any fetch, so garbage costs no request to
// GitHub. Its errors wrap the package's sentinels.
func (ks *KeySet) Verify(ctx context.Context, body []byte, id, sig string) error {
	if id == "" || sig == "" {
		return fmt.Errorf("%w: the Github-Public-Key-Identifier and Github-Public-Key-Signature headers are required", ErrMissingSignature)
	}
	if len(id) > MaxKeyIdentifierLength {
		return fmt.Errorf("%w: the Github-Public-Key-Identifier header is longer than %d bytes", ErrMalformedSignature, MaxKeyIdentifierLength)
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sig))
	if err != nil {
		return fmt.Errorf("%w: the Github-Public-Key-Signature header is not base64", ErrMalformedSignature)
	}
	pub, err := ks.Key(ctx, id)
	if err != nil {
		return err
	}
	digest := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(pub, digest[:], der) {
		return fmt.Errorf("%w with key %s", ErrBadSignature, apikey.QuoteInput(id))
	}
	return nil
}

// Key returns the public key named id. The document is fetched when there
// is none yet, when the one held is older than MaxDocumentAge, or when it
// lacks id; but a fetch starts at most once per RefetchInterval, and
// callers that arrive while one runs wait for it. A failed fetch keeps the
// document held.
func (ks *KeySet) Key(ctx context.Context, id string) (*ecdsa.PublicKey, error) {
	ks.mu.Lock()
	now := ks.now()
	if pub, ok := ks.keys[id]; ok && now.Sub(ks.fetchedAt) < MaxDocumentAge {
		ks.mu.Unlock()
		return pub, nil
	}
	wait := ks.inflight
	if wait == nil && (ks.triedAt.IsZero() || now.Sub(ks.triedAt) >= RefetchInterval) {
		done := make(chan struct{})
		ks.inflight, ks.triedAt, wait = done, now, done
		// The fetch outlives a caller that gives up (it is bounded by
		// FetchTimeout), so that the next one finds its result.
		go func() {
			if err := ks.fetch(context.WithoutCancel(ctx)); err != nil {
				ks.logger.Warn("fetching the public keys of leak reports", zap.String("url", ks.url), zap.Error(err))
			}
			ks.mu.Lock()
			ks.inflight = nil
			ks.mu.Unlock()
			close(done)
		}()
	}
	ks.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return ks.lookup(id)
}

// lookup returns the key id of the document held.
func (ks *KeySet) lookup(id string) (*ecdsa.PublicKey, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	// The errors are answered to whoever sent the report: they do not
	// name public_keys_url (the log does).
	if ks.keys == nil {
		return nil, fmt.Errorf("%w: the public keys that verify reports could not be fetched; send the report again later", ErrKeysUnavailable)
	}
	if pub, ok := ks.keys[id]; ok {
		return pub, nil
	}
	return nil, fmt.Errorf("%w %s: not among the published public keys", ErrUnknownKey, apikey.QuoteInput(id))
}

// document is the JSON of a public keys document.
type document struct {
	PublicKeys []struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
		IsCurrent     bool   `json:"is_current"`
	} `json:"public_keys"`
}

// fetch gets the document, conditionally when one is held, and keeps it.
func (ks *KeySet) fetch(ctx context.Context) error {
	ks.mu.Lock()
	etag := ks.etag
	ks.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "keygate")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := ks.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		ks.mu.Lock()
		ks.fetchedAt = ks.now()
		ks.mu.Unlock()
		return nil
	case http.StatusOK:
	default:
		return fmt.Errorf("GET %s: status %d", ks.url, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxDocumentSize+1))
	if err != nil {
		return fmt.Errorf("GET %s: reading: %w", ks.url, err)
	}
	if len(data) > MaxDocumentSize {
		return fmt.Errorf("GET %s: the document is larger than %d bytes", ks.url, MaxDocumentSize)
	}
	keys, skipped, err := ParseDocument(data)
	if err != nil {
		return fmt.Errorf("GET %s: %w", ks.url, err)
	}
	for _, s := range skipped {
		ks.logger.Warn("skipping a public key of the leak report keys document", zap.String("url", ks.url), zap.String("reason", s))
	}
	ks.mu.Lock()
	ks.keys, ks.etag, ks.fetchedAt = keys, resp.Header.Get("ETag"), ks.now()
	ks.mu.Unlock()
	ks.logger.Info("fetched the public keys of leak reports", zap.String("url", ks.url), zap.Int("keys", len(keys)))
	return nil
}

// ParseDocument reads a public keys document: every entry with an
// identifier and a PEM ECDSA P-256 public key is kept, by identifier,
// whether is_current or not (GitHub may still sign with a key it is
// retiring); an entry that is not is skipped, and why is returned. A
// document that is not JSON of that shape, or holds no usable key, is an
// error.
func ParseDocument(data []byte) (keys map[string]*ecdsa.PublicKey, skipped []string, err error) {
	var doc document
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("the public keys document is not JSON of the form {\"public_keys\": [...]}: %v", err)
	}
	keys = make(map[string]*ecdsa.PublicKey, len(doc.PublicKeys))
	for i, e := range doc.PublicKeys {
		if e.KeyIdentifier == "" || len(e.KeyIdentifier) > MaxKeyIdentifierLength {
			skipped = append(skipped, fmt.Sprintf("entry %d: key_identifier is empty or longer than %d bytes", i, MaxKeyIdentifierLength))
			continue
		}
		pub, err := parsePublicKey(e.Key)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("entry %d (%s): %v", i, apikey.QuoteInput(e.KeyIdentifier), err))
			continue
		}
		keys[e.KeyIdentifier] = pub
	}
	if len(keys) == 0 {
		return nil, skipped, errors.New("the public keys document holds no ECDSA P-256 key")
	}
	return keys, skipped, nil
}

// parsePublicKey reads a PEM "PUBLIC KEY" (PKIX) block holding an ECDSA
// P-256 key.
func parsePublicKey(text string) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		return nil, errors.New("key is not PEM")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key is not a PKIX public key: %v", err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("key is not ECDSA P-256")
	}
	return pub, nil
}
