package storetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// invalidKeys are the ways a key given to Create or Rotate can break a rule
// of keystore.CheckNew, each applied to a valid key.
var invalidKeys = []struct {
	name   string
	mutate func(k *apikey.Key)
}{
	{"unknown scope 0", func(k *apikey.Key) { k.Scope = 0 }},
	{"unknown scope 99", func(k *apikey.Key) { k.Scope = 99 }},
	{"empty expiry preset", func(k *apikey.Key) { k.Expiry = "" }},
	{"unknown expiry preset", func(k *apikey.Key) { k.Expiry = "2h" }},
	{"expiry preset in upper case", func(k *apikey.Key) { k.Expiry = "1D" }},
	{"never-expiring preset with an expiry time", func(k *apikey.Key) { k.Expiry = apikey.ExpiryNever }},
	{"expiring preset without an expiry time", func(k *apikey.Key) { k.ExpiresAt = time.Time{} }},
	{"expiry time before the creation", func(k *apikey.Key) { k.ExpiresAt = k.CreatedAt.Add(-time.Hour) }},
	{"empty name", func(k *apikey.Key) { k.Name = "" }},
	{"name of spaces only", func(k *apikey.Key) { k.Name = " \u00a0\u3000" }},
	{"name of 101 characters", func(k *apikey.Key) { k.Name = strings.Repeat("n", apikey.MaxNameLength+1) }},
	{"name with a newline", func(k *apikey.Key) { k.Name = "a\nb" }},
	{"name with a C1 control", func(k *apikey.Key) { k.Name = "a\u0085b" }},
	{"name with a bidi override", func(k *apikey.Key) { k.Name = "abc\u202etxt" }},
	{"name with a zero-width space", func(k *apikey.Key) { k.Name = "a\u200bb" }},
	{"name of invalid UTF-8", func(k *apikey.Key) { k.Name = "a\xffb" }},
	{"empty ID", func(k *apikey.Key) { k.ID = "" }},
	{"ID without its prefix", func(k *apikey.Key) { k.ID = "xyz_" + k.ID[4:] }},
	{"ID too long", func(k *apikey.Key) { k.ID += "x" }},
	{"ID with a quote", func(k *apikey.Key) { k.ID = k.ID[:len(k.ID)-1] + "'" }},
	{"empty hint", func(k *apikey.Key) { k.Hint = "" }},
	{"zero digest", func(k *apikey.Key) { k.Digest = apikey.Digest{} }},
	{"zero creation time", func(k *apikey.Key) {
		k.CreatedAt = time.Time{}
		k.Expiry, k.ExpiresAt = apikey.ExpiryNever, time.Time{}
	}},
	{"RevokedAt set", func(k *apikey.Key) { k.RevokedAt = k.CreatedAt }},
	{"LastUsedAt set", func(k *apikey.Key) { k.LastUsedAt = k.CreatedAt }},
	{"ReplacedBy set", func(k *apikey.Key) { k.ReplacedBy = k.ID }},
	{"owner with a space", func(k *apikey.Key) { k.Owner = "org a" }},
	{"owner with a slash", func(k *apikey.Key) { k.Owner = "org/a" }},
	{"owner of 129 characters", func(k *apikey.Key) { k.Owner = strings.Repeat("o", apikey.MaxOwnerLength+1) }},
	{"owner with a newline", func(k *apikey.Key) { k.Owner = "org\n" }},
	{"metadata name in upper case", func(k *apikey.Key) { k.Metadata = map[string]string{"Plan": "pro"} }},
	{"metadata name starting with a digit", func(k *apikey.Key) { k.Metadata = map[string]string{"1plan": "pro"} }},
	{"metadata value of 257 bytes", func(k *apikey.Key) { k.Metadata = map[string]string{"plan": strings.Repeat("x", 257)} }},
	{"metadata value with a control", func(k *apikey.Key) { k.Metadata = map[string]string{"plan": "a\x00b"} }},
	{"17 metadata entries", func(k *apikey.Key) {
		k.Metadata = map[string]string{}
		for i := range apikey.MaxMetadataEntries + 1 {
			k.Metadata[string(rune('a'+i))] = "v"
		}
	}},
	{"no creator", func(k *apikey.Key) { k.CreatedBy = apikey.Actor{} }},
	{"creator of an unknown type", func(k *apikey.Key) { k.CreatedBy = apikey.Actor{Type: "root"} }},
	{"creator ID with a control", func(k *apikey.Key) { k.CreatedBy = apikey.Actor{Type: apikey.ActorAdmin, ID: "a\nb"} }},
	{"creator ID of 129 bytes", func(k *apikey.Key) {
		k.CreatedBy = apikey.Actor{Type: apikey.ActorAdmin, ID: strings.Repeat("a", apikey.MaxActorIDLength+1)}
	}},
	{"empty allowed origin", func(k *apikey.Key) { k.AllowedOrigins = []string{""} }},
	{"33 allowed IPs", func(k *apikey.Key) { k.AllowedIPs = slices.Repeat([]string{"10.0.0.1"}, apikey.MaxPolicyEntries+1) }},
	{"allowed origin with a path", func(k *apikey.Key) { k.AllowedOrigins = []string{"https://a.example/"} }},
	{"allowed origin with scheme ftp", func(k *apikey.Key) { k.AllowedOrigins = []string{"ftp://a.example"} }},
	{"allowed origin not normalised", func(k *apikey.Key) { k.AllowedOrigins = []string{"https://A.example:443"} }},
	{"allowed origin twice", func(k *apikey.Key) { k.AllowedOrigins = []string{"https://a.example", "https://a.example"} }},
	{"allowed IP that is a host name", func(k *apikey.Key) { k.AllowedIPs = []string{"example.com"} }},
	{"allowed IP prefix with host bits", func(k *apikey.Key) { k.AllowedIPs = []string{"10.0.0.1/8"} }},
	{"allowed IP not normalised", func(k *apikey.Key) { k.AllowedIPs = []string{"10.0.0.1/32"} }},
	{"rate limit with a control", func(k *apikey.Key) { k.RateLimits = []string{"1\t/s"} }},
	{"rate limit without a window count", func(k *apikey.Key) { k.RateLimits = []string{"10/s"} }},
	{"rate limit of 0", func(k *apikey.Key) { k.RateLimits = []string{"0/1m"} }},
	{"rate limit window of 31d", func(k *apikey.Key) { k.RateLimits = []string{"10/31d"} }},
	{"rate limit not normalised", func(k *apikey.Key) { k.RateLimits = []string{"10/60s"} }},
	{"two rate limits of one window", func(k *apikey.Key) { k.RateLimits = []string{"10/1m", "20/1m"} }},
	{"five rate limits", func(k *apikey.Key) { k.RateLimits = []string{"1/1s", "2/2s", "3/3s", "4/4s", "5/5s"} }},
}

func testInvalidInput(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	t.Run("Create refuses a key CheckNew refuses with ErrInvalidKey, storing nothing and adding no change", func(t *testing.T) {
		s := open(t)
		for _, tc := range invalidKeys {
			k := newKey(t, "valid name", apikey.ScopeWidget, apikey.ExpiryDay, base)
			tc.mutate(&k)
			if keystore.CheckNew(k) == nil {
				t.Fatalf("%s: CheckNew accepts the key: the case tests nothing", tc.name)
			}
			if err := s.Create(t.Context(), k, testAudit); !errors.Is(err, keystore.ErrInvalidKey) {
				t.Errorf("Create(%s) = %v, want ErrInvalidKey", tc.name, err)
			}
			checkNothingStored(t, s, tc.name, k)
		}
	})

	t.Run("Rotate refuses a new key CheckNew refuses with ErrInvalidKey, leaving the old key as it was", func(t *testing.T) {
		s := open(t)
		old := create(t, s, "old", apikey.ExpiryNever, base)
		before := seq(t, s)
		for _, tc := range invalidKeys {
			next := newKey(t, "old", apikey.ScopeFull, apikey.ExpiryDay, base.Add(time.Hour))
			tc.mutate(&next)
			if _, err := s.Rotate(t.Context(), old.ID, next, base.Add(2*time.Hour), testAudit); !errors.Is(err, keystore.ErrInvalidKey) {
				t.Errorf("Rotate(%s) = %v, want ErrInvalidKey", tc.name, err)
			}
			if next.ID != old.ID {
				if _, err := s.Get(t.Context(), next.ID); !errors.Is(err, keystore.ErrNotFound) {
					t.Errorf("Get(new key with %s) = %v, want ErrNotFound", tc.name, err)
				}
			}
			if next.Digest != old.Digest {
				if _, err := s.GetByDigest(t.Context(), next.Digest); !errors.Is(err, keystore.ErrNotFound) {
					t.Errorf("GetByDigest(new key with %s) = %v, want ErrNotFound", tc.name, err)
				}
			}
		}
		checkKey(t, "Get(old) after refused rotations", mustGet(t, s, old.ID), old)
		if got := seq(t, s); got != before {
			t.Errorf("sequence after refused rotations = %d, want %d", got, before)
		}
		if keys, err := s.List(t.Context(), keystore.Filter{Now: base}); err != nil || len(keys) != 1 {
			t.Errorf("List after refused rotations = %d keys, %v; want 1, nil", len(keys), err)
		}
	})
}

// checkNothingStored checks that the store holds no key and no change,
// and that neither k's ID nor its digest is found.
func checkNothingStored(t *testing.T, s keystore.Store, what string, k apikey.Key) {
	t.Helper()
	if _, err := s.Get(t.Context(), k.ID); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("%s: Get = %v, want ErrNotFound", what, err)
	}
	if _, err := s.GetByDigest(t.Context(), k.Digest); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("%s: GetByDigest = %v, want ErrNotFound", what, err)
	}
	if keys, err := s.List(t.Context(), keystore.Filter{Now: base}); err != nil || len(keys) != 0 {
		t.Errorf("%s: List = %d keys, %v; want none, nil", what, len(keys), err)
	}
	if got := seq(t, s); got != 0 {
		t.Errorf("%s: sequence = %d, want 0", what, got)
	}
}

func testCancelledContext(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	t.Run("every method called with a cancelled context fails and changes nothing", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "stored", apikey.ExpiryNever, base)
		before := seq(t, s)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		fresh := newKey(t, "fresh", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Second))
		next := newKey(t, "stored", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Minute))
		for _, call := range []struct {
			name string
			do   func() error
		}{
			{"Create", func() error { return s.Create(ctx, fresh, testAudit) }},
			{"Get", func() error { _, err := s.Get(ctx, k.ID); return err }},
			{"GetByDigest", func() error { _, err := s.GetByDigest(ctx, k.Digest); return err }},
			{"List", func() error { _, err := s.List(ctx, keystore.Filter{Now: base}); return err }},
			{"Revoke", func() error { _, err := s.Revoke(ctx, k.ID, base.Add(time.Hour), testAudit); return err }},
			{"Rotate", func() error { _, err := s.Rotate(ctx, k.ID, next, base.Add(time.Hour), testAudit); return err }},
			{"TouchLastUsed", func() error { return s.TouchLastUsed(ctx, map[string]time.Time{k.ID: base.Add(time.Hour)}) }},
			{"Changes", func() error { _, _, err := s.Changes(ctx, 0, 10); return err }},
		} {
			// Several times, as a store may pick between a free resource
			// and the done context at random.
			for range 5 {
				if err := call.do(); err == nil {
					t.Errorf("%s with a cancelled context = nil, want an error", call.name)
					break
				}
			}
		}
		checkKey(t, "Get after the cancelled calls", mustGet(t, s, k.ID), k)
		checkNotStored(t, s, fresh)
		checkNotStored(t, s, next)
		if got := seq(t, s); got != before {
			t.Errorf("sequence after the cancelled calls = %d, want %d", got, before)
		}
	})
}
