package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// fullKey returns a key with every field of version 3 set.
func fullKey(t *testing.T, name string, created time.Time) apikey.Key {
	t.Helper()
	k := newKey(t, name, apikey.ScopeWidget, apikey.ExpiryYear, created)
	k.Owner = "org_A.1:x@y-z"
	k.Metadata = map[string]string{"plan": "pro", "region": "eu-west-1", "note": "été ✓", "empty": ""}
	k.CreatedBy = apikey.Actor{Type: apikey.ActorConsole, ID: "alice@example.com"}
	k.AllowedOrigins = []string{"https://app.example.com", "https://*.example.org"}
	k.AllowedIPs = []string{"10.0.0.0/8", "2001:db8::/32"}
	k.RateLimits = []string{"100/1m"}
	return k
}

func testOwners(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	t.Run("every field of a key comes back as stored, from Get, GetByDigest and List", func(t *testing.T) {
		s := open(t)
		k := fullKey(t, "full", base)
		mustCreate(t, s, k)
		checkKey(t, "Get", mustGet(t, s, k.ID), k)
		got, err := s.GetByDigest(t.Context(), k.Digest)
		if err != nil {
			t.Fatalf("GetByDigest = %v", err)
		}
		checkKey(t, "GetByDigest", got, k)
		keys := mustList(t, s, keystore.Filter{})
		if len(keys) != 1 {
			t.Fatalf("List = %d keys, want 1", len(keys))
		}
		checkKey(t, "List", keys[0], k)
	})

	t.Run("a key without owner, metadata or lists comes back with none, and empty ones come back nil", func(t *testing.T) {
		s := open(t)
		bare := newKey(t, "bare", apikey.ScopeFull, apikey.ExpiryNever, base)
		empty := newKey(t, "empty", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Second))
		empty.Metadata, empty.AllowedOrigins, empty.AllowedIPs, empty.RateLimits = map[string]string{}, []string{}, []string{}, []string{}
		for _, k := range []apikey.Key{bare, empty} {
			mustCreate(t, s, k)
			got := mustGet(t, s, k.ID)
			checkKey(t, k.Name, got, k)
			if got.Metadata != nil || got.AllowedOrigins != nil || got.AllowedIPs != nil || got.RateLimits != nil {
				t.Errorf("Get(%s) = metadata %#v, lists %#v %#v %#v; want all nil", k.Name, got.Metadata, got.AllowedOrigins, got.AllowedIPs, got.RateLimits)
			}
		}
	})

	t.Run("List with Owner keeps that owner's keys only, exactly, across pages and with other filters", func(t *testing.T) {
		s := open(t)
		var all []apikey.Key
		owners := []string{"org_a", "org_b", "", "org_A", "org_a"}
		for i := range 25 {
			k := newKey(t, fmt.Sprintf("key %02d", i), apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Duration(i%7)*time.Second))
			k.Owner = owners[i%len(owners)]
			if i%3 == 0 {
				k.Scope = apikey.ScopeRoutine
			}
			mustCreate(t, s, k)
			all = append(all, k)
		}
		revoked, err := s.Revoke(t.Context(), all[0].ID, base.Add(time.Hour), testAudit)
		if err != nil {
			t.Fatal(err)
		}
		all[0] = revoked
		for _, f := range []keystore.Filter{
			{Owner: "org_a"},
			{Owner: "org_A"},
			{Owner: "org_b", Scope: apikey.ScopeRoutine},
			{Owner: "org_a", Status: apikey.StatusActive, Now: base.Add(2 * time.Hour)},
			{Owner: "org_a", Query: "key 1"},
			{Owner: "org_c"},
			{Owner: "org"},
		} {
			var want []apikey.Key
			for _, k := range all {
				if matches(f, k) {
					want = append(want, k)
				}
			}
			slices.SortFunc(want, listOrder)
			for _, limit := range []int{1, 2, 3, 100} {
				got := walkForward(t, s, f, limit)
				if !slices.Equal(ids(got), ids(want)) {
					t.Errorf("pages of %d of %+v = %q, want %q", limit, f, ids(got), ids(want))
				}
			}
			if len(want) > 1 {
				got := walkBackward(t, s, f, want[len(want)-1], 2)
				if !slices.Equal(ids(got), ids(want[:len(want)-1])) {
					t.Errorf("pages before the last of %+v = %q, want %q", f, ids(got), ids(want[:len(want)-1]))
				}
			}
		}
	})

	t.Run("Rotate stores the new key's owner, metadata and creator as given", func(t *testing.T) {
		s := open(t)
		old := fullKey(t, "old", base)
		mustCreate(t, s, old)
		next := fullKey(t, "old", base.Add(time.Hour))
		next.CreatedBy = apikey.Actor{Type: apikey.ActorAdmin, ID: "ops@host"}
		if _, err := s.Rotate(t.Context(), old.ID, next, base.Add(2*time.Hour), testAudit); err != nil {
			t.Fatalf("Rotate = %v", err)
		}
		checkKey(t, "new key", mustGet(t, s, next.ID), next)
		got := mustGet(t, s, old.ID)
		if got.Owner != old.Owner || got.CreatedBy != old.CreatedBy || got.Metadata["plan"] != "pro" {
			t.Errorf("old key after Rotate = owner %q, created by %+v, metadata %v; want them unchanged", got.Owner, got.CreatedBy, got.Metadata)
		}
	})
}

func testUpdate(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	str := func(s string) *string { return &s }
	meta := func(m map[string]string) *map[string]string { return &m }
	list := func(l ...string) *[]string { return &l }

	t.Run("Update replaces the fields it is given, whole, keeps the others, and records one change", func(t *testing.T) {
		s := open(t)
		k := fullKey(t, "before", base)
		mustCreate(t, s, k)
		other := create(t, s, "other", apikey.ExpiryNever, base)
		for _, step := range []struct {
			name  string
			patch keystore.Patch
			want  func(k *apikey.Key)
		}{
			{"name only", keystore.Patch{Name: str("after")}, func(k *apikey.Key) { k.Name = "after" }},
			{"metadata only, replaced whole", keystore.Patch{Metadata: meta(map[string]string{"tier": "gold"})},
				func(k *apikey.Key) { k.Metadata = map[string]string{"tier": "gold"} }},
			{"both", keystore.Patch{Name: str("both"), Metadata: meta(map[string]string{"a": "1", "b": "2"})},
				func(k *apikey.Key) { k.Name, k.Metadata = "both", map[string]string{"a": "1", "b": "2"} }},
			{"the same values again", keystore.Patch{Name: str("both")}, func(k *apikey.Key) {}},
			{"metadata cleared with an empty map", keystore.Patch{Metadata: meta(map[string]string{})},
				func(k *apikey.Key) { k.Metadata = nil }},
			{"allowed origins only, replaced whole", keystore.Patch{AllowedOrigins: list("http://localhost:3000")},
				func(k *apikey.Key) { k.AllowedOrigins = []string{"http://localhost:3000"} }},
			{"allowed IPs only, replaced whole", keystore.Patch{AllowedIPs: list("203.0.113.7", "::1")},
				func(k *apikey.Key) { k.AllowedIPs = []string{"203.0.113.7", "::1"} }},
			{"allowed origins and IPs cleared with empty lists", keystore.Patch{AllowedOrigins: list(), AllowedIPs: list()},
				func(k *apikey.Key) { k.AllowedOrigins, k.AllowedIPs = nil, nil }},
			{"allowed origins set again, with a name", keystore.Patch{Name: str("again"), AllowedOrigins: list("https://*.example.com:*")},
				func(k *apikey.Key) { k.Name, k.AllowedOrigins = "again", []string{"https://*.example.com:*"} }},
			{"rate limits only, replaced whole", keystore.Patch{RateLimits: list("10/1s", "10000/1d")},
				func(k *apikey.Key) { k.RateLimits = []string{"10/1s", "10000/1d"} }},
			{"rate limits cleared with an empty list", keystore.Patch{RateLimits: list()},
				func(k *apikey.Key) { k.RateLimits = nil }},
		} {
			before := seq(t, s)
			step.want(&k)
			got, err := s.Update(t.Context(), k.ID, step.patch, testAudit)
			if err != nil {
				t.Fatalf("Update(%s) = %v, want nil", step.name, err)
			}
			checkKey(t, "Update("+step.name+")", got, k)
			checkKey(t, "Get after Update("+step.name+")", mustGet(t, s, k.ID), k)
			chs, _ := changesSince(t, s, before)
			if got, want := changeKeys(chs), wantChanges(k); !slices.Equal(got, want) {
				t.Errorf("changes of Update(%s) = %q, want %q", step.name, got, want)
			}
		}
		checkKey(t, "the other key", mustGet(t, s, other.ID), other)
	})

	t.Run("Update does not share the caller's metadata map", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "k", apikey.ExpiryNever, base)
		m := map[string]string{"plan": "pro"}
		got, err := s.Update(t.Context(), k.ID, keystore.Patch{Metadata: &m}, testAudit)
		if err != nil {
			t.Fatal(err)
		}
		m["plan"] = "changed"
		if got.Metadata["plan"] != "pro" || mustGet(t, s, k.ID).Metadata["plan"] != "pro" {
			t.Errorf("after changing the caller's map: returned %v, stored %v; want plan pro", got.Metadata, mustGet(t, s, k.ID).Metadata)
		}
	})

	t.Run("Update does not share the caller's lists", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "k", apikey.ExpiryNever, base)
		l := []string{"https://a.example"}
		got, err := s.Update(t.Context(), k.ID, keystore.Patch{AllowedOrigins: &l}, testAudit)
		if err != nil {
			t.Fatal(err)
		}
		l[0] = "https://changed.example"
		if got.AllowedOrigins[0] != "https://a.example" || mustGet(t, s, k.ID).AllowedOrigins[0] != "https://a.example" {
			t.Errorf("after changing the caller's list: returned %v, stored %v; want https://a.example",
				got.AllowedOrigins, mustGet(t, s, k.ID).AllowedOrigins)
		}
	})

	t.Run("an Update that sets nothing returns the key and records no change", func(t *testing.T) {
		s := open(t)
		k := fullKey(t, "k", base)
		mustCreate(t, s, k)
		before := seq(t, s)
		got, err := s.Update(t.Context(), k.ID, keystore.Patch{}, testAudit)
		if err != nil {
			t.Fatalf("Update(empty patch) = %v", err)
		}
		checkKey(t, "Update(empty patch)", got, k)
		if after := seq(t, s); after != before {
			t.Errorf("sequence after an empty Update = %d, want %d", after, before)
		}
	})

	t.Run("Update of a revoked key is ErrRevoked and of a missing one ErrNotFound, changing nothing", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "k", apikey.ExpiryNever, base)
		k, err := s.Revoke(t.Context(), k.ID, base.Add(time.Minute), testAudit)
		if err != nil {
			t.Fatal(err)
		}
		missing := newKey(t, "missing", apikey.ScopeFull, apikey.ExpiryNever, base)
		before := seq(t, s)
		for _, p := range []keystore.Patch{{Name: str("new")}, {Metadata: meta(map[string]string{"a": "b"})}, {}} {
			if _, err := s.Update(t.Context(), k.ID, p, testAudit); !errors.Is(err, keystore.ErrRevoked) {
				t.Errorf("Update(revoked key, %+v) = %v, want ErrRevoked", p, err)
			}
			if _, err := s.Update(t.Context(), missing.ID, p, testAudit); !errors.Is(err, keystore.ErrNotFound) {
				t.Errorf("Update(missing key, %+v) = %v, want ErrNotFound", p, err)
			}
		}
		checkKey(t, "revoked key after Update", mustGet(t, s, k.ID), k)
		if after := seq(t, s); after != before {
			t.Errorf("sequence after failed Updates = %d, want %d", after, before)
		}
	})

	t.Run("expired and replaced keys may be updated", func(t *testing.T) {
		s := open(t)
		expired := create(t, s, "expired", apikey.ExpiryHour, base.Add(-24*time.Hour))
		old := create(t, s, "old", apikey.ExpiryNever, base)
		next := newKey(t, "old", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Minute))
		if _, err := s.Rotate(t.Context(), old.ID, next, base.Add(time.Hour), testAudit); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{expired.ID, old.ID} {
			if got, err := s.Update(t.Context(), id, keystore.Patch{Name: str("renamed")}, testAudit); err != nil || got.Name != "renamed" {
				t.Errorf("Update(%s) = %q, %v; want renamed, nil", id, got.Name, err)
			}
		}
	})

	t.Run("Update refuses an invalid name, metadata or list with ErrInvalidKey, storing nothing", func(t *testing.T) {
		s := open(t)
		k := fullKey(t, "k", base)
		mustCreate(t, s, k)
		before := seq(t, s)
		tooMany := map[string]string{}
		for i := range apikey.MaxMetadataEntries + 1 {
			tooMany[fmt.Sprintf("k%d", i)] = "v"
		}
		for _, tc := range []struct {
			name  string
			patch keystore.Patch
		}{
			{"empty name", keystore.Patch{Name: str("")}},
			{"name with a newline", keystore.Patch{Name: str("a\nb")}},
			{"name of 101 characters", keystore.Patch{Name: str(strings.Repeat("n", 101))}},
			{"valid name, invalid metadata", keystore.Patch{Name: str("fine"), Metadata: meta(map[string]string{"Bad": "x"})}},
			{"17 metadata entries", keystore.Patch{Metadata: &tooMany}},
			{"metadata value of 257 bytes", keystore.Patch{Metadata: meta(map[string]string{"v": strings.Repeat("x", 257)})}},
			{"metadata value with a bidi override", keystore.Patch{Metadata: meta(map[string]string{"v": "a\u202eb"})}},
			{"allowed origin with a path", keystore.Patch{AllowedOrigins: list("https://a.example/")}},
			{"valid name, allowed origin not normalised", keystore.Patch{Name: str("fine"), AllowedOrigins: list("HTTPS://a.example")}},
			{"allowed IP prefix with host bits", keystore.Patch{AllowedIPs: list("10.0.0.1/8")}},
			{"33 allowed IPs", keystore.Patch{AllowedIPs: list(slices.Repeat([]string{"10.0.0.1"}, apikey.MaxPolicyEntries+1)...)}},
			{"valid origins, invalid IPs", keystore.Patch{AllowedOrigins: list("https://a.example"), AllowedIPs: list("10.0.0.256")}},
			{"rate limit of 0", keystore.Patch{RateLimits: list("0/1m")}},
			{"valid name, rate limit not normalised", keystore.Patch{Name: str("fine"), RateLimits: list("10/60s")}},
			{"two rate limits of one window", keystore.Patch{RateLimits: list("10/1h", "20/60m")}},
		} {
			if keystore.CheckPatch(tc.patch) == nil {
				t.Fatalf("%s: CheckPatch accepts the patch: the case tests nothing", tc.name)
			}
			if _, err := s.Update(t.Context(), k.ID, tc.patch, testAudit); !errors.Is(err, keystore.ErrInvalidKey) {
				t.Errorf("Update(%s) = %v, want ErrInvalidKey", tc.name, err)
			}
		}
		checkKey(t, "key after refused Updates", mustGet(t, s, k.ID), k)
		if after := seq(t, s); after != before {
			t.Errorf("sequence after refused Updates = %d, want %d", after, before)
		}
	})
}
