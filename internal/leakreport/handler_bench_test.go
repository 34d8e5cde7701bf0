package leakreport_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/postgres"
	"github.com/docana/keygate/internal/keystore/postgres/pgtest"
	"github.com/docana/keygate/internal/keystore/sqlite"
	"github.com/docana/keygate/internal/leakreport"
	"github.com/docana/keygate/internal/leakreport/leaktest"
)

// BenchmarkReportOfMaxTokensKnownKeys measures the largest report accepted:
// MaxTokens tokens, every one an active key of the store, all revoked, on
// each backend. It is what bounds the time GitHub waits for an answer.
func BenchmarkReportOfMaxTokensKnownKeys(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) keystore.Store
	}{
		{"sqlite", func(b *testing.B) keystore.Store {
			s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "keys.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"postgres", func(b *testing.B) keystore.Store {
			s, err := postgres.Open(context.Background(), pgtest.NewDatabase(b), zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			store := be.open(b)
			defer store.Close()
			format, _ := apikey.NewFormat("dk")
			svc := keyservice.New(store, format, nil, nil, nil)
			signer := leaktest.NewSigner(b)
			keys := leaktest.NewKeyServer(b, signer)
			ks, err := leakreport.NewKeySet(leakreport.KeySetConfig{URL: keys.URL()})
			if err != nil {
				b.Fatal(err)
			}
			h, err := leakreport.New(leakreport.Config{Keys: ks, Format: format, Service: svc, Revoke: true})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				b.StopTimer()
				tokens := make([]leaktest.Report, leakreport.MaxTokens)
				for i := range tokens {
					secret, _, err := svc.Create(context.Background(), keyservice.NewKey{
						Name: "bench", Scope: "full", ExpiresIn: "1d", CreatedBy: apikey.Actor{Type: apikey.ActorAdmin, ID: "bench"},
					})
					if err != nil {
						b.Fatal(err)
					}
					tokens[i] = leaktest.Report{Token: secret, Type: "keygate_api_key", URL: "https://github.com/o/r/blob/1/.env", Source: "content"}
				}
				body := leaktest.Body(tokens...)
				req := httptest.NewRequest(http.MethodPost, "/leaks/github", bytes.NewReader(body))
				req.Header = signer.Headers(body)
				w := httptest.NewRecorder()
				b.StartTimer()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK || bytes.Count(w.Body.Bytes(), []byte("true_positive")) != leakreport.MaxTokens {
					b.Fatalf("status %d: %.200s", w.Code, w.Body)
				}
			}
		})
	}
}
