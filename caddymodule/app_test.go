package caddymodule

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/sqlite"
)

// newTestContext returns a Caddy context like the one a config load gives
// a module, canceled when the test ends.
func newTestContext(t *testing.T) caddy.Context {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

func TestAppEffectiveAppliesDefaults(t *testing.T) {
	got, err := (&App{}).effective()
	if err != nil {
		t.Fatal(err)
	}
	want := App{
		Store:            &StoreConfig{Backend: "sqlite", Path: filepath.Join(caddy.AppDataDir(), "keygate", "keys.db")},
		KeyPrefix:        "dk",
		CacheSize:        100000,
		CacheTTL:         caddy.Duration(time.Minute),
		NegativeCacheTTL: caddy.Duration(10 * time.Second),
		LastUsedInterval: caddy.Duration(10 * time.Second),
		SyncInterval:     caddy.Duration(5 * time.Second),
		AuditRetention:   caddy.Duration(400 * 24 * time.Hour),
	}
	if *got.Store != *want.Store {
		t.Errorf("store = %+v, want %+v", *got.Store, *want.Store)
	}
	got.Store, want.Store = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("effective = %+v, want %+v", got, want)
	}
}

func TestAppEffectiveKeepsWhatIsSet(t *testing.T) {
	in := App{
		Store:            &StoreConfig{Backend: "postgres", DSN: "postgres://u@db/keys"},
		KeyPrefix:        "acme",
		CacheSize:        10,
		CacheTTL:         caddy.Duration(time.Second),
		NegativeCacheTTL: caddy.Duration(2 * time.Second),
		LastUsedInterval: caddy.Duration(3 * time.Second),
		SyncInterval:     caddy.Duration(4 * time.Second),
		AuditRetention:   caddy.Duration(5 * time.Hour),
	}
	got, err := in.effective()
	if err != nil {
		t.Fatal(err)
	}
	if *got.Store != *in.Store {
		t.Errorf("store = %+v, want %+v", *got.Store, *in.Store)
	}
	got.Store, in.Store = nil, nil
	if !reflect.DeepEqual(got, in) {
		t.Errorf("effective = %+v, want %+v", got, in)
	}
}

func TestAppEffectiveReplacesPlaceholders(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KEYGATE_TEST_DIR", dir)
	t.Setenv("KEYGATE_TEST_DSN", "postgres://keygate:s3cret@db.internal/keys")
	t.Setenv("KEYGATE_TEST_EMPTY", "")

	got, err := (&App{Store: &StoreConfig{Path: "{env.KEYGATE_TEST_DIR}/keys.db"}}).effective()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "keys.db"); got.Store.Path != want {
		t.Errorf("path = %q, want %q", got.Store.Path, want)
	}

	got, err = (&App{Store: &StoreConfig{Backend: "postgres", DSN: "{env.KEYGATE_TEST_DSN}"}}).effective()
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://keygate:s3cret@db.internal/keys"; got.Store.DSN != want {
		t.Errorf("dsn = %q, want %q", got.Store.DSN, want)
	}

	for _, sc := range []StoreConfig{
		{Backend: "postgres", DSN: "{env.KEYGATE_TEST_EMPTY}"},
		{Backend: "postgres", DSN: "{env.KEYGATE_TEST_UNSET_ANYWHERE}"},
		{Path: "{env.KEYGATE_TEST_EMPTY}"},
	} {
		_, err := (&App{Store: &sc}).effective()
		if err == nil {
			t.Errorf("%+v: no error for an empty placeholder", sc)
			continue
		}
		if !strings.Contains(err.Error(), "KEYGATE_TEST_") {
			t.Errorf("%+v: error %q does not name the placeholder", sc, err)
		}
	}
}

func TestAppEffectiveRejectsBadValues(t *testing.T) {
	tests := []struct {
		name    string
		app     App
		wantErr string
	}{
		{"unknown backend", App{Store: &StoreConfig{Backend: "mysql"}}, `unknown store backend "mysql"`},
		{"dsn for sqlite", App{Store: &StoreConfig{DSN: "postgres://db"}}, "dsn is for the postgres backend"},
		{"path for postgres", App{Store: &StoreConfig{Backend: "postgres", DSN: "x", Path: "/k.db"}}, "path is for the sqlite backend"},
		{"postgres without dsn", App{Store: &StoreConfig{Backend: "postgres"}}, "needs a dsn"},
		{"bad prefix", App{KeyPrefix: "Dk"}, "lowercase"},
		{"negative cache size", App{CacheSize: -1}, "cache_size -1 is negative"},
		{"negative cache ttl", App{CacheTTL: -1}, "cache_ttl"},
		{"negative negative ttl", App{NegativeCacheTTL: -1}, "negative_cache_ttl"},
		{"negative last used interval", App{LastUsedInterval: -1}, "last_used_interval"},
		{"negative sync interval", App{SyncInterval: -1}, "sync_interval"},
		{"negative audit retention", App{AuditRetention: -1}, "audit_retention"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.app.effective()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestAppSharesResourcesWhileAConfigUsesThem(t *testing.T) {
	ctx := newTestContext(t)
	path := filepath.Join(t.TempDir(), "keys.db")
	newApp := func(ttl time.Duration) *App {
		return &App{Store: &StoreConfig{Path: path}, CacheTTL: caddy.Duration(ttl)}
	}

	// A reload provisions the new config's app before the old one is
	// cleaned up.
	old, reloaded, changed := newApp(time.Minute), newApp(time.Minute), newApp(time.Hour)
	for _, a := range []*App{old, reloaded, changed} {
		if err := a.Provision(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if old.res != reloaded.res {
		t.Error("the same configuration got new resources")
	}
	if changed.res == old.res {
		t.Error("a changed configuration got the old resources")
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	res := reloaded.res
	if _, _, err := reloaded.service().Create(context.Background(), adminKey("after reload", "full", "1d")); err != nil {
		t.Errorf("resources closed while a config still uses them: %v", err)
	}
	if err := reloaded.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := res.store.Get(context.Background(), "key_0000000000000000000000"); !errors.Is(err, keystore.ErrClosed) {
		t.Errorf("store after the last Cleanup: %v, want ErrClosed", err)
	}
	if err := changed.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := changed.Cleanup(); err != nil {
		t.Errorf("a second Cleanup: %v", err)
	}
}

func TestAppCleanupAfterAFailedProvision(t *testing.T) {
	ctx := newTestContext(t)
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]*App{
		"bad prefix":          {KeyPrefix: "!"},
		"store cannot open":   {Store: &StoreConfig{Path: filepath.Join(file, "keys.db")}},
		"unknown backend":     {Store: &StoreConfig{Backend: "etcd"}},
		"unset env in path":   {Store: &StoreConfig{Path: "{env.KEYGATE_TEST_NEVER_SET}/k.db"}},
		"postgres bad dsn":    {Store: &StoreConfig{Backend: "postgres", DSN: "postgres://%zz"}},
		"negative cache size": {CacheSize: -5},
	} {
		t.Run(name, func(t *testing.T) {
			if err := a.Provision(ctx); err == nil {
				t.Fatal("provision succeeded")
			}
			if err := a.Cleanup(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
			if a.service() != nil {
				t.Error("a service after a failed provision")
			}
		})
	}
	// The failed store did not stay in the pool: the next try opens again.
	a := &App{Store: &StoreConfig{Path: filepath.Join(file, "keys.db")}}
	if err := a.Provision(ctx); err == nil {
		t.Error("second provision of a broken store succeeded")
	}
}

func TestAppCleanupWritesPendingLastUse(t *testing.T) {
	ctx := newTestContext(t)
	path := filepath.Join(t.TempDir(), "keys.db")
	a := &App{Store: &StoreConfig{Path: path}, LastUsedInterval: caddy.Duration(time.Hour)}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	_, k, err := a.service().Create(context.Background(), adminKey("used", "full", "never"))
	if err != nil {
		t.Fatal(err)
	}
	used := time.Now().UTC().Truncate(time.Microsecond)
	a.res.recorder.Note(k.ID, used)
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}

	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Get(context.Background(), k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.LastUsedAt.Equal(used) {
		t.Errorf("last_used_at = %v, want %v", got.LastUsedAt, used)
	}
}

func TestAppServiceMakesKeysTheHandlerAccepts(t *testing.T) {
	ctx := newTestContext(t)
	a := &App{Store: &StoreConfig{Path: filepath.Join(t.TempDir(), "keys.db")}, KeyPrefix: "acme"}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Cleanup() })
	secret, k, err := a.service().Create(context.Background(), adminKey("svc", "routine", "1h"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "acme_") {
		t.Errorf("secret does not start with the configured prefix acme_")
	}
	h := &Handler{Scopes: []string{"routine"}}
	if err := h.provision(a.res.verifier, a.res.recorder, a.logger); err != nil {
		t.Fatal(err)
	}
	s := serve(t, h, newRequest("POST", "/api/routines/run", apiKeyHeader(secret)))
	if s.upstream == nil || s.upstream.Header.Get(HeaderKeyID) != k.ID {
		t.Fatalf("key refused: %d %s", s.resp.Code, s.resp.Body)
	}

	// A revocation through the service takes effect at once.
	if _, err := a.service().Revoke(context.Background(), k.ID); err != nil {
		t.Fatal(err)
	}
	s = serve(t, h, newRequest("POST", "/api/routines/run", apiKeyHeader(secret)))
	if code, _ := errorAnswer(t, s.resp.Body.Bytes()); code != string(apikey.CodeRevoked) {
		t.Errorf("after revocation: %d %s, want api_key_revoked", s.resp.Code, s.resp.Body)
	}
}

// adminKey is what the admin API asks the key service for.
func adminKey(name, scope, expiresIn string) keyservice.NewKey {
	return keyservice.NewKey{Name: name, Scope: scope, ExpiresIn: expiresIn, CreatedBy: apikey.Actor{Type: apikey.ActorAdmin}}
}
