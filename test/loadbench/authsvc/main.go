// Command authsvc is the load benchmark's forward_auth baseline: the small
// authentication service a Caddy user would write to check API keys
// without keygate, and put behind Caddy's forward_auth.
//
// It checks "Authorization: ApiKey <key>" with keygate's own key format
// (internal/apikey: scheme, prefix, length, checksum) and looks the key's
// SHA-256 up in the same SQLite key store file keygate uses
// (internal/keystore/sqlite), then answers 200 with X-Api-Key-Id,
// X-Api-Key-Name and X-Api-Key-Scope for forward_auth's copy_headers, or
// 401 with a JSON error. What it leaves out is what keygate adds on top:
// scopes per route, last-used times, metrics, change-log invalidation.
//
// With -cache map (the default) it keeps every key it found in a plain map
// behind a read-write lock, without expiry or bound, as a small service
// does once a database query per request shows up in its latency; unknown
// keys are not remembered, so each costs a store query. With -cache none it
// queries the store on every request, as the simplest service does.
//
//	go run ./test/loadbench/authsvc -listen 127.0.0.1:9100 -db keys.db
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"sync"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/sqlite"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9100", "address to listen on")
	db := flag.String("db", "", "SQLite key store file (required)")
	prefix := flag.String("prefix", apikey.DefaultPrefix, "key prefix")
	cache := flag.String("cache", "map", "map: remember found keys in a map; none: query the store on every request")
	flag.Parse()
	if *db == "" {
		log.Fatal("authsvc: -db is required")
	}
	if *cache != "map" && *cache != "none" {
		log.Fatalf("authsvc: -cache %q: want map or none", *cache)
	}
	format, err := apikey.NewFormat(*prefix)
	if err != nil {
		log.Fatalf("authsvc: %v", err)
	}
	ctx := context.Background()
	store, err := sqlite.Open(ctx, *db)
	if err != nil {
		log.Fatalf("authsvc: %v", err)
	}
	defer store.Close()

	svc := &service{format: format, store: store}
	if *cache == "map" {
		svc.keys = make(map[apikey.Digest]*apikey.Key)
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           svc,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
	}
	log.Fatal(srv.ListenAndServe())
}

// service answers forward_auth's subrequests.
type service struct {
	format *apikey.Format
	store  *sqlite.Store

	mu   sync.RWMutex
	keys map[apikey.Digest]*apikey.Key // nil: no cache
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	values := r.Header["Authorization"]
	if len(values) != 1 {
		deny(w, http.StatusUnauthorized, "missing_api_key")
		return
	}
	secret, err := apikey.ParseAuthorization(values[0])
	if err == nil {
		err = s.format.Check(secret)
	}
	if err != nil {
		deny(w, http.StatusUnauthorized, "malformed_api_key")
		return
	}
	k, err := s.lookup(r.Context(), apikey.DigestOf(secret))
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		deny(w, http.StatusUnauthorized, "invalid_api_key")
		return
	case err != nil:
		deny(w, http.StatusServiceUnavailable, "key_store_unavailable")
		return
	case !k.RevokedAt.IsZero():
		deny(w, http.StatusUnauthorized, "api_key_revoked")
		return
	case k.Expired(time.Now()):
		deny(w, http.StatusUnauthorized, "api_key_expired")
		return
	}
	h := w.Header()
	h.Set("X-Api-Key-Id", k.ID)
	h.Set("X-Api-Key-Name", k.Name)
	h.Set("X-Api-Key-Scope", k.Scope.String())
	w.WriteHeader(http.StatusOK)
}

// lookup returns the key of digest d, from the map if there is one.
func (s *service) lookup(ctx context.Context, d apikey.Digest) (*apikey.Key, error) {
	if s.keys != nil {
		s.mu.RLock()
		k, ok := s.keys[d]
		s.mu.RUnlock()
		if ok {
			return k, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	k, err := s.store.GetByDigest(ctx, d)
	if err != nil {
		return nil, err
	}
	if s.keys != nil {
		s.mu.Lock()
		s.keys[d] = &k
		s.mu.Unlock()
	}
	return &k, nil
}

// deny answers a refused request with a JSON error of code.
func deny(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":{"code":"` + code + `"}}` + "\n"))
}
